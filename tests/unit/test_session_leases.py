"""Session ownership across replicas (claim, renew, takeover, hand-over) and singleton leases, in process on a real
SQLite store. tests/test_replicas_store.py runs these same tests on a real PostgreSQL server (a process, so not
here); the `db` fixture is all that differs.

Replicas are SessionServices with their own replica id on one store; a replica that stopped renewing is simulated
by a later clock for the one that takes over (the lease is measured on the store's timestamps, not slept through).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from openrr.accounts.service import AccountService
from openrr.accounts.storage_links import StorageLinks
from openrr.hosting.backend import SessionKey
from openrr.sessions.reconciler import MAINTAINING, MAINTENANCE_LEASE, Reconciler
from openrr.sessions.service import SessionService
from openrr.sessions.state import SessionSize, SessionStatus
from openrr.store import leases
from openrr.store.db import Database
from openrr.store.secretbox import SecretBox, SecretUnreadable
from openrr.store.shared_key import require_shared_secrets_key
from openrr.util.clock import Clock, utc_now
from tests.unit.test_reconciler import PLACEMENT, FakeBackend

LEASE_S = 10.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'openrr.db'}")
    store.migrate()
    yield store
    store.dispose()


def later(seconds: float) -> Clock:
    """A clock `seconds` ahead of now: the replica that uses it sees every heartbeat that much older."""
    return lambda: utc_now() + dt.timedelta(seconds=seconds)


def replica(db: Database, name: str, clock: Clock = utc_now) -> SessionService:
    return SessionService(db, {"Standard": 64}, on_change=lambda: None, clock=clock, replica_id=name, lease_s=LEASE_S)


def account(db: Database) -> str:
    return AccountService(db).create().account.account_id


def ready_on_a(db: Database, lease_minutes: int = 10, host_ref: str = "host-a") -> tuple[SessionService, str]:
    """Replica A with one Ready session "s1" on `host_ref`; A and the account."""
    a = replica(db, "replica-a")
    acct = account(db)
    a.create(acct, "s1", SessionSize.STANDARD, lease_minutes)
    assert a.attach_host(acct, "s1", host_ref) and a.mark_ready(acct, "s1", "h", 1, 2)
    return a, acct


def owners(svc: SessionService) -> dict[str, str | None]:
    return {r.id: r.owner for r in svc.needing_attention()}


def test_a_create_owns_its_session_and_a_fresh_owner_keeps_it(db: Database) -> None:
    a, b = replica(db, "replica-a"), replica(db, "replica-b")
    acct = account(db)
    a.create(acct, "s1", SessionSize.STANDARD, 10)
    assert owners(a) == {"s1": "replica-a"}
    # B's pass within the lease claims nothing, and may not change the record.
    passed = b.claim_pass()
    assert [r.owner for r in passed.rows] == ["replica-a"] and passed.taken_over == {}
    assert not b.attach_host(acct, "s1", "host-b")
    assert not b.fail(acct, "s1", "X", "not B's to fail")
    assert a.get(acct, "s1").status is SessionStatus.STARTING


def test_every_pass_renews_the_owners_heartbeat(db: Database) -> None:
    a = replica(db, "replica-a")
    acct = account(db)
    a.create(acct, "s1", SessionSize.STANDARD, 10)
    first = a.claim_pass().rows[0].heartbeat
    assert first is not None
    time.sleep(0.01)  # a later wall clock, so the renewed heartbeat differs
    renewed = a.claim_pass().rows[0].heartbeat
    assert renewed is not None and renewed > first
    # Renewed, B (whose clock is just inside the lease of the renewal) still cannot take it.
    b = replica(db, "replica-b", later(LEASE_S - 1))
    assert b.claim_pass().taken_over == {}


def test_a_lapsed_owner_is_taken_over_and_its_late_writes_are_refused(db: Database) -> None:
    a = replica(db, "replica-a")
    b = replica(db, "replica-b", later(LEASE_S + 1))
    acct = account(db)
    a.create(acct, "s1", SessionSize.STANDARD, 10)
    assert a.attach_host(acct, "s1", "host-a")
    passed = b.claim_pass()
    assert passed.taken_over == {(acct, "s1"): "replica-a"}
    assert owners(a) == {"s1": "replica-b"}
    # A wakes up from its stall: none of its transitions happen (no double transition).
    assert not a.mark_ready(acct, "s1", "h", 1, 2)
    assert not a.fail(acct, "s1", "X", "late")
    assert not a.attach_host(acct, "s1", "host-a2")
    assert b.mark_ready(acct, "s1", "h", 1, 2)
    assert a.get(acct, "s1").status is SessionStatus.READY
    # A's next pass renews only what it owns: nothing; the session stays B's.
    assert a.claim_pass().taken_over == {} and owners(a) == {"s1": "replica-b"}


def test_a_handed_over_session_is_claimed_at_the_next_pass(db: Database) -> None:
    a, b = replica(db, "replica-a"), replica(db, "replica-b")
    acct = account(db)
    a.create(acct, "s1", SessionSize.STANDARD, 10)
    assert a.hand_over() == 1
    assert owners(a) == {"s1": None}
    passed = b.claim_pass()
    # Taken, but not "taken over": nobody had it (no lapsed replica to name).
    assert passed.taken_over == {} and owners(a) == {"s1": "replica-b"}


def test_concurrent_claims_give_each_session_exactly_one_owner(db: Database) -> None:
    acct = account(db)
    creator = replica(db, "creator")
    sessions = [f"s{i}" for i in range(12)]
    for sid in sessions:
        creator.create(acct, sid, SessionSize.STANDARD, 10)
    creator.hand_over()
    claimers = [replica(db, f"replica-{i}") for i in range(4)]
    got: dict[str, set[str]] = {}
    start = threading.Barrier(len(claimers))

    def claim(svc: SessionService) -> None:
        start.wait()
        got[svc.replica_id] = {r.id for r in svc.claim_pass().rows if r.owner == svc.replica_id}

    threads = [threading.Thread(target=claim, args=(svc,)) for svc in claimers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    owned = [sid for ids in got.values() for sid in ids]
    assert sorted(owned) == sorted(sessions), got  # each exactly once
    assert owners(creator) == {sid: next(r for r, ids in got.items() if sid in ids) for sid in sessions}


def test_adopt_takes_back_only_records_that_still_name_the_server(db: Database) -> None:
    a = replica(db, "replica-a")
    acct = account(db)
    for sid in ("mine", "replaced"):
        a.create(acct, sid, SessionSize.STANDARD, 10)
        assert a.attach_host(acct, sid, f"host-{sid}")
    # B took "replaced" over and placed it again elsewhere.
    b = replica(db, "replica-b", later(LEASE_S + 1))
    b.claim_pass()
    assert b.attach_host(acct, "replaced", "host-elsewhere")
    restarted = replica(db, "replica-a2")
    restarted.adopt({(acct, "mine"): "host-mine", (acct, "replaced"): "host-replaced"})
    assert owners(a) == {"mine": "replica-a2", "replaced": "replica-b"}


def test_keeps_server_reads_the_record_again(db: Database) -> None:
    a = replica(db, "replica-a")
    acct = account(db)
    a.create(acct, "s1", SessionSize.STANDARD, 10)
    assert a.keeps_server(acct, "s1", "host-1")  # Starting, no server recorded yet: being placed
    assert a.attach_host(acct, "s1", "host-1")
    assert a.keeps_server(acct, "s1", "host-1")
    assert not a.keeps_server(acct, "s1", "host-2")  # a duplicate for the same session
    a.stop(acct, "s1")
    assert a.keeps_server(acct, "s1", "host-1")  # ended, server not yet released
    a.mark_released(acct, "s1")
    assert not a.keeps_server(acct, "s1", "host-1")
    assert not a.keeps_server(acct, "never-created", "host-3")


def test_a_singleton_lease_has_one_holder_until_it_expires(db: Database) -> None:
    now = utc_now()
    assert leases.try_hold(db, "job", "replica-a", 5, now)
    assert leases.try_hold(db, "job", "replica-a", 5, now + dt.timedelta(seconds=1))  # renewed
    assert not leases.try_hold(db, "job", "replica-b", 5, now + dt.timedelta(seconds=5))  # renewal holds to +6
    assert leases.try_hold(db, "job", "replica-b", 5, now + dt.timedelta(seconds=6.5))
    assert not leases.try_hold(db, "job", "replica-a", 5, now + dt.timedelta(seconds=7))
    leases.release(db, "job", "replica-b")
    assert leases.try_hold(db, "job", "replica-a", 5)


def test_concurrent_first_holds_give_one_holder(db: Database) -> None:
    names = [f"replica-{i}" for i in range(4)]
    held: list[str] = []
    start = threading.Barrier(len(names))

    def hold(name: str) -> None:
        start.wait()
        if leases.try_hold(db, "fresh", name, 30):
            held.append(name)

    threads = [threading.Thread(target=hold, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(held) == 1, held


class CountingBackend(FakeBackend):
    """The fake backend, counting maintain() calls; `shared` as a per-replica (local) or a shared one."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.shared = shared
        self.maintained = 0

    def maintain(self) -> None:
        self.maintained += 1


