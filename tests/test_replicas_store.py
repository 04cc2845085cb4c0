"""tests/unit/test_session_leases.py on a real PostgreSQL server: claims, renewals, takeovers, hand-overs and
singleton leases where replicas really race (row locks under READ COMMITTED, not SQLite's one writer).

Each test gets a database of its own on one server started for the module.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from openrr.sessions.service import SessionService
from openrr.sessions.state import SessionSize
from openrr.store.conflicts import write_retrying
from openrr.store.db import Database
from openrr.store.tables import SessionRow
from tests.postgres import fresh_database, pg_url
from tests.unit.test_session_leases import (  # noqa: F401 (collected here, on this module's `db`)
    account,
    owners,
    replica,
    test_a_create_owns_its_session_and_a_fresh_owner_keeps_it,
    test_a_handed_over_session_is_claimed_at_the_next_pass,
    test_a_lapsed_owner_is_taken_over_and_its_late_writes_are_refused,
    test_a_local_session_taken_over_ends_in_error_naming_the_lost_replica,
    test_a_replica_whose_secrets_key_cannot_open_the_stores_credentials_is_refused,
    test_a_session_whose_lease_ran_out_while_its_replica_was_gone_ends_expired,
    test_a_shared_backend_session_taken_over_stays_ready,
    test_a_singleton_lease_has_one_holder_until_it_expires,
    test_adopt_takes_back_only_records_that_still_name_the_server,
    test_concurrent_claims_give_each_session_exactly_one_owner,
    test_concurrent_first_holds_give_one_holder,
    test_every_pass_renews_the_owners_heartbeat,
    test_keeps_server_reads_the_record_again,
    test_only_the_lease_holder_maintains_a_shared_backend,
    test_the_orphan_sweep_keeps_a_server_whose_session_appeared_after_the_pass_read,
)

__all__ = ["pg_url"]  # a fixture, used by name


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    store = Database(fresh_database(pg_url))
    store.migrate()
    yield store
    store.dispose()


RACE_S = 3.0
"""How long the replicas race: hundreds of passes each (one takes a few milliseconds); the old lock orders
deadlocked within the first second of every run (2-4 times per 50-session burst on two replicas)."""


def test_replicas_renewing_and_claiming_the_same_lapsed_rows_never_deadlock(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Three replicas, two threads each, run passes for RACE_S on one set of records that is always lapsed for all
    of them (a lease of 0 s): every pass renews the rows its replica holds and claims all the others'. Each pass
    must lock its rows in the one global (key) order, so none fails with a deadlock, and none needs the retry.
    Before the fix, renewal locked in heap order (UPDATE ... WHERE owner = me) and claims in key order."""
    acct = account(db)
    creator = replica(db, "creator")
    ids = [f"s{i:02d}" for i in range(30)]
    random.Random(12).shuffle(ids)  # created out of key order, so the heap order is not the key order
    for sid in ids:
        creator.create(acct, sid, SessionSize.STANDARD, 10)
    racers = [
        SessionService(db, {"Standard": 64}, on_change=lambda: None, replica_id=f"replica-{i}", lease_s=0.0)
        for i in range(3)
    ]
    errors: list[BaseException] = []
    passes: Counter[str] = Counter()
    stop_at = time.monotonic() + RACE_S

    def race(svc: SessionService) -> None:
        try:
            while time.monotonic() < stop_at:
                passed = svc.claim_pass()
                mine = {r.id for r in passed.rows if r.owner == svc.replica_id}
                # Read in the pass's own transaction, which still holds the locks of what it took.
                assert {sid for _, sid in passed.taken_over} <= mine
                assert sorted(r.id for r in passed.rows) == sorted(ids)
                passes[svc.replica_id] += 1
        except BaseException as e:
            errors.append(e)

    caplog.set_level(logging.WARNING, logger="openrr.store.conflicts")
    threads = [threading.Thread(target=race, args=(svc,)) for svc in racers for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RACE_S + 30)
    assert not errors, errors[:3]
    assert min(passes[svc.replica_id] for svc in racers) >= 20, passes  # they really raced
    assert not caplog.records, [r.getMessage() for r in caplog.records[:3]]
    assert set(owners(creator).values()) <= {svc.replica_id for svc in racers}
    assert sorted(owners(creator)) == sorted(ids)


def test_a_transaction_aborted_by_a_deadlock_runs_again(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """The safety net: two transactions lock two rows in opposite orders (what no statement of the store does any
    more), PostgreSQL aborts one after its deadlock_timeout (1 s), and write_retrying runs that one again: both
    commit, neither raises."""
    acct = account(db)
    creator = replica(db, "creator")
    for sid in ("s1", "s2"):
        creator.create(acct, sid, SessionSize.STANDARD, 10)
    both_hold_one = threading.Barrier(2)
    tries: Counter[str] = Counter()
    done: list[str] = []
    errors: list[BaseException] = []

    def lock_both(name: str, first: str, second: str) -> None:
        def work(s: Session) -> None:
            tries[name] += 1
            for sid in (first, second):
                s.execute(update(SessionRow).where(SessionRow.id == sid).values(owner=name))
                if tries[name] == 1 and sid == first:
                    both_hold_one.wait(10)  # each holds one row and now asks for the other's

        try:
            write_retrying(db, work)
            done.append(name)
        except BaseException as e:
            errors.append(e)

    caplog.set_level(logging.WARNING, logger="openrr.store.conflicts")
    threads = [threading.Thread(target=lock_both, args=a) for a in (("a", "s1", "s2"), ("b", "s2", "s1"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sorted(done) == ["a", "b"], errors
    assert sorted(tries.values()) == [1, 2]  # the deadlock's loser ran once more
    assert any("40P01" in r.getMessage() for r in caplog.records)
