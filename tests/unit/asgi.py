"""The control plane's API in process: the real app and services on a fresh data directory, reached through
httpx's ASGI transport. No port, no TLS, no render server: the reconciler is not started (`manage_lifecycle=False`),
so sessions stay Starting and nothing renders, and no conversion worker runs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from openrr.app import build_app
from openrr.config import Settings
from openrr.services import Services, build_services

BASE = "https://arr.test"
"""The service's public URL: links in responses are built on it, and the client follows them as they are."""
V21 = {"api-version": "2021-01-01"}
PREVIEW = {"api-version": "2021-01-01-preview"}
GOOD = {"maxLeaseTimeMinutes": 30, "size": "Standard"}
MS_CV = re.compile(r"[A-Za-z0-9+/]{22}\.0")


@dataclass
class InProcess:
    services: Services
    app: Any
    """The ASGI app, for clients of its own (the SDK's, through Starlette's TestClient)."""
    api: httpx.AsyncClient
    """Authenticated with an STS token of `account_id`."""
    account_id: str
    key: str

    @property
    def sessions(self) -> str:
        return f"/accounts/{self.account_id}/sessions"

    @property
    def conversions(self) -> str:
        return f"/accounts/{self.account_id}/conversions"

    async def token(self, account_id: str, key: str) -> str:
        r = await self.api.get(f"/accounts/{account_id}/token", headers={"Authorization": f"Bearer {account_id}:{key}"})
        assert r.status_code == 200, r.text
        token: str = r.json()["AccessToken"]
        return token

    async def live_ids(self) -> set[str]:
        r = await self.api.get(self.sessions, params=V21)
        assert r.status_code == 200, r.text
        return {s["id"] for s in r.json()["sessions"]}


@asynccontextmanager
async def in_process(data_dir: Path, **settings: Any) -> AsyncIterator[InProcess]:
    """The service on `data_dir` with one account; `settings` override the defaults (e.g. list_page_size)."""
    defaults: dict[str, Any] = {
        "tls": False,
        "public_url": BASE,
        "warm_pool": {"Standard": 0, "Premium": 0},
        "capacity": {"Standard": 8, "Premium": 2},
        "conversion_workers": 0,
        "rate_limit_per_s": 0,
    }
    services = build_services(Settings(data_dir=data_dir, **{**defaults, **settings}))
    app = build_app(services, manage_lifecycle=False)
    created = services.accounts.create()
    aid, key = created.account.account_id, created.primary_key
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        arr = InProcess(services, app, client, aid, key)
        client.headers["Authorization"] = f"Bearer {await arr.token(aid, key)}"
        yield arr
    services.db.engine.dispose()


def assert_error(
    r: httpx.Response, status: int, code: str, message: str | None = None, target: str | None = None
) -> dict[str, Any]:
    """ARR's error body `{"error": {"code", "message"}}` (plus an optional target), as JSON in UTF-8, with ARR's
    correlation vector and nosniff header."""
    assert r.status_code == status, (r.status_code, r.text)
    assert MS_CV.fullmatch(r.headers.get("ms-cv", "")), r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert list(body) == ["error"], body
    err: dict[str, Any] = body["error"]
    assert set(err) <= {"code", "message", "target", "details", "innerError"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    if message is not None:
        assert err["message"] == message
    if target is not None:
        assert err.get("target") == target, err
    return err