def shared_backend() -> CountingBackend:
    """One whose servers outlive replicas (Kubernetes)."""
    return CountingBackend(shared=True)


def reconciler(svc: SessionService, backend: FakeBackend) -> Reconciler:
    return Reconciler(svc, backend, interval_s=30.0, start_timeout_s=30.0, retention_days=30, clock=svc._now)


async def until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


@pytest.mark.anyio
async def test_a_local_session_taken_over_ends_in_error_naming_the_lost_replica(db: Database) -> None:
    """With the local backend a render server is its replica's child: the survivor cannot reach it, so the session
    ends in Error saying why, and its record is released (the lost replica stops the server when it restarts)."""
    a, acct = ready_on_a(db)
    b = replica(db, "replica-b", later(LEASE_S + 1))
    backend = FakeBackend()
    backend.placement = PLACEMENT
    r = reconciler(b, backend)
    await r.reconcile_once()
    await until(lambda: a.get(acct, "s1").status is SessionStatus.ERROR, "the taken-over session to fail")
    view = a.get(acct, "s1")
    assert view.error_code == "RenderServerLost" and "replica-a" in (view.error_message or "")
    await until(lambda: not a.needing_attention(), "the record to be marked released")
    assert backend.probes == 0  # nothing of A's server was asked of B's backend
    await r.stop()


