"""The session service and state machine on a real SQLite store (no HTTP)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from openrr.accounts.service import AccountService
from openrr.sessions.lease import LeaseNotExtendable
from openrr.sessions.quotas import SessionQuotas
from openrr.sessions.service import SessionConflict, SessionService
from openrr.sessions.state import InvalidTransition, SessionSize, SessionStatus, transition
from openrr.store.db import Database
from openrr.store.tables import SessionRow


@pytest.fixture
def store(tmp_path: Path) -> tuple[SessionService, str, Database]:
    db = Database(f"sqlite:///{tmp_path / 'openrr.db'}")
    db.migrate()
    account = AccountService(db).create().account.account_id
    # These tests fill a size from one account: its quota lies above the capacity, so capacity is what limits
    # (the default quota, capacity - 1, and its refusal are tested in tests/security/test_quotas.py).
    SessionQuotas(db).set(account, SessionSize.STANDARD, 3)
    changes: list[int] = []
    return SessionService(db, {"Standard": 2, "Premium": 1}, on_change=lambda: changes.append(1)), account, db


def test_transitions_follow_the_state_machine() -> None:
    now = dt.datetime.now(dt.UTC)
    row = SessionRow(id="s", status="Starting", max_lease_minutes=5)
    with pytest.raises(InvalidTransition):
        transition(row, SessionStatus.EXPIRED, now)  # the lease only runs from Ready
    transition(row, SessionStatus.READY, now)
    assert row.ready_time == now
    transition(row, SessionStatus.ERROR, now, ("Code", "why"))
    assert (row.error_code, row.error_message, row.end_time) == ("Code", "why", now)
    for target in SessionStatus:
        with pytest.raises(InvalidTransition):
            transition(row, target, now)  # nothing leaves a terminal state


def test_create_is_idempotent_and_conflicts_on_other_settings(store: tuple[SessionService, str, Database]) -> None:
    svc, account, _ = store
    first, created = svc.create(account, "a", SessionSize.STANDARD, 10)
    assert created and first.status is SessionStatus.STARTING
    again, created = svc.create(account, "a", SessionSize.STANDARD, 10)
    assert not created and again.creation_time == first.creation_time
    svc.extend(account, "a", 20)
    # A retried create still matches what was asked at creation, even after an extension.
    assert svc.create(account, "a", SessionSize.STANDARD, 10)[1] is False
    with pytest.raises(SessionConflict):
        svc.create(account, "a", SessionSize.STANDARD, 11)
    with pytest.raises(LeaseNotExtendable):
        svc.extend(account, "a", 20)


def test_expiry_ends_at_the_deadline(store: tuple[SessionService, str, Database]) -> None:
    svc, account, db = store
    svc.create(account, "e", SessionSize.STANDARD, 1)
    assert svc.mark_ready(account, "e", "h", 50000, 50001)
    with db.write() as s:
        row = s.get(SessionRow, (account, "e"))
        assert row is not None
        row.ready_time = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=95)
    assert svc.expire_if_due(account, "e")
    view = svc.get(account, "e")
    assert view.status is SessionStatus.EXPIRED
    assert view.elapsed_s == pytest.approx(60) and view.elapsed_minutes == 1
    assert not svc.expire_if_due(account, "e")


def test_records_are_kept_30_days_then_purged(store: tuple[SessionService, str, Database]) -> None:
    svc, account, db = store
    svc.create(account, "old", SessionSize.STANDARD, 10)
    svc.create(account, "recent", SessionSize.STANDARD, 10)
    svc.create(account, "old-but-live", SessionSize.PREMIUM, 10)
    svc.stop(account, "old")
    svc.stop(account, "recent")
    for sid in ("old", "recent", "old-but-live"):
        svc.mark_released(account, sid)
    with db.write() as s:
        for sid, age in (("old", 31), ("recent", 29), ("old-but-live", 31)):
            row = s.get(SessionRow, (account, sid))
            assert row is not None
            row.creation_time = dt.datetime.now(dt.UTC) - dt.timedelta(days=age)
    assert svc.purge_older_than(30) == 1
    assert {r.id for r in svc.needing_attention()} == {"old-but-live"}
    svc.get(account, "recent")


def test_capacity_is_per_size(store: tuple[SessionService, str, Database]) -> None:
    svc, account, _ = store
    assert svc.create(account, "s1", SessionSize.STANDARD, 5)[0].status is SessionStatus.STARTING
    assert svc.create(account, "s2", SessionSize.STANDARD, 5)[0].status is SessionStatus.STARTING
    full = svc.create(account, "s3", SessionSize.STANDARD, 5)[0]
    assert full.status is SessionStatus.ERROR and full.error_code == "NoServerAvailable"
    assert svc.create(account, "p1", SessionSize.PREMIUM, 5)[0].status is SessionStatus.STARTING
    svc.stop(account, "s1")
    assert svc.create(account, "s4", SessionSize.STANDARD, 5)[0].status is SessionStatus.STARTING
