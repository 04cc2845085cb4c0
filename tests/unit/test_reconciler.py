"""The reconciler alone, on a real SQLite store, against a fake hosting backend.

Why a fake backend: these tests decide exactly when a render server answers, dies or never answers, and time
each outcome in milliseconds; a real render server takes seconds to start and cannot be made to fail on cue. The
real backend is covered end to end (tests/test_faults.py: killed servers, lease expiry, capacity).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from openrr.accounts.service import AccountService
from openrr.hosting.backend import HostGone, Placement, SessionKey
from openrr.sessions.model import SessionView
from openrr.sessions.reconciler import Reconciler
from openrr.sessions.service import SessionService
from openrr.sessions.state import SessionSize, SessionStatus
from openrr.store.db import Database
from openrr.store.tables import SessionRow
from openrr.util.clock import Clock, utc_now

pytestmark = pytest.mark.anyio
PLACEMENT = Placement("render.test", 50051, 50052)
LONG = 30.0
"""An interval no test waits for: what happens within a test's bounds happened because of a wake-up, not a tick."""


class FakeBackend:
    """A HostingBackend whose servers do what the test says: answer (`placement`), never answer (None, the
    default), or die (`gone`, the reason). Records when each server was released."""

    shared = False

    def __init__(self) -> None:
        self.placement: Placement | None = None
        self.gone: str | None = None
        self.claimed: dict[str, SessionKey] = {}
        self.released: dict[str, float] = {}
        """host_ref -> wall time (time.time()) of its first release."""
        self.shut_down = False
        self.probes = 0
        """How many times a server was asked: each probe means a pass (or a start's poll) looked at it."""

    def acquire(self, key: SessionKey, size: str) -> str:
        ref = f"host-{len(self.claimed) + len(self.released)}"
        self.claimed[ref] = key
        return ref

    async def probe(self, host_ref: str, key: SessionKey) -> Placement | None:
        self.probes += 1
        if self.gone is not None:
            raise HostGone(self.gone)
        return self.placement

    def release(self, host_ref: str) -> None:
        self.released.setdefault(host_ref, time.time())
        self.claimed.pop(host_ref, None)

    def maintain(self) -> None:
        pass

    def warm_count(self, size: str) -> int:
        return 0

    def claimed_refs(self) -> dict[str, SessionKey]:
        return dict(self.claimed)

    def shutdown(self) -> None:
        self.shut_down = True

    async def aclose(self) -> None:
        pass


class World:
    """A session service on a fresh SQLite store, one account, and the fake backend."""

    def __init__(self, tmp_path: Path, clock: Clock = utc_now) -> None:
        self.db = Database(f"sqlite:///{tmp_path / 'openrr.db'}")
        self.db.migrate()
        self.account = AccountService(self.db).create().account.account_id
        self.clock = clock
        self.sessions = SessionService(self.db, {"Standard": 4, "Premium": 1}, on_change=self._changed, clock=clock)
        self.backend = FakeBackend()
        self.reconciler: Reconciler | None = None

    def _changed(self) -> None:
        if self.reconciler is not None:
            self.reconciler.kick()  # as services.py wires it: a change asks for a pass now

    def get(self, session_id: str) -> SessionView:
        return self.sessions.get(self.account, session_id)

    @asynccontextmanager
    async def running(self, *, interval_s: float, start_timeout_s: float = LONG) -> AsyncIterator[Reconciler]:
        self.reconciler = Reconciler(
            self.sessions,
            self.backend,
            interval_s=interval_s,
            start_timeout_s=start_timeout_s,
            retention_days=30,
            clock=self.clock,
        )
        await self.reconciler.start()
        try:
            yield self.reconciler
        finally:
            await self.reconciler.stop()

    async def until(self, session_id: str, done: Callable[[SessionView], bool], timeout_s: float = 5.0) -> SessionView:
        """Poll the store every few milliseconds (never a blind sleep) until `done` holds for the session."""
        deadline = time.monotonic() + timeout_s
        view = self.get(session_id)
        while not done(view):
            assert time.monotonic() < deadline, f"timed out after {timeout_s}s; the session is {view}"
            await asyncio.sleep(0.005)
            view = self.get(session_id)
        return view

    async def next_probe(self) -> None:
        """Wait until the reconciler has looked at a server again: everything it decided before that is done."""
        seen = self.backend.probes
        self._changed()
        deadline = time.monotonic() + 5.0
        while self.backend.probes <= seen:
            assert time.monotonic() < deadline, "timed out waiting for the reconciler to look at the server"
            await asyncio.sleep(0.002)

    async def until_released(self, ref: str, timeout_s: float = 5.0) -> float:
        deadline = time.monotonic() + timeout_s
        while ref not in self.backend.released:
            assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {ref} to be released"
            await asyncio.sleep(0.005)
        return self.backend.released[ref]

    def ready_with_deadline_in(self, session_id: str, seconds: float) -> tuple[str, dt.datetime]:
        """A Ready session on a fake server, its one-minute lease ending `seconds` from now: (host_ref, deadline)."""
        self.sessions.create(self.account, session_id, SessionSize.STANDARD, 1)
        ref = self.backend.acquire(SessionKey(self.account, session_id), "Standard")
        assert self.sessions.attach_host(self.account, session_id, ref)
        assert self.sessions.mark_ready(self.account, session_id, "render.test", 50051, 50052)
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        with self.db.write() as s:
            row = s.get(SessionRow, (self.account, session_id))
            assert row is not None
            row.ready_time = deadline - dt.timedelta(minutes=1)
        self.backend.placement = PLACEMENT
        return ref, deadline


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def _ended(view: SessionView) -> bool:
    return not view.status.is_live


