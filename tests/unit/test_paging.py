"""List paging in process: skiptoken and @nextLink over a few rows and over more than two pages, in both API
generations, for sessions and conversions, and the official SDK walking the pages itself.

(Moved here from tests/test_api_v1.py, where it booted a whole service for five rows.)
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from azure.mixedreality.remoterendering import RemoteRenderingClient
from requests.structures import CaseInsensitiveDict
from urllib3.response import HTTPResponse

from tests.unit.asgi import BASE, PREVIEW, V21, InProcess, assert_error, in_process
from tests.unit.test_api_validation import CONVERSION

pytestmark = pytest.mark.anyio


async def _walk(api: httpx.AsyncClient, first: str, params: dict[str, str], key: str) -> list[list[dict[str, Any]]]:
    """Every page of a list, following @nextLink as given: absolute, on the public URL, with the api-version."""
    pages: list[list[dict[str, Any]]] = []
    r = await api.get(first, params=params)
    while True:
        assert r.status_code == 200, r.text
        doc = r.json()
        pages.append(doc[key])
        link = doc.get("@nextLink")
        if link is None:
            return pages
        url = httpx.URL(link)
        assert f"{url.scheme}://{url.host}" == BASE and url.path == first
        assert url.params.get("api-version") == params.get("api-version") and url.params["skiptoken"]
        assert len(pages) < 10, "paging does not end"
        r = await api.get(link)


@pytest.fixture
async def paged_by_2(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path / "data", list_page_size=2) as arr:
        yield arr


async def test_sessions_page_by_two_and_every_link_leads_on(paged_by_2: InProcess) -> None:
    arr = paged_by_2
    ids = [f"page-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    for sid in ids:
        r = await arr.api.put(f"{arr.sessions}/{sid}", params=V21, json={"maxLeaseTimeMinutes": 10, "size": "Standard"})
        assert r.status_code == 201, r.text
    for version in (V21, PREVIEW):
        pages = await _walk(arr.api, arr.sessions, version, "sessions")
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [s["id"] for p in pages for s in p] == ids  # each once, oldest first
        times = [s["creationTime"] for p in pages for s in p]
        assert times == sorted(times)
    # A skiptoken this service did not issue.
    assert_error(await arr.api.get(arr.sessions, params={**V21, "skiptoken": "bm90LWEtdG9rZW4"}), 400, "BadRequest")
    # v1 has no paging: one list holds them all.
    v1 = await arr.api.get(f"/v1{arr.sessions}")
    assert sorted(s["sessionId"] for s in v1.json()["sessions"]) == sorted(ids)
    # Stopped sessions leave the list.
    for sid in ids:
        assert (await arr.api.post(f"{arr.sessions}/{sid}/:stop", params=V21)).status_code == 204
    assert (await arr.api.get(arr.sessions, params=V21)).json() == {"sessions": []}


async def test_the_official_sdk_walks_the_pages_itself(paged_by_2: InProcess) -> None:
    arr = paged_by_2
    ids = {f"sdk-{i}" for i in range(5)}
    for sid in ids:
        r = await arr.api.put(f"{arr.sessions}/{sid}", params=V21, json={"maxLeaseTimeMinutes": 10, "size": "Standard"})
        assert r.status_code == 201, r.text
    token = arr.api.headers["Authorization"].removeprefix("Bearer ")
    session = requests.Session()
    adapter = _ToApp(arr.api)
    session.mount(BASE, adapter)
    client = RemoteRenderingClient(
        endpoint=BASE,
        account_id=arr.account_id,
        account_domain="localhost",
        # A token, not the key: the SDK's own STS client would not go through this transport.
        credential=AccessToken(token, int(dt.datetime.now(dt.UTC).timestamp()) + 3600),
        transport=RequestsTransport(session=session, session_owner=False),
    )
    # The SDK is synchronous: it runs in a worker thread, and its requests come back to this loop's client.
    listed = await anyio.to_thread.run_sync(lambda: [s.id for s in client.list_rendering_sessions()])
    assert sorted(listed) == sorted(ids) and len(listed) == len(ids)
    assert [("skiptoken=" in url) for url in adapter.sent] == [False, True, True]  # three pages, by their links


async def test_more_than_two_pages_of_sessions_and_conversions(tmp_path: Path) -> None:
    async with in_process(tmp_path / "data", capacity={"Standard": 130, "Premium": 1}) as arr:
        sessions = [f"s-{i:03}" for i in range(120)]
        conversions = [f"c-{i:03}" for i in range(120)]
        for sid in sessions:
            r = await arr.api.put(
                f"{arr.sessions}/{sid}", params=V21, json={"maxLeaseTimeMinutes": 5, "size": "Standard"}
            )
            assert r.status_code == 201, r.text
        for cid in conversions:
            assert (await arr.api.put(f"{arr.conversions}/{cid}", params=V21, json=CONVERSION)).status_code == 201
        pages = await _walk(arr.api, arr.sessions, V21, "sessions")
        assert [len(p) for p in pages] == [50, 50, 20]
        assert [s["id"] for p in pages for s in p] == sessions
        pages = await _walk(arr.api, arr.conversions, V21, "conversions")
        assert [len(p) for p in pages] == [50, 50, 20]
        assert [c["id"] for p in pages for c in p] == conversions
        # v1 conversions page too, by the same links.
        v1 = await _walk(arr.api, f"/v1{arr.conversions}", {}, "conversions")
        assert [c["conversionId"] for p in v1 for c in p] == conversions


class _ToApp(requests.adapters.BaseAdapter):
    """Hands the SDK's requests (made in a worker thread) to the in-process client on the test's event loop, so that
    the SDK runs unmodified without a socket."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        super().__init__()
        self.api = api
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        assert request.method is not None and request.url is not None
        self.sent.append(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body
        assert body is None or isinstance(body, bytes), "the SDK sends its bodies whole"
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        call = functools.partial(self.api.request, request.method, request.url, headers=headers, content=body)
        r = anyio.from_thread.run(call)
        response = requests.Response()
        response.status_code = r.status_code
        response.headers = CaseInsensitiveDict(r.headers)
        response.raw = HTTPResponse(
            body=io.BytesIO(r.content), headers=dict(r.headers), status=r.status_code, preload_content=False
        )
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass
