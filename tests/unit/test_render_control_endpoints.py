"""The render server's control endpoints, in process (ASGI transport; no GL context is started): the control
secret is required, a wrong body is a 400 that names the field, and a right one does what it says."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openrr.render.access import TokenGate
from openrr.render.control import (
    CONTROL_HEADER,
    EXIT_PORT_IN_USE,
    AssignBody,
    KeyIdsBody,
    RenderServerArgs,
    StorageGrantsBody,
    server_command,
)
from openrr.render.identity import ServerIdentity
from openrr.render.logbuffer import RingBufferHandler
from openrr.render.ports import bind_in_range
from openrr.render.server import RenderServer, _listen
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


def test_pod_mode_binds_exactly_the_ports_given_and_fails_clearly_when_one_is_taken(tmp_path: Path) -> None:
    """`--handshake-port/--inspector-port` (the pod's hostPorts): bound as given, or the server exits with
    EXIT_PORT_IN_USE naming the address (before any GL context starts), which the backend reports."""
    taken = bind_in_range("127.0.0.1")
    try:
        port = taken.getsockname()[1]
        args = RenderServerArgs(
            host_id="h",
            ports_file=tmp_path / "ports.json",
            handshake_port=port,
            inspector_port=port + 1,
        )
        with pytest.raises(OSError):
            _listen(args)
        free = bind_in_range("127.0.0.1")
        p = free.getsockname()[1]
        free.close()
        handshake, inspector = _listen(dataclasses.replace(args, handshake_port=p, inspector_port=p + 1))
        assert (handshake.getsockname()[1], inspector.getsockname()[1]) == (p, p + 1)
        handshake.close()
        inspector.close()
        secret = tmp_path / "control-secret"
        secret.write_text("s3cret\n")
        argv = dataclasses.replace(args, secret_file=secret).to_argv()
        done = subprocess.run(
            server_command(sys.executable) + argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        assert done.returncode == EXIT_PORT_IN_USE, done.stderr
        assert "cannot listen on 127.0.0.1: " in done.stderr
    finally:
        taken.close()