async def test_a_server_that_never_answers_fails_the_session_at_the_start_timeout(world: World) -> None:
    timeout_s = 0.2
    world.sessions.create(world.account, "slow", SessionSize.STANDARD, 10)
    async with world.running(interval_s=LONG, start_timeout_s=timeout_s):
        view = await world.until("slow", _ended)
        failed_at = dt.datetime.now(dt.UTC)
        assert view.status is SessionStatus.ERROR
        assert view.error_code == "RenderServerStartTimeout"
        assert view.error_message == f"The render server did not answer within {timeout_s:.0f} seconds."
        # Not before the timeout, and not long after it (the interval is 30 s: the wait itself noticed).
        waited = (failed_at - view.creation_time).total_seconds()
        assert timeout_s <= waited < timeout_s + 2.0, waited
        # The failed session's server is released by the next pass, which the failure asked for at once.
        await world.until_released("host-0", timeout_s=2.0)


async def test_a_server_that_dies_while_starting_fails_the_session_with_its_reason(world: World) -> None:
    world.backend.gone = "The render server exited with code 3."
    world.sessions.create(world.account, "dies", SessionSize.STANDARD, 10)
    async with world.running(interval_s=LONG):
        view = await world.until("dies", _ended, timeout_s=2.0)
        assert view.status is SessionStatus.ERROR and view.error_code == "RenderServerFailed"
        assert view.error_message == "The render server exited with code 3. The session cannot be used."
        await world.until_released("host-0", timeout_s=2.0)


async def test_a_ready_session_whose_server_dies_turns_into_error(world: World) -> None:
    world.backend.placement = PLACEMENT
    world.sessions.create(world.account, "ready", SessionSize.STANDARD, 10)
    async with world.running(interval_s=0.01):
        view = await world.until("ready", lambda v: v.status is not SessionStatus.STARTING, timeout_s=2.0)
        assert view.status is SessionStatus.READY
        assert (view.hostname, view.handshake_port, view.inspector_port) == ("render.test", 50051, 50052)
        world.backend.gone = "The render server is gone."
        view = await world.until("ready", _ended, timeout_s=2.0)
        assert view.status is SessionStatus.ERROR and view.error_code == "RenderServerFailed"
        assert view.error_message == "The render server is gone. The session cannot be used."
        await world.until_released("host-0", timeout_s=2.0)


async def test_expiry_is_never_a_pass_early(world: World) -> None:
    # Passes every 10 ms up to the deadline: any of them expiring early would release the server before it.
    ref, deadline = world.ready_with_deadline_in("lease", 0.25)
    async with world.running(interval_s=0.01):
        assert world.get("lease").status is SessionStatus.READY
        released = await world.until_released(ref)
        assert dt.datetime.fromtimestamp(released, dt.UTC) >= deadline
        assert (released - deadline.timestamp()) < 1.0
        view = await world.until("lease", _ended)
    assert view.status is SessionStatus.EXPIRED
    # Ended at the deadline itself, whenever it was noticed: the elapsed time is exactly the lease.
    assert view.elapsed_s == 60.0
    assert view.error_message == "The session's lease of 1 minutes ran out."


async def test_expiry_is_not_missed_between_passes(world: World) -> None:
    # Passes 30 s apart: the session still ends at its deadline, because the loop wakes up for it.
    ref, deadline = world.ready_with_deadline_in("lease", 0.25)
    async with world.running(interval_s=LONG):
        released = await world.until_released(ref, timeout_s=5.0)
        late_s = released - deadline.timestamp()
        assert 0.0 <= late_s < 1.0, late_s
        view = await world.until("lease", _ended)
    assert view.status is SessionStatus.EXPIRED and view.elapsed_s == 60.0


class FakeClock:
    """The time as the test sets it: leases and start timeouts are judged against it, to the microsecond."""

    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def test_on_a_set_clock_expiry_is_exactly_at_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    world = World(tmp_path, clock)
    world.backend.placement = PLACEMENT
    world.sessions.create(world.account, "exact", SessionSize.STANDARD, 1)
    async with world.running(interval_s=0.01):
        await world.until("exact", lambda v: v.status is SessionStatus.READY, timeout_s=2.0)
        deadline = clock.now + dt.timedelta(minutes=1)  # Ready at clock.now: the lease runs from there
        clock.now = deadline - dt.timedelta(microseconds=1)
        await world.next_probe()  # a whole pass at one microsecond before the deadline ...
        await world.next_probe()
        assert world.get("exact").status is SessionStatus.READY and not world.backend.released
        clock.now = deadline
        await world.until_released("host-0", timeout_s=2.0)  # ... and the first pass at the deadline ends it
        view = await world.until("exact", _ended)
    assert view.status is SessionStatus.EXPIRED and view.elapsed_s == 60.0


async def test_on_a_set_clock_the_start_timeout_is_exactly_its_length(tmp_path: Path) -> None:
    clock = FakeClock()
    world = World(tmp_path, clock)
    world.sessions.create(world.account, "late", SessionSize.STANDARD, 10)
    created = clock.now
    async with world.running(interval_s=LONG, start_timeout_s=60.0):
        await world.next_probe()
        clock.now = created + dt.timedelta(seconds=60)  # exactly the timeout: still allowed
        await world.next_probe()
        await world.next_probe()
        assert world.get("late").status is SessionStatus.STARTING
        clock.now = created + dt.timedelta(seconds=60, microseconds=1)
        view = await world.until("late", _ended, timeout_s=2.0)
    assert view.status is SessionStatus.ERROR and view.error_code == "RenderServerStartTimeout"
    assert view.error_message == "The render server did not answer within 60 seconds."
