"""The control plane's /metrics, in process (ASGI transport, tests/unit/asgi.py): the gauges follow the store as
sessions and conversions are created and end, requests are counted by route template (never by the ids in the
path), and the start-latency histogram counts the starts the reconciler completes. Parsed with prometheus_client's
own parser."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openrr.conversions.request import build_request
from openrr.metrics.control_plane import ControlPlaneMetrics
from openrr.sessions.state import SessionSize, SessionStatus
from tests.unit.asgi import GOOD, V21, in_process
from tests.unit.test_reconciler import PLACEMENT, FakeBackend, World

pytestmark = pytest.mark.anyio
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SESSION_ROUTE = "/accounts/{account_id}/sessions/{session_id}"


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(api: httpx.AsyncClient) -> tuple[Samples, str]:
    r = await api.get("/metrics", headers={"Authorization": ""})  # no token: Prometheus has none
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return parse(r.text), r.text


async def test_the_session_gauge_follows_the_store_and_names_no_ids(tmp_path: Path) -> None:
    async with in_process(tmp_path) as arr:
        before, _ = await scrape(arr.api)
        # Live statuses of every size are there at 0 before any session: an absent series is no 0 to an alert.
        for size in ("Standard", "Premium"):
            for status in ("Starting", "Ready"):
                assert value(before, "openrr_sessions", size=size, status=status) == 0
        sid = "metrics-gauge-1"
        r = await arr.api.put(f"{arr.sessions}/{sid}", params=V21, json=GOOD)
        assert r.status_code == 201, r.text
        started, text = await scrape(arr.api)
        assert value(started, "openrr_sessions", size="Standard", status="Starting") == 1
        assert value(started, "openrr_sessions", size="Premium", status="Starting") == 0
        assert sid not in text and arr.account_id not in text
        r = await arr.api.post(f"{arr.sessions}/{sid}/:stop", params=V21)
        assert r.status_code == 204, r.text
        stopped, _ = await scrape(arr.api)
        assert value(stopped, "openrr_sessions", size="Standard", status="Starting") == 0
        assert value(stopped, "openrr_sessions", size="Standard", status="Stopped") == 1


async def test_conversions_are_counted_by_status(tmp_path: Path) -> None:
    async with in_process(tmp_path) as arr:
        uri = "https://acct.blob.core.windows.net"
        request = build_request(
            {"storageContainerUri": f"{uri}/in", "relativeInputAssetPath": "a.glb"},
            {"storageContainerUri": f"{uri}/out"},
            "?sig=in",
            "?sig=out",
        )
        for cid in ("c1", "c2"):
            arr.services.conversions.create(arr.account_id, cid, request)
        samples, _ = await scrape(arr.api)
        assert value(samples, "openrr_conversions", status="NotStarted") == 2
        assert value(samples, "openrr_conversions", status="Running") == 0
        arr.services.conversions.cancel(arr.account_id, "c1")
        samples, _ = await scrape(arr.api)
        assert value(samples, "openrr_conversions", status="NotStarted") == 1
        assert value(samples, "openrr_conversions", status="Cancelled") == 1


async def test_requests_are_counted_by_route_template_not_by_path(tmp_path: Path) -> None:
    async with in_process(tmp_path) as arr:
        for sid in ("route-a", "route-b"):
            assert (await arr.api.put(f"{arr.sessions}/{sid}", params=V21, json=GOOD)).status_code == 201
            assert (await arr.api.get(f"{arr.sessions}/{sid}", params=V21)).status_code == 200
        assert (await arr.api.get(f"{arr.sessions}/missing", params=V21)).status_code == 404
        assert (await arr.api.get("/no/such/path")).status_code == 404
        assert (await arr.api.request("BREW", "/")).status_code == 405
        for name in ("index.html", "viewer.js"):
            assert (await arr.api.get(f"/viewer/{name}")).status_code == 200
        await scrape(arr.api)
        samples, text = await scrape(arr.api)
        total = "openrr_http_requests_total"
        assert value(samples, total, route=SESSION_ROUTE, method="PUT", status="201") == 2
        assert value(samples, total, route=SESSION_ROUTE, method="GET", status="200") == 2
        assert value(samples, total, route=SESSION_ROUTE, method="GET", status="404") == 1
        assert value(samples, total, route="(none)", method="GET", status="404") == 1
        # A made-up method is "other": it cannot make series of its own.
        assert value(samples, total, route="/", method="other", status="405") == 1
        assert value(samples, total, route="/viewer", method="GET", status="200") == 2
        assert "route-a" not in text and arr.account_id not in text
        # The scrapes themselves are not counted.
        assert not [k for k in samples if k[0] == total and ("route", "/metrics") in k[1]]


async def test_throttled_requests_are_counted_before_routing(tmp_path: Path) -> None:
    async with in_process(tmp_path, rate_limit_per_s=0.001, rate_limit_burst=1) as arr:
        # The burst of 1 went on the STS token in_process fetched; the next request of the account is refused.
        assert (await arr.api.get(arr.sessions, params=V21)).status_code == 429
        samples, _ = await scrape(arr.api)
        assert value(samples, "openrr_http_requests_total", route="(none)", method="GET", status="429") == 1


async def test_apps_in_one_process_count_apart(tmp_path: Path) -> None:
    async with in_process(tmp_path / "a") as one, in_process(tmp_path / "b") as two:
        assert (await one.api.get(one.sessions, params=V21)).status_code == 200
        route = "/accounts/{account_id}/sessions"
        first, _ = await scrape(one.api)
        second, _ = await scrape(two.api)
        assert value(first, "openrr_http_requests_total", route=route, method="GET", status="200") == 1
        assert value(second, "openrr_http_requests_total", route=route, method="GET", status="200") is None


class WarmBackend(FakeBackend):
    def warm_count(self, size: str) -> int:
        return {"Standard": 3, "Premium": 1}[size]


async def test_the_warm_pool_gauge_asks_the_backend(tmp_path: Path) -> None:
    world = World(tmp_path)
    metrics = ControlPlaneMetrics(world.db, WarmBackend())
    samples = parse(metrics.exposition().decode())
    assert value(samples, "openrr_warm_pool", size="Standard") == 3
    assert value(samples, "openrr_warm_pool", size="Premium") == 1


async def test_the_start_histogram_counts_each_start_the_reconciler_completes(tmp_path: Path) -> None:
    world = World(tmp_path)
    metrics = ControlPlaneMetrics(world.db, world.backend)
    world.backend.placement = PLACEMENT
    async with world.running(interval_s=0.01) as reconciler:
        reconciler.observe_start = metrics.observe_start  # as services.py wires it
        t0 = time.monotonic()
        world.sessions.create(world.account, "timed", SessionSize.STANDARD, 10)
        await world.until("timed", lambda v: v.status is SessionStatus.READY, timeout_s=5.0)
        elapsed = time.monotonic() - t0
        before = parse(metrics.exposition().decode())
        # A pass over a Ready session observes nothing more: one start, one observation.
        await world.next_probe()
    samples = parse(metrics.exposition().decode())
    assert value(before, "openrr_session_start_seconds_count") == 1
    assert value(samples, "openrr_session_start_seconds_count") == 1
    observed = value(samples, "openrr_session_start_seconds_sum")
    assert observed is not None and 0 < observed <= elapsed
    assert value(samples, "openrr_session_start_seconds_bucket", le="+Inf") == 1
