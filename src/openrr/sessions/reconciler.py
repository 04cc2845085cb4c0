"""Drives sessions toward what their records say: places render servers, turns Starting into Ready once the
server answers, expires leases, notices dead servers, and stops the servers of ended sessions.

It runs whether or not anyone polls. Each pass re-reads the store, so it also picks up after a restart, and stops
every render server that no session record claims any more: a session whose account was deleted (its records go
with it, perhaps from another process) loses its server on the next pass, not at the next start.

Several replicas may share the store. Each drives only the sessions it owns (the record's owner column): every
pass renews its ownership in one UPDATE and claims records whose owner let go or stopped renewing for the session
lease, so a dead replica's sessions are taken over within the lease plus one pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from openrr.hosting.backend import HostGone, HostingBackend, SessionKey
from openrr.sessions.service import SessionNotFound, SessionService, needs_server
from openrr.sessions.state import SessionStatus
from openrr.store import leases
from openrr.store.tables import SessionRow
from openrr.util.background import BackgroundLoop
from openrr.util.clock import Clock, utc_now

logger = logging.getLogger(__name__)
_RELEASING = "render server"
"""Keys of release tasks are (_RELEASING, host_ref); those of session tasks (account id, session id), and no
account id is this."""
PROBE_FIRST_S, PROBE_MAX_S = 0.02, 0.25
"""A starting server is probed again after 20 ms, then less and less often, up to every 250 ms: a warm one answers
at once, a cold one takes seconds, and at a fixed 20 ms 25 starting sessions made 2,500 probes and store reads a
second, which starved a replica's own passes past its ownership lease (bench/RESULTS.md §9.3)."""
MAINTENANCE_LEASE = "hosting-maintenance"
"""The singleton lease of a shared backend's housekeeping (one replica refills a cluster-wide warm pool)."""
PURGE_LEASE = "session-purge"
MAINTAINING = ("hosting maintenance", "")
"""The key of the maintenance task (no account id is this)."""


