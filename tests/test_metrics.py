"""/metrics end to end: a real `openrr serve` (the shared service) with a real render server. The control plane's
metrics show the Ready session and its start; the render server's show the connected client and a frame rate
above 0 while that client makes the scene change. Parsed with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import httpx

from openrr.client.render_session import RenderSessionClient
from tests.harness import Service, wait_for
from tests.unit.test_metrics import Samples, parse


def scrape(url: str, service: Service) -> Samples:
    # No token: what a cluster's Prometheus gets.
    r = httpx.get(url, verify=service.tls, timeout=10)
    assert r.status_code == 200, r.text
    return parse(r.text)


def test_the_control_plane_shows_the_ready_session_and_its_start(service: Service, session: dict[str, Any]) -> None:
    samples = scrape(f"{service.endpoint}/metrics", service)
    assert samples[("openrr_sessions", frozenset({("size", "Standard"), ("status", "Ready")}))] >= 1
    assert samples[("openrr_session_start_seconds_count", frozenset())] >= 1
    assert ("openrr_warm_pool", frozenset({("size", "Standard")})) in samples
    route = "/accounts/{account_id}/sessions/{session_id}"
    created = ("openrr_http_requests_total", frozenset({("route", route), ("method", "PUT"), ("status", "201")}))
    assert samples[created] >= 1


def test_the_render_server_shows_a_streaming_client_and_its_frame_rate(
    service: Service, session: dict[str, Any]
) -> None:
    url = f"https://{session['hostname']}:{session['arrInspectorPort']}/metrics"
    label = frozenset({("session", hashlib.sha1(session["id"].encode()).hexdigest())})

    async def scenario() -> Samples:
        async with await RenderSessionClient.connect(
            session["hostname"], session["handshakePort"], service.token(), ca=service.cert
        ) as client:
            # Frames are only made while the scene changes: orbit the camera, and scrape while it moves.
            async def orbit() -> None:
                for step in range(10_000):
                    angle = step * 0.05
                    cmd = await client.set_camera(position=(5 * math.sin(angle), 0, 5))
                    await client.next_frame(after_command=cmd)

            mover = asyncio.create_task(orbit())
            try:

                def streaming() -> Samples | None:
                    samples = scrape(url, service)
                    return samples if samples.get(("openrr_render_fps", label), 0) > 0 else None

                return await asyncio.to_thread(wait_for, streaming, 30, "a frame rate above 0 on the render server")
            finally:
                mover.cancel()
                await asyncio.gather(mover, return_exceptions=True)

    samples = asyncio.run(scenario())
    assert samples[("openrr_render_clients", label)] == 1
    assert samples[("openrr_render_frame_seconds_count", label)] >= 1
    assert samples[("openrr_render_frames_total", label)] >= 1
