"""Drives sessions toward what their records say: places render servers, turns Starting into Ready once the
server answers, expires leases, notices dead servers, and stops the servers of ended sessions.

It runs whether or not anyone polls. Each pass re-reads the store, so it also picks up after a restart, and stops
every render server that no session record claims any more: a session whose account was deleted (its records go
with it, perhaps from another process) loses its server on the next pass, not at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Protocol

from openrr.hosting.backend import HostGone, HostingBackend, SessionKey
from openrr.sessions.service import SessionNotFound, SessionService
from openrr.sessions.state import SessionStatus
from openrr.store.tables import SessionRow

logger = logging.getLogger(__name__)


class ClosableBackend(HostingBackend, Protocol):
    async def aclose(self) -> None: ...


class Reconciler:
    def __init__(
        self,
        service: SessionService,
        backend: ClosableBackend,
        interval_s: float,
        start_timeout_s: float,
        retention_days: int,
    ) -> None:
        self.service = service
        self.backend = backend
        self.interval_s = interval_s
        self.start_timeout_s = start_timeout_s
        self.retention_days = retention_days
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy: set[tuple[str, str]] = set()
        self._releasing: set[str] = set()
        """host_refs of unclaimed servers being stopped now (a stop may take the whole grace period)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_maintenance = 0.0

    def kick(self) -> None:
        """Ask for a pass now; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Before any session is handled: what a crashed control plane left behind.
        for ref in self._unclaimed(await asyncio.to_thread(self.service.needing_attention)):
            await asyncio.to_thread(self.backend.release, ref)
        self._task = asyncio.create_task(self._run(), name="openrr-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile_once()
            except Exception:
                logger.exception("reconcile pass failed")
            timeout = self.interval_s
            until_expiry = await asyncio.to_thread(self.service.seconds_until_next_expiry)
            if until_expiry is not None:
                timeout = min(timeout, until_expiry + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def reconcile_once(self) -> None:
        rows = await asyncio.to_thread(self.service.needing_attention)
        for row in rows:
            key = (row.account_id, row.id)
            if key in self._busy:
                continue
            self._busy.add(key)
            task = asyncio.create_task(self._handle(row), name=f"session {row.id}")
            self._tasks.add(task)
            task.add_done_callback(lambda t, k=key: self._done(t, k))  # type: ignore[misc]
        self._release_unclaimed(rows)
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_maintenance > 5 * self.interval_s:
            self._last_maintenance = loop.time()
            await asyncio.to_thread(self._maintain)

    def _done(self, task: asyncio.Task[None], key: tuple[str, str]) -> None:
        self._busy.discard(key)
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("handling session %s failed", key[1], exc_info=task.exception())

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
                host_ref = await asyncio.to_thread(self.backend.acquire, key, row.size)
            except Exception as e:
                logger.exception("could not start a render server for %s", key.session_id)
                await self._fail(key, "RenderServerStartFailed", f"The render server could not start: {e}")
                return
            self._last_maintenance = 0.0  # refill the warm pool on the next pass, not minutes later
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
                    logger.info("session %s is Ready on %s", key.session_id, placement)
                return
            if dt.datetime.now(dt.UTC) > deadline:
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
        self._wake.set()

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
            if ref not in refs and (key.account_id, key.session_id) not in keys and ref not in self._releasing
        ]

    def _release_unclaimed(self, rows: list[SessionRow]) -> None:
        for ref in self._unclaimed(rows):
            logger.info("stopping render server %s: no session claims it any more", ref)
            self._releasing.add(ref)
            task = asyncio.create_task(asyncio.to_thread(self.backend.release, ref), name=f"release {ref}")
            self._tasks.add(task)
            task.add_done_callback(lambda t, r=ref: self._released(t, r))  # type: ignore[misc]

    def _released(self, task: asyncio.Task[None], ref: str) -> None:
        self._releasing.discard(ref)
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("stopping render server %s failed", ref, exc_info=task.exception())

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
