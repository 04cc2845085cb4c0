"""Gauges read at scrape time: sessions and conversions in the store, warm servers in the hosting backend."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from openrr.conversions.state import ConversionStatus
from openrr.hosting.backend import HostingBackend
from openrr.sessions.state import LIVE, SessionSize
from openrr.store.db import Database
from openrr.store.tables import ConversionRow, SessionRow

SIZES = tuple(s.value for s in SessionSize)
ACTIVE_CONVERSIONS = (ConversionStatus.NOT_STARTED.value, ConversionStatus.RUNNING.value)


class StoreGauges(Collector):
    """One grouped query per table at each scrape: no counter kept in memory can drift from the store, and every
    replica sees the sessions of all of them. Counts only: no account or session id leaves the store here."""

    def __init__(self, db: Database, backend: HostingBackend) -> None:
        self.db = db
        self.backend = backend

    def describe(self) -> list[Metric]:
        # Without it the registry would call collect() (and query the store) when the collector is registered.
        return [self._sessions(), self._conversions(), self._warm_pool()]

    def collect(self) -> Iterator[Metric]:
        sessions = self._sessions()
        # The live statuses of every size always appear, at 0 when none: a series that vanishes is not a 0 to
        # an alert rule.
        counts = {(size, str(status)): 0 for size in SIZES for status in LIVE}
        by_size = select(SessionRow.size, SessionRow.status, func.count()).group_by(SessionRow.size, SessionRow.status)
        for row in self.db.fetch_all(by_size):
            size, status, n = tuple(row)
            counts[(size, status)] = n
        for (size, status), n in sorted(counts.items()):
            sessions.add_metric([size, status], n)
        yield sessions

        conversions = self._conversions()
        by_status = dict.fromkeys(ACTIVE_CONVERSIONS, 0)
        grouped = select(ConversionRow.status, func.count()).group_by(ConversionRow.status)
        for row in self.db.fetch_all(grouped):
            status, n = tuple(row)
            by_status[status] = n
        for status, n in sorted(by_status.items()):
            conversions.add_metric([status], n)
        yield conversions

        warm = self._warm_pool()
        for size in SIZES:
            warm.add_metric([size], self.backend.warm_count(size))
        yield warm

    @staticmethod
    def _sessions() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "openrr_sessions",
            "Session records in the store by size and status (the whole store: every replica reports the same).",
            labels=["size", "status"],
        )

    @staticmethod
    def _conversions() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "openrr_conversions",
            "Conversion records in the store by status (the whole store: every replica reports the same).",
            labels=["status"],
        )

    @staticmethod
    def _warm_pool() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "openrr_warm_pool",
            "Free warm render servers by size (a shared backend's are the cluster's; the local one's this replica's).",
            labels=["size"],
        )
