"""Drives sessions toward what their records say: places render servers, turns Starting into Ready once the
server answers, expires leases, notices dead servers, and stops the servers of ended sessions.

It runs whether or not anyone polls. Each pass re-reads the store, so it also picks up after a restart, and stops
every render server that no session record claims any more: a session whose account was deleted (its records go
with it, perhaps from another process) loses its server on the next pass, not at the next start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from openrr.hosting.backend import HostGone, HostingBackend, SessionKey
from openrr.sessions.service import SessionNotFound, SessionService
from openrr.sessions.state import SessionStatus
from openrr.store.tables import SessionRow
from openrr.util.background import BackgroundLoop
from openrr.util.clock import Clock, utc_now

logger = logging.getLogger(__name__)
_RELEASING = "render server"
"""Keys of release tasks are (_RELEASING, host_ref); those of session tasks (account id, session id), and no
account id is this."""


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

    async def before_start(self) -> None:
        # Before any session is handled: what a crashed control plane left behind.
        for ref in self._unclaimed(await asyncio.to_thread(self.service.needing_attention)):
            await asyncio.to_thread(self.backend.release, ref)

    async def after_stop(self) -> None:
        await self.backend.aclose()

    async def next_wait_s(self) -> float:
        # Wake up for the next lease to run out, even between passes.
        until_expiry = await asyncio.to_thread(self.service.seconds_until_next_expiry)
        return self.interval_s if until_expiry is None else min(self.interval_s, until_expiry + 0.01)

    async def run_once(self) -> None:
        await self.reconcile_once()

    async def reconcile_once(self) -> None:
        rows = await asyncio.to_thread(self.service.needing_attention)
        for row in rows:
            key = (row.account_id, row.id)
            if not self.running(key):
                self.spawn(key, self._handle(row), f"handling session {row.id}")
        self._release_unclaimed(rows)
        if self.maintenance_due(5 * self.interval_s):
            await asyncio.to_thread(self._maintain)

    def _maintain(self) -> None:
        self.backend.maintain()
        purged = self.service.purge_older_than(self.retention_days)
        if purged:
            logger.info("purged %d session records older than %d days", purged, self.retention_days)

    async def _handle(self, row: SessionRow) -> None:
        key = SessionKey(row.account_id, row.id)
        status = SessionStatus(row.status)
        try:
            if status is SessionStatus.STARTING:
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
            await asyncio.sleep(0.02)

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

    def _unclaimed(self, rows: list[SessionRow]) -> list[str]:
        """Servers given to a session that no longer needs them: none of `rows` (the records needing attention,
        read before this call) names the server or its session. The session may have ended and been purged, or
        gone with its deleted account. Warm-pool servers are not the backend's claimed ones, so they stay.

        A server is only ever placed for a session read by an earlier or this pass, so one being placed right now
        belongs to a row of `rows` (Starting) unless its session ended meanwhile, and then stopping it is right.
        In-memory work over what the pass already read: no query of its own.
        """
        refs = {r.host_ref for r in rows if r.host_ref}
        keys = {(r.account_id, r.id) for r in rows}
        return [
            ref
            for ref, key in self.backend.claimed_refs().items()
            # Not one being stopped now, either: a stop may take the whole grace period.
            if ref not in refs and (key.account_id, key.session_id) not in keys and not self.running((_RELEASING, ref))
        ]

    def _release_unclaimed(self, rows: list[SessionRow]) -> None:
        for ref in self._unclaimed(rows):
            logger.info("stopping render server %s: no session claims it any more", ref)
            self.spawn((_RELEASING, ref), asyncio.to_thread(self.backend.release, ref), f"stopping render server {ref}")

    async def shutdown_sessions(self, message: str) -> None:
        """On a clean shutdown: stop every render server; live sessions end in Error.

        The servers are stopped even if the store cannot be reached any more (nothing may be left running);
        their sessions are then marked by the next start, which finds them dead.
        """
        rows: list[SessionRow] = []
        try:
            rows = await asyncio.to_thread(self.service.needing_attention)
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
