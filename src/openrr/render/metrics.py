"""The render server's Prometheus metrics (`GET /metrics` on its inspector port): frame rate, frame time and
connected clients of the session it serves.

Cheap on the frame path: a frame costs one histogram observe, on the event loop, where scrapes are answered too
(so the histogram's lock is never contended). The rest is read from the scene at scrape time.

The `session` label is sha1(session id) in hex, the value of a Kubernetes render pod's `openrr.io/session` label:
the port is reachable by anyone, and which session a server serves is for the control plane and the session's
own clients to know (as with /health), while an operator can still join the series to a pod or a session.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from openrr.render.identity import ServerIdentity
from openrr.render.session import SceneSession

FRAME_BUCKETS = (0.005, 0.01, 0.0167, 0.025, 0.0333, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
"""Render start to sent, around the 60 and 30 fps budgets (16.7 and 33.3 ms) up to heavy scenes on llvmpipe."""
FPS_WINDOW_S = 2.0
"""The frame rate is that of the frames sent in the last 2 s: frames are only made while the scene changes, and an
idle session's rate is 0, not that of its last burst; 2 s still sees a 1 fps session as one."""


def session_label(session_id: str | None) -> str:
    """The `session` label: sha1 of the id, "" while a warm server serves no session."""
    return hashlib.sha1(session_id.encode()).hexdigest() if session_id else ""


class RenderMetrics(Collector):
    def __init__(self, identity: ServerIdentity, scene: SceneSession) -> None:
        self.identity = identity
        self.scene = scene
        self.registry = CollectorRegistry()
        self.frame_seconds = Histogram(
            "openrr_render_frame_seconds",
            "From the start of a frame's rendering until it was handed to the clients.",
            ["session"],
            buckets=FRAME_BUCKETS,
            registry=self.registry,
        )
        self._labelled: tuple[str | None, Histogram] | None = None
        self.registry.register(self)

    def observe_frame(self, seconds: float) -> None:
        """Called for every frame sent. The labelled child is looked up once per session, not once per frame."""
        session_id = self.identity.session_id
        if self._labelled is None or self._labelled[0] != session_id:
            self._labelled = (session_id, self.frame_seconds.labels(session_label(session_id)))
        self._labelled[1].observe(seconds)

    def describe(self) -> list[Metric]:
        return list(self._families(""))

    def collect(self) -> Iterator[Metric]:
        yield from self._families(session_label(self.identity.session_id), filled=True)

    def _families(self, session: str, filled: bool = False) -> Iterator[Metric]:
        fps = GaugeMetricFamily("openrr_render_fps", "Frames sent per second, over the last 2 s.", labels=["session"])
        clients = GaugeMetricFamily(
            "openrr_render_clients", "Clients connected to the stream (controller and watchers).", labels=["session"]
        )
        frames = CounterMetricFamily(
            "openrr_render_frames", "Frames sent since the server started.", labels=["session"]
        )
        if filled:
            stats = self.scene.stats
            fps.add_metric([session], self._fps())
            clients.add_metric([session], len(self.scene.clients))
            frames.add_metric([session], stats.frames_sent)
        yield from (fps, clients, frames)

    def _fps(self) -> float:
        since = time.perf_counter() - FPS_WINDOW_S  # the clock the scene stamps its frames with
        recent = [t for t in self.scene.stats.frame_times if t >= since]
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def exposition(self) -> bytes:
        """The text format. Call it on the event loop, the thread that sends frames (no lock is shared)."""
        return generate_latest(self.registry)
