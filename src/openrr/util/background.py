"""A background loop on the event loop: one pass now and then, sooner when kicked, and the tasks the passes
spawn, at most one per key. The session reconciler and the conversion runner are both one.

A pass's own blocking work runs on a thread of the loop's own (`on_pass_thread`), not on the event loop's default
executor: that one is shared with every spawned task's blocking work (a render server's start can take the whole
start timeout), and a pass queued behind it came too late to renew the replica's leases (bench/RESULTS.md §9.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Hashable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, ParamSpec, TypeVar

K = TypeVar("K", bound=Hashable)
P = ParamSpec("P")
T = TypeVar("T")


class BackgroundLoop(Generic[K]):
    """Subclasses write `run_once` (one pass), and may override `next_wait_s` (how long to sleep after a pass),
    `before_start` (recovery before the first pass), `after_stop` (clean-up once every task ended) and
    `on_finished` (a spawned task ended)."""

    def __init__(self, name: str, interval_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._spawned: dict[K, asyncio.Task[Any]] = {}
        self._threads: set[asyncio.Future[Any]] = set()
        self._pass_thread: ThreadPoolExecutor | None = None
        self._last_maintenance: float | None = None
        # The subclass's module logs what goes wrong in it.
        self._log = logging.getLogger(type(self).__module__)

    # --- the public face --------------------------------------------------------------------------------

    def kick(self) -> None:
        """Ask for a pass now; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.before_start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop, then every task it spawned, then `after_stop`."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        tasks = list(self._spawned.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._threads, return_exceptions=True)
        # Cancelling the pass cannot stop its thread: what it started (a renewal) ends before whatever follows a
        # stop (a hand-over of this replica's sessions), or that would be undone. A no-op queued behind it is done
        # when it is (awaited, not shutdown(wait=True): that would block the event loop).
        if self._pass_thread is not None:
            await asyncio.wrap_future(self._pass_thread.submit(lambda: None))
            self._pass_thread.shutdown(wait=False)
            self._pass_thread = None
        await self.after_stop()

    # --- for subclasses ---------------------------------------------------------------------------------

    async def run_once(self) -> None:
        raise NotImplementedError

    async def next_wait_s(self) -> float:
        return self.interval_s

    async def before_start(self) -> None:
        pass

    async def after_stop(self) -> None:
        pass

    def on_finished(self, key: K) -> None:
        pass

    def wake(self) -> None:
        """Ask for another pass at once; from the event loop's thread (kick() is for other threads)."""
        self._wake.set()

    def spawn(self, key: K, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Run `work` as a task of its own unless one of `key` runs already (then `work` is closed unrun).
        `what` names it in the log should it fail: "`what` failed"."""
        if key in self._spawned:
            work.close()
            return
        task = asyncio.create_task(work, name=what)
        self._spawned[key] = task
        task.add_done_callback(lambda t: self._finished(t, key, what))

    async def in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` in a worker thread that `stop` waits for. Cancelling the caller cannot stop a thread, and what it
        does (start a render server) must be over before whatever follows a stop (stop every server)."""
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)
        return await asyncio.shield(future)

    async def on_pass_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` on this loop's own thread: for the passes' (and `next_wait_s`'s) blocking work, which must never
        wait for a spawned task's (`in_thread`, asyncio.to_thread: the default executor)."""
        if self._pass_thread is None:
            # One thread: the passes run one at a time, and their store work is short.
            self._pass_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return await asyncio.get_running_loop().run_in_executor(self._pass_thread, partial(fn, *args, **kwargs))

    async def wait_for(self, key: K, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the task of `key` to end (at once if none runs); the task goes on after."""
        task = self._spawned.get(key)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the waiter itself was cancelled
        except Exception:
            pass  # the task's own failure: _finished logs it

    def running(self, key: K) -> bool:
        return key in self._spawned

    def running_keys(self) -> frozenset[K]:
        return frozenset(self._spawned)

    def maintenance_due(self, every_s: float) -> bool:
        """True at most once every `every_s` (the first time at once), for periodic housekeeping."""
        now = time.monotonic()
        if self._last_maintenance is not None and now - self._last_maintenance <= every_s:
            return False
        self._last_maintenance = now
        return True

    def maintain_soon(self) -> None:
        """Make the next `maintenance_due` true, whenever the last maintenance ran."""
        self._last_maintenance = None

    # --- internals --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                self._log.exception("%s: pass failed", self.name)
            timeout = await self.next_wait_s()
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for loses a cancellation (stop) that arrives as
            # the event is set (a kick), and the loop then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()

    def _finished(self, task: asyncio.Task[Any], key: K, what: str) -> None:
        if self._spawned.get(key) is task:
            del self._spawned[key]
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s failed", what, exc_info=task.exception())
        self.on_finished(key)