class Reconciler(BackgroundLoop[tuple[str, str]]):
    def __init__(
        self,
        service: SessionService,
        backend: HostingBackend,
        interval_s: float,
        start_timeout_s: float,
        retention_days: int,
        clock: Clock = utc_now,
    ) -> None:
        """`clock`: what start timeouts are measured with (tests pass their own, with the service's)."""
        super().__init__("openrr-reconciler", interval_s)
        self.service = service
        self.backend = backend
        self.start_timeout_s = start_timeout_s
        self.retention_days = retention_days
        self._clock = clock
        self.observe_start: Callable[[float], None] = lambda _seconds: None
        """Told each start's creation-to-Ready seconds (the control plane's metrics)."""

    @property
    def replica_id(self) -> str:
        return self.service.replica_id

    async def before_start(self) -> None:
        # Before any session is handled: what a crashed control plane left behind. Servers of this machine's own
        # (a restart on the same data directory) are this replica's to drive at once, not after the lease.
        if not self.backend.shared:
            placed = {(k.account_id, k.session_id): ref for ref, k in self.backend.claimed_refs().items()}
            await self.on_pass_thread(self.service.adopt, placed)
        for ref in await self._unclaimed(await self.on_pass_thread(self.service.needing_attention)):
            await asyncio.to_thread(self.backend.release, ref)

    async def after_stop(self) -> None:
        await self.backend.aclose()

    async def next_wait_s(self) -> float:
        # Wake up for the next lease to run out, even between passes.
        until_expiry = await self.on_pass_thread(self.service.seconds_until_next_expiry)
        return self.interval_s if until_expiry is None else min(self.interval_s, until_expiry + 0.01)

    async def run_once(self) -> None:
        await self.reconcile_once()

    async def reconcile_once(self) -> None:
        # On the pass's own thread: behind no session's blocking work, so the renewal keeps this replica's lease
        # however busy its sessions are (a burst of starts).
        claimed = await self.on_pass_thread(self.service.claim_pass)
        for row in claimed.rows:
            key = (row.account_id, row.id)
            if row.owner != self.replica_id:
                continue  # another replica drives it
            previous = claimed.taken_over.get(key)
            if previous is not None:
                logger.warning("took session %s over from replica %s, which stopped renewing it", row.id, previous)
            if not self.running(key):
                self.spawn(key, self._handle(row, previous), f"handling session {row.id}")
        await self._release_unclaimed(claimed.rows)
        if not self.running(MAINTAINING) and self.maintenance_due(5 * self.interval_s):
            # A task of its own, so that a slow refill (a cluster's API) never delays the next pass's renewal of
            # this replica's sessions past their lease; in_thread, so that stop waits for a server being started.
            self.spawn(MAINTAINING, self.in_thread(self._maintain), "hosting maintenance")

    async def start_now(self, account_id: str, session_id: str, wait_s: float) -> None:
        """Handle a session this replica just created now, not at the next pass, and wait up to `wait_s` for that
        handling to end (the fast start: a warm server is Ready within it)."""
        key = (account_id, session_id)
        if not self.running(key):
            row = await asyncio.to_thread(self.service.owned_row, account_id, session_id)
            if row is None or SessionStatus(row.status) is not SessionStatus.STARTING:
                return
            self.spawn(key, self._handle(row), f"handling session {session_id}")
        await self.wait_for(key, wait_s)

    def _maintain(self) -> None:
        # A per-replica backend (local children) keeps its own pool; a shared one's pool is the cluster's, kept by
        # whichever replica holds the lease.
        ttl = self.service.lease_s
        if not self.backend.shared or leases.try_hold(self.service.db, MAINTENANCE_LEASE, self.replica_id, ttl):
            self.backend.maintain()
        if leases.try_hold(self.service.db, PURGE_LEASE, self.replica_id, ttl):
            purged = self.service.purge_older_than(self.retention_days)
            if purged:
                logger.info("purged %d session records older than %d days", purged, self.retention_days)

    async def _handle(self, row: SessionRow, taken_from: str | None = None) -> None:
        key = SessionKey(row.account_id, row.id)
        status = SessionStatus(row.status)
        try:
            if taken_from is not None and row.host_ref is not None and not self.backend.shared:
                await self._lost_with_replica(row, key, taken_from)
            elif status is SessionStatus.STARTING:
                await self._drive_starting(row, key)
            elif status is SessionStatus.READY:
                await self._watch_ready(row, key)
            else:
                await self._release(row, key)
        except SessionNotFound:
            pass

    async def _drive_starting(self, row: SessionRow, key: SessionKey) -> None:
        host_ref = row.host_ref
        if host_ref is None:
            try:
                host_ref = await self.in_thread(self.backend.acquire, key, row.size)
            except Exception as e:
                logger.exception("could not start a render server for %s", key.session_id)
                await self._fail(key, "RenderServerStartFailed", f"The render server could not start: {e}")
                return
            self.maintain_soon()  # refill the warm pool on the next pass, not minutes later
            still_starting = await asyncio.to_thread(self.service.attach_host, key.account_id, key.session_id, host_ref)
            if not still_starting:
                return  # stopped meanwhile: the next pass releases the server
        deadline = row.creation_time + dt.timedelta(seconds=self.start_timeout_s)
        delay = PROBE_FIRST_S
        while True:
            try:
                placement = await self.backend.probe(host_ref, key)
            except HostGone as e:
                await self._fail(key, "RenderServerFailed", f"{e} The session cannot be used.")
                return
            if placement is not None:
                ready = await asyncio.to_thread(
                    self.service.mark_ready,
                    key.account_id,
                    key.session_id,
                    placement.hostname,
                    placement.handshake_port,
                    placement.inspector_port,
                )
                if ready:
                    self.observe_start((self._clock() - row.creation_time).total_seconds())
                    logger.info("session %s is Ready on %s", key.session_id, placement)
                return
            if self._clock() > deadline:
                await self._fail(
                    key,
                    "RenderServerStartTimeout",
                    f"The render server did not answer within {self.start_timeout_s:.0f} seconds.",
                )
                return
            current = await asyncio.to_thread(self.service.get, key.account_id, key.session_id)
            if current.status is not SessionStatus.STARTING:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, PROBE_MAX_S)

    async def _lost_with_replica(self, row: SessionRow, key: SessionKey, replica: str) -> None:
        """A session taken over from a lapsed replica whose render server was that replica's own process: nothing
        here can reach or stop it (its replica stops it when it starts again on its data directory, finding the
        record ended). The session ends in Error saying so, unless its lease ran out meanwhile (mid-expiry: it
        ends Expired, at its deadline, as it would have); its record is marked released."""
        if await asyncio.to_thread(self.service.expire_if_due, key.account_id, key.session_id):
            logger.info("session %s expired while its replica %s was gone", key.session_id, replica)
        elif SessionStatus(row.status).is_live:
            await self._fail(
                key,
                "RenderServerLost",
                f"The control-plane replica {replica} that ran this session's render server stopped responding "
                f"(no heartbeat for {self.service.lease_s:.0f} seconds); a render server on that machine cannot be "
                "taken over. The session cannot be used.",
            )
        await asyncio.to_thread(self.service.mark_released, key.account_id, key.session_id)

    async def _watch_ready(self, row: SessionRow, key: SessionKey) -> None:
        if await asyncio.to_thread(self.service.expire_if_due, key.account_id, key.session_id):
            logger.info("session %s expired", key.session_id)
            await self._release(row, key)
            return
        if row.host_ref is None:
            return
        try:
            await self.backend.probe(row.host_ref, key)
        except HostGone as e:
            await self._fail(key, "RenderServerFailed", f"{e} The session cannot be used.")

    async def _fail(self, key: SessionKey, code: str, message: str) -> None:
        if await asyncio.to_thread(self.service.fail, key.account_id, key.session_id, code, message):
            logger.warning("session %s failed: %s", key.session_id, message)
        # The server of a failed session is released by the next pass, like any ended session's.
        self.wake()

    async def _release(self, row: SessionRow, key: SessionKey) -> None:
        if row.host_ref is not None:
            await asyncio.to_thread(self.backend.release, row.host_ref)
        await asyncio.to_thread(self.service.mark_released, key.account_id, key.session_id)

    async def _unclaimed(self, rows: list[SessionRow]) -> list[str]:
        """Servers given to a session that no longer needs them: no row of `rows` (every record needing attention,
        whoever drives it, read before this call) names the server or its session, or its session's row names
        another server. The session may have ended and been purged, or gone with its deleted account. Warm-pool
        servers are not the backend's claimed ones, so they stay.

        A server is only ever placed for a session read by an earlier or this pass, so one being placed right now
        belongs to a row of `rows` (Starting) unless its session ended meanwhile, and then stopping it is right.
        With replicas, another may have created and placed a session after `rows` was read (a shared backend shows
        its servers too): such a candidate's own record is read again before it is stopped.
        """
        by_key = {(r.account_id, r.id): r for r in rows}
        candidates = [
            (ref, key)
            for ref, key in self.backend.claimed_refs().items()
            # Not one being stopped now, either: a stop may take the whole grace period.
            if not self.running((_RELEASING, ref))
            and not ((row := by_key.get((key.account_id, key.session_id))) is not None and needs_server(row, ref))
        ]
        unclaimed = []
        for ref, key in candidates:
            if not await self.on_pass_thread(self.service.keeps_server, key.account_id, key.session_id, ref):
                unclaimed.append(ref)
        return unclaimed

    async def _release_unclaimed(self, rows: list[SessionRow]) -> None:
        for ref in await self._unclaimed(rows):
            logger.info("stopping render server %s: no session claims it any more", ref)
            self.spawn((_RELEASING, ref), asyncio.to_thread(self.backend.release, ref), f"stopping render server {ref}")

    async def shutdown_sessions(self, message: str) -> None:
        """On a clean shutdown. With servers that outlive the control plane (shared backend): hand this replica's
        sessions over, servers untouched; another replica claims them at its next pass. Otherwise: stop every
        render server of this replica; its own live sessions end in Error (other replicas' are theirs).

        The servers are stopped even if the store cannot be reached any more (nothing may be left running);
        their sessions are then marked by the next start, which finds them dead.
        """
        if self.backend.shared:
            try:
                handed = await asyncio.to_thread(self.service.hand_over)
                logger.info("handed %d sessions over to the other replicas", handed)
            except Exception:
                logger.exception("could not hand the sessions over; other replicas take them after the lease")
            return
        rows: list[SessionRow] = []
        try:
            rows = [r for r in await asyncio.to_thread(self.service.needing_attention) if r.owner == self.replica_id]
            for row in rows:
                if SessionStatus(row.status).is_live:
                    await asyncio.to_thread(self.service.fail, row.account_id, row.id, "ServiceShutdown", message)
        except Exception:
            logger.exception("could not record the shutdown in the store; stopping render servers anyway")
        finally:
            await asyncio.to_thread(self.backend.shutdown)
        try:
            for row in rows:
                await asyncio.to_thread(self.service.mark_released, row.account_id, row.id)
        except Exception:
            logger.exception("could not record released render servers")
