"""Finding 10 on running render servers: rotating a key (or deleting the account) revoked no token, and a render
server accepted a token minted with the old key for its whole 24 h. Now the control plane pushes the account's
current key ids to its servers whenever they change, and a server closes the connections opened with tokens of
other keys and refuses new ones, within 5 s."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openrr.client.render_session import RenderSessionClient, SessionError
from openrr.protocol.render import CLOSE_UNAUTHORIZED
from tests.harness import Service, create_account, openrr, wait_for, wait_status

API = {"api-version": "2021-01-01"}
REVOKED_WITHIN_S = 5.0


@pytest.fixture
def tenant(service: Service) -> Iterator[dict[str, Any]]:
    """A Ready session of an account of its own (its key is rotated here), stopped afterwards."""
    account = create_account(service.data_dir)
    aid, key = account["accountId"], account["primaryKey"]
    sid = "revocation"
    with service.api(aid, key) as api:
        r = api.put(f"/accounts/{aid}/sessions/{sid}", params=API, json={"maxLeaseTimeMinutes": 10, "size": "Standard"})
        assert r.status_code == 201, r.text
        doc = wait_status(api, aid, sid, "Ready")
    try:
        yield {**doc, "accountId": aid, "key": key}
    finally:
        openrr("account", "delete", aid, data_dir=service.data_dir, check=False)


def _connect(service: Service, doc: dict[str, Any], token: str, role: str = "controller") -> Any:
    return RenderSessionClient.connect(doc["hostname"], doc["handshakePort"], token, role=role, ca=service.cert)


def test_rotating_a_key_closes_its_connections_and_refuses_its_tokens(service: Service, tenant: dict[str, Any]) -> None:
    """Before: after `openrr account rotate-key`, the connected client kept streaming and a new connection with the
    old key's token was welcomed."""
    aid = tenant["accountId"]
    old = service.token(aid, tenant["key"])

    async def scenario() -> None:
        client = await _connect(service, tenant, old)
        watcher = await _connect(service, tenant, old, role="watcher")
        assert client.ws.close_code is None
        rotated = await asyncio.to_thread(openrr, "account", "rotate-key", aid, "--key", "primary", "--json",
                                          data_dir=service.data_dir)  # fmt: skip
        started = time.monotonic()
        await asyncio.to_thread(
            wait_for,
            lambda: client.ws.close_code is not None and watcher.ws.close_code is not None,
            REVOKED_WITHIN_S,
            "the render server to close the connections of the revoked token",
        )
        assert client.ws.close_code == watcher.ws.close_code == CLOSE_UNAUTHORIZED
        with pytest.raises(SessionError) as refused:
            await _connect(service, tenant, old)
        assert refused.value.code == "Unauthorized"
        assert time.monotonic() - started < REVOKED_WITHIN_S
        await client.close()
        await watcher.close()
        # The new key's tokens work on the same server.
        new_key = json.loads(rotated.stdout)["primaryKey"]
        async with await _connect(service, tenant, service.token(aid, new_key)) as fresh:
            assert fresh.welcome["type"] == "welcome"

    asyncio.run(scenario())


def test_the_inspector_refuses_a_revoked_token(service: Service, tenant: dict[str, Any]) -> None:
    """The inspector's status checks the same key ids. Before: it needed no token at all."""
    aid = tenant["accountId"]
    old = service.token(aid, tenant["key"])
    status = f"https://{tenant['hostname']}:{tenant['arrInspectorPort']}/api/status"
    headers = {"Authorization": f"Bearer {old}"}
    assert httpx.get(status, headers=headers, verify=service.tls, timeout=5).status_code == 200
    openrr("account", "rotate-key", aid, "--key", "primary", data_dir=service.data_dir)
    wait_for(
        lambda: httpx.get(status, headers=headers, verify=service.tls, timeout=5).status_code == 401,
        REVOKED_WITHIN_S,
        "the inspector to refuse the rotated key's token",
    )
