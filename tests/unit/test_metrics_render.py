"""The render server's /metrics on its inspector port, in process (ASGI transport; no GL context is started, so
frames are handed to the scene's send path by the test, as the frame process would): clients, frames and their
times are counted for the session the server serves, named by a hash of its id."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from openrr.render.access import TokenGate
from openrr.render.control import CONTROL_HEADER, AssignBody
from openrr.render.frame_process import RenderedFrame
from openrr.render.identity import ServerIdentity
from openrr.render.logbuffer import RingBufferHandler
from openrr.render.server import RenderServer
from openrr.render.session import Client, SceneSession
from openrr.render.stream import StreamEndpoint
from tests.unit.test_metrics import Samples, parse

pytestmark = pytest.mark.anyio
SECRET = "s3cret"
INSPECTOR = 8081
SESSION = "metrics-session"
LABEL = hashlib.sha1(SESSION.encode()).hexdigest()


@pytest.fixture
def server() -> RenderServer:
    identity = ServerIdentity(host_id="h", size="Standard")
    scene = SceneSession("Standard")
    server = RenderServer(
        identity, SECRET, RingBufferHandler(), scene, StreamEndpoint(identity, scene, TokenGate(identity, None), 60.0)
    )
    server.inspector_port = INSPECTOR  # requests arriving on it go to the inspector app
    return server


@pytest.fixture
async def client(server: RenderServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url=f"http://render:{INSPECTOR}") as c:
        yield c


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert SESSION not in r.text  # only its hash
    return parse(r.text)


def send_frame(scene: SceneSession, frame_no: int, took_s: float) -> None:
    """What the scene does with each frame the render process made (no codec in use: nothing to encode)."""
    started = time.perf_counter() - took_s
    frame = RenderedFrame(frame_no, 0, started, 1.0, 0, 0, 1280, 720)
    scene._send_frame(frame, list(scene.clients), {}, None, 0.0)


async def test_metrics_name_the_session_and_count_clients_and_frames(
    server: RenderServer, client: httpx.AsyncClient
) -> None:
    idle = await scrape(client)
    assert idle[("openrr_render_clients", frozenset({("session", "")}))] == 0  # a warm server: no session yet
    handshake = f"http://render:{INSPECTOR + 1}{AssignBody.path}"
    r = await client.post(handshake, json=AssignBody(SESSION, "acct").to_json(), headers={CONTROL_HEADER: SECRET})
    assert r.status_code == 200, r.text

    async def drop(_data: bytes) -> None:
        pass

    server.scene.attach(Client("watcher", drop))
    server.scene.attach(Client("watcher", drop))
    for n in range(10):
        send_frame(server.scene, n, took_s=0.02)
    samples = await scrape(client)
    session = frozenset({("session", LABEL)})
    assert samples[("openrr_render_clients", session)] == 2
    assert samples[("openrr_render_frames_total", session)] == 10
    assert samples[("openrr_render_frame_seconds_count", session)] == 10
    # Each frame took 20 ms from render start to sent (plus the microseconds of the call).
    assert 10 * 0.02 <= samples[("openrr_render_frame_seconds_sum", session)] < 10 * 0.02 + 0.5
    assert samples[("openrr_render_frame_seconds_bucket", session | {("le", "0.01")})] == 0
    assert samples[("openrr_render_frame_seconds_bucket", session | {("le", "0.025")})] == 10
    # Ten frames sent back to back: a rate well above 0 (its value is how fast this loop ran).
    assert samples[("openrr_render_fps", session)] > 0


async def test_an_idle_session_renders_at_zero_fps(server: RenderServer, client: httpx.AsyncClient) -> None:
    server.scene.stats.frame_times.extend([time.perf_counter() - 10.0, time.perf_counter() - 9.9])
    samples = await scrape(client)
    assert samples[("openrr_render_fps", frozenset({("session", "")}))] == 0.0
