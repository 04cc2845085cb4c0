"""The conversion service and state machine on a real SQLite store (no HTTP, no workers)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from openrr.accounts.service import AccountService
from openrr.accounts.storage_links import StorageLinks
from openrr.conversions.request import ConversionRequest, build_request
from openrr.conversions.service import ConversionConflict, ConversionService, LinkedStorageMissing
from openrr.conversions.state import ConversionStatus, InvalidTransition, transition
from openrr.store.db import Database
from openrr.store.secretbox import SecretBox, SecretUnreadable
from openrr.store.tables import ConversionRow

URI = "https://acct.blob.core.windows.net"


def _request(path: str = "house.glb", sas: str | None = "?sig=in") -> ConversionRequest:
    return build_request(
        {"storageContainerUri": f"{URI}/in", "relativeInputAssetPath": path},
        {"storageContainerUri": f"{URI}/out"},
        sas,
        "?sig=out" if sas else None,
    )


@pytest.fixture
def store(tmp_path: Path) -> tuple[ConversionService, str]:
    db = Database(f"sqlite:///{tmp_path / 'openrr.db'}")
    db.migrate()
    account = AccountService(db).create().account.account_id
    box = SecretBox(Fernet.generate_key())
    return ConversionService(db, box, StorageLinks(db, box), [tmp_path], on_change=lambda: None), account


def test_transitions_follow_the_state_machine() -> None:
    now = dt.datetime.now(dt.UTC)
    row = ConversionRow(id="c", status="NotStarted", secrets=b"x", progress=0.3)
    with pytest.raises(InvalidTransition):
        transition(row, ConversionStatus.SUCCEEDED, now)  # only a running job can succeed
    transition(row, ConversionStatus.RUNNING, now)
    assert row.start_time == now and row.secrets == b"x"
    transition(row, ConversionStatus.SUCCEEDED, now)
    assert (row.end_time, row.secrets, row.progress) == (now, None, 1.0)  # credentials go with the job
    for target in ConversionStatus:
        with pytest.raises(InvalidTransition):
            transition(row, target, now)  # nothing leaves a terminal state


def test_sas_tokens_are_sealed_and_not_part_of_identity(store: tuple[ConversionService, str]) -> None:
    svc, account = store
    view, created = svc.create(account, "c1", _request())
    assert created and "sig" not in str(view.settings)
    _, again = svc.create(account, "c1", _request(sas="?sig=regenerated"))
    assert not again
    with pytest.raises(ConversionConflict):
        svc.create(account, "c1", _request("other.glb"))
    with pytest.raises(LinkedStorageMissing):
        svc.create(account, "c2", _request(sas=None))
    with svc.db.read() as s:
        row = s.get(ConversionRow, (account, "c1"))
        assert row is not None and row.secrets is not None and b"sig=in" not in row.secrets
    with pytest.raises(SecretUnreadable):
        SecretBox(Fernet.generate_key()).open(row.secrets)


def test_claim_heartbeat_retry_and_finish(store: tuple[ConversionService, str]) -> None:
    svc, account = store
    svc.create(account, "job", _request())
    assert svc.claimable(lease_s=30)
    [claim] = svc.claim("a", 4, lease_s=30, max_attempts=2)
    assert claim.attempt == 1 and claim.request.input.sas == "?sig=in" and claim.request.output.sas == "?sig=out"
    assert svc.get(account, "job").status is ConversionStatus.RUNNING
    assert not svc.claimable(lease_s=30) and svc.claim("b", 4, lease_s=30, max_attempts=2) == []
    assert svc.heartbeat("a", account, "job", 0.5) and not svc.heartbeat("b", account, "job", 0.9)
    assert svc.get(account, "job").progress == 0.5
    assert svc.retry_or_fail("a", account, "job", 2, "worker died.")  # second attempt
    assert not svc.retry_or_fail("a", account, "job", 2, "worker died again.")
    failed = svc.get(account, "job")
    assert failed.status is ConversionStatus.FAILED and failed.error_code == "InternalServerError"
    assert failed.error_message is not None and failed.error_message.startswith("worker died again.")
    assert not svc.finish("a", account, "job", None, [])  # ended: a late outcome changes nothing


def test_stale_jobs_are_taken_over_until_out_of_attempts(store: tuple[ConversionService, str]) -> None:
    svc, account = store
    svc.create(account, "job", _request())
    svc.claim("a", 1, lease_s=30, max_attempts=2)
    # "a" still reports (within its lease): nobody else may take the job, and "a" skips what it runs itself.
    assert svc.claim("b", 1, lease_s=30, max_attempts=2) == []
    assert svc.claim("a", 1, lease_s=0, max_attempts=2, busy=frozenset({(account, "job")})) == []
    # "a" stopped reporting: "b" takes over, as attempt 2; then "b" stops reporting too.
    [taken] = svc.claim("b", 1, lease_s=0, max_attempts=2)
    assert taken.attempt == 2 and not svc.heartbeat("a", account, "job", 0.1)
    assert svc.claim("c", 1, lease_s=0, max_attempts=2) == []
    doc = svc.get(account, "job")
    assert doc.status is ConversionStatus.FAILED and "interrupted 2 times" in (doc.error_message or "")


def test_release_hands_jobs_back_without_using_an_attempt(store: tuple[ConversionService, str]) -> None:
    svc, account = store
    svc.create(account, "job", _request())
    svc.claim("a", 1, lease_s=30, max_attempts=1)
    assert svc.release("a") == 1
    [again] = svc.claim("b", 1, lease_s=30, max_attempts=1)  # at once, not after the lease
    assert again.attempt == 1
    assert svc.finish("b", account, "job", None, ["a warning"])
    done = svc.get(account, "job")
    assert done.status is ConversionStatus.SUCCEEDED and done.warnings == ["a warning"] and done.progress == 1.0
    cancelled = svc.cancel(account, "job")
    assert cancelled.status is ConversionStatus.SUCCEEDED  # an ended job is left as it is