@pytest.mark.anyio
async def test_a_session_whose_lease_ran_out_while_its_replica_was_gone_ends_expired(db: Database) -> None:
    """Mid-expiry: the lapsed replica never expired it; the taker ends it at its deadline, Expired, not Error."""
    a, acct = ready_on_a(db, lease_minutes=0)  # a lease of 0 minutes: due as soon as Ready
    b = replica(db, "replica-b", later(LEASE_S + 1))
    r = reconciler(b, FakeBackend())
    await r.reconcile_once()
    await until(lambda: not a.needing_attention(), "the session to end and be released")
    assert a.get(acct, "s1").status is SessionStatus.EXPIRED
    await r.stop()


@pytest.mark.anyio
async def test_a_shared_backend_session_taken_over_stays_ready(db: Database) -> None:
    a, acct = ready_on_a(db, host_ref="pod-1")
    b = replica(db, "replica-b", later(LEASE_S + 1))
    backend = shared_backend()
    backend.claimed["pod-1"] = SessionKey(acct, "s1")
    backend.placement = PLACEMENT
    r = reconciler(b, backend)
    await r.reconcile_once()
    await until(lambda: backend.probes > 0, "B to probe the pod it took over")
    assert a.get(acct, "s1").status is SessionStatus.READY and owners(a) == {"s1": "replica-b"}
    assert backend.released == {}
    await r.stop()


