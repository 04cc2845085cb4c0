"""The control plane's metrics, in a registry of their own per process (or per app, in tests): several apps in one
process must not count into one another's, as they would in prometheus_client's global registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from openrr.hosting.backend import HostingBackend
from openrr.metrics.store_gauges import StoreGauges
from openrr.store.db import Database

START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""From a warm server (tens of milliseconds) through a cold one (seconds) to the start timeout (minutes)."""


class ControlPlaneMetrics:
    def __init__(self, db: Database, backend: HostingBackend) -> None:
        self.registry = CollectorRegistry()
        self.start_seconds = Histogram(
            "openrr_session_start_seconds",
            "From a session's creation to Ready (observed by the replica that made it Ready).",
            buckets=START_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "openrr_http_requests",
            "API requests answered by this replica, by route template, method and status (/metrics not counted).",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.registry.register(StoreGauges(db, backend))

    def observe_start(self, seconds: float) -> None:
        self.start_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The text format; queries the store, so call it off the event loop."""
        return generate_latest(self.registry)
