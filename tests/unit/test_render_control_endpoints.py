"""The render server's control endpoints, in process (ASGI transport; no GL context is started): the control
secret is required, a wrong body is a 400 that names the field, and a right one does what it says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from openrr.render.access import TokenGate
from openrr.render.control import CONTROL_HEADER, AssignBody, KeyIdsBody, StorageGrantsBody
from openrr.render.identity import ServerIdentity
from openrr.render.logbuffer import RingBufferHandler
from openrr.render.server import RenderServer
from openrr.render.session import SceneSession
from openrr.render.stream import StreamEndpoint

SECRET = "s3cret"
pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> RenderServer:
    identity = ServerIdentity(host_id="h", size="Standard")
    scene = SceneSession("Standard")
    gate = TokenGate(identity, None)
    return RenderServer(identity, SECRET, RingBufferHandler(), scene, StreamEndpoint(identity, scene, gate, 60.0))


@pytest.fixture
async def client(server: RenderServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://render") as c:
        yield c


async def _post(client: httpx.AsyncClient, path: str, body: Any, secret: str = SECRET) -> httpx.Response:
    return await client.post(path, json=body, headers={CONTROL_HEADER: secret})


async def test_control_requests_without_the_secret_are_refused(client: httpx.AsyncClient) -> None:
    r = await _post(client, AssignBody.path, AssignBody("s", "a").to_json(), secret="wrong")
    assert r.status_code == 403


async def test_a_wrong_body_is_a_400_naming_the_field(client: httpx.AsyncClient, server: RenderServer) -> None:
    r = await _post(client, AssignBody.path, {"sessionId": 3, "accountId": "a"})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "/control/assign: sessionId: expected a non-empty string, got 3"},
    )
    r = await client.post(AssignBody.path, content=b"{", headers={CONTROL_HEADER: SECRET})
    assert r.status_code == 400 and r.json()["error"].startswith("/control/assign: the body is not JSON")
    assert server.identity.session_id is None


async def test_assign_then_grants_and_key_ids_for_that_account(client: httpx.AsyncClient, server: RenderServer) -> None:
    r = await _post(client, AssignBody.path, AssignBody("s", "a").to_json())
    assert r.status_code == 200 and r.json()["sessionId"] == "s"
    r = await _post(client, AssignBody.path, AssignBody("other", "a").to_json())
    assert r.status_code == 409

    r = await _post(client, StorageGrantsBody.path, StorageGrantsBody("a", ({"sas": "x"},)).to_json())
    assert (r.status_code, r.json()) == (400, {"error": "/control/storage: grants[0].expiresOn: missing"})
    r = await _post(client, StorageGrantsBody.path, StorageGrantsBody("b", ()).to_json())
    assert r.status_code == 409
    r = await _post(client, StorageGrantsBody.path, StorageGrantsBody("a", ()).to_json())
    assert (r.status_code, r.json()) == (200, {"storageAccounts": []})

    r = await _post(client, KeyIdsBody.path, {"accountId": "a", "keyIds": ["k1", None]})
    assert (r.status_code, r.json()) == (400, {"error": "/control/tokens: keyIds[1]: expected a string, got null"})
    assert server.gate.key_ids is None
    r = await _post(client, KeyIdsBody.path, KeyIdsBody("a", ("k1", "k2")).to_json())
    assert r.status_code == 200 and server.gate.key_ids == frozenset({"k1", "k2"})