@pytest.mark.anyio
async def test_only_the_lease_holder_maintains_a_shared_backend(db: Database) -> None:
    backends = [shared_backend(), shared_backend()]
    loops = [reconciler(replica(db, f"replica-{i}"), be) for i, be in enumerate(backends)]
    for loop in loops:
        await loop.reconcile_once()
        await loop.wait_for(MAINTAINING, 5)
    assert sorted(be.maintained for be in backends) == [0, 1]
    assert not leases.try_hold(db, MAINTENANCE_LEASE, "replica-x", 1)  # held by the one that maintained
    # A per-replica (local) backend's pool is its own: every replica keeps it, whoever holds the lease.
    local = [CountingBackend(shared=False), CountingBackend(shared=False)]
    local_loops = [reconciler(replica(db, f"local-{i}"), be) for i, be in enumerate(local)]
    for loop in local_loops:
        await loop.reconcile_once()
        await loop.wait_for(MAINTAINING, 5)
        await loop.stop()
    assert [be.maintained for be in local] == [1, 1]
    for loop in loops:
        await loop.stop()


@pytest.mark.anyio
async def test_the_orphan_sweep_keeps_a_server_whose_session_appeared_after_the_pass_read(db: Database) -> None:
    """A shared backend shows every replica's servers. One placed by another replica for a session created after
    this pass read the records is kept (its record is read again); one whose session ended is stopped."""
    a = replica(db, "replica-a")
    acct = account(db)
    backend = shared_backend()
    r = reconciler(a, backend)
    rows_before = a.needing_attention()  # the pass's read, before B's create
    b = replica(db, "replica-b")
    b.create(acct, "new", SessionSize.STANDARD, 10)
    backend.claimed["pod-new"] = SessionKey(acct, "new")
    backend.claimed["pod-gone"] = SessionKey(acct, "purged-long-ago")
    assert await r._unclaimed(rows_before) == ["pod-gone"]
    await r.stop()


def test_a_replica_whose_secrets_key_cannot_open_the_stores_credentials_is_refused(db: Database) -> None:
    first = SecretBox(Fernet.generate_key())
    require_shared_secrets_key(db, SecretBox(Fernet.generate_key()))  # nothing sealed yet: any key
    StorageLinks(db, first).link(account(db), "acct", "a2V5", None)
    require_shared_secrets_key(db, first)
    with pytest.raises(SecretUnreadable, match="must share one key"):
        require_shared_secrets_key(db, SecretBox(Fernet.generate_key()))


class HangingBackend(FakeBackend):
    """A backend whose acquire blocks its worker thread until the test lets it go (a cluster API that hangs, a
    server start on an overloaded machine); counts the acquires blocked now."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.hanging = 0
        self._lock = threading.Lock()

    def acquire(self, key: SessionKey, size: str) -> str:
        with self._lock:
            self.hanging += 1
        self.go.wait(60)
        with self._lock:
            self.hanging -= 1
        return super().acquire(key, size)


def all_renewed_after(svc: SessionService, since: dt.datetime) -> bool:
    return all(row.heartbeat is not None and row.heartbeat > since for row in svc.needing_attention())


PASS_INTERVAL_S = 0.2
RENEWED_WITHIN_S = 2.0
"""Bound on a renewal while session work fills every worker thread: ten pass intervals, for a loaded 2-core CI
machine; the lease (10 s) is what must not be missed. Before the fix it never came (the pass queued behind the
hung acquires)."""


def test_the_pass_renews_within_its_interval_while_session_work_fills_every_worker_thread(db: Database) -> None:
    """The 50-session burst: a replica busy starting 25 sessions missed its lease, because the pass's store work
    queued on the event loop's default executor behind every session's blocking acquire. Here the default executor
    has 2 threads and 4 Starting sessions' acquires hang on them; the pass must still renew every heartbeat."""
    a = replica(db, "replica-a")
    acct = account(db)
    for i in range(4):
        a.create(acct, f"s{i}", SessionSize.STANDARD, 10)
    backend = HangingBackend()

    async def main() -> None:
        # A loop of its own (asyncio.run), so that its small default executor is no other test's.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        r = Reconciler(a, backend, interval_s=PASS_INTERVAL_S, start_timeout_s=30.0, retention_days=30)
        await r.start()
        try:
            await until(lambda: backend.hanging == 2, "two acquires to hold both worker threads")
            for _ in range(2):  # renewed, and renewed again: the pass goes on, not just one that slipped through
                await until(partial(all_renewed_after, a, utc_now()), "every heartbeat renewed", RENEWED_WITHIN_S)
            assert backend.hanging == 2  # still saturated throughout
        finally:
            backend.go.set()
            await r.stop()

    asyncio.run(main())
