"""Self-expiry of a render server that no control plane looks after any more.

A control plane that was SIGKILLed and never restarts (or a replica that died before recording the server) leaves
nobody to stop its render servers. Every live control plane sends each of its servers a request with the control
secret every few seconds (a session's probe, a warm server's keep-alive); a server that hears none for its orphan
timeout stops itself. Connected clients do not keep it alive: without a control plane their lease is not enforced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("openrr.render")


class OrphanWatch:
    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._last = clock()
        self.orphaned = False

    def heard(self) -> None:
        """A request carried the valid control secret."""
        self._last = self._clock()

    def silent_s(self) -> float:
        return self._clock() - self._last

    def due(self) -> bool:
        return self.silent_s() >= self.timeout_s

    async def watch(self, stop: Callable[[], None]) -> None:
        """Call `stop` once the control plane has been silent for the timeout (and mark the watch orphaned)."""
        # A tenth of the timeout (at most a second): the server ends within about 1.1 timeouts.
        period = min(self.timeout_s / 10, 1.0)
        while not self.due():
            await asyncio.sleep(period)
        self.orphaned = True
        logger.warning(
            "no request from the control plane for %.1f s (orphan timeout %.1f s): it is gone; stopping this render "
            "server",
            self.silent_s(),
            self.timeout_s,
        )
        stop()
