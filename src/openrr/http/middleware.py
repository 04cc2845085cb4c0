"""One ASGI middleware for what every API response shares: canonical paths, ARR's headers, throttling.

Written as raw ASGI rather than Starlette's BaseHTTPMiddleware because it sits on every request and the
latter costs a task and a stream copy per call.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from openrr.http.correlation import new_cv
from openrr.http.validation import ids_with_encoded_slash

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SUPPORTED_API_VERSIONS = ("2021-01-01-preview", "2021-01-01")
UNROUTABLE = "/:encoded-slash-in-an-id"
"""Where a request goes whose id holds an encoded '/': a path no operation matches."""
_TOP = {"accounts", "v1"}
_RESOURCES = {"token", "sessions", "conversions"}
_V1_ACTIONS = {"create", "createwithsharedaccesssignature", "properties"}


def canonical_path(path: str) -> str:
    """Lower-case the literal segments of API paths and drop trailing slashes (old scripts sent them).

    Ids stay as given: session and conversion ids are case-sensitive.
    """
    segs = path.split("/")
    if len(segs) < 2 or segs[1].lower() not in _TOP:
        return path  # not an API path: static files (the viewer) keep their slashes
    path = path.rstrip("/")
    segs = path.split("/")
    segs[1] = segs[1].lower()
    if segs[1] == "v1":
        if len(segs) > 2 and segs[2].lower() == "accounts":
            segs[2] = "accounts"
        for i in range(4, len(segs)):
            low = segs[i].lower()
            if (i == 4 and low in _RESOURCES) or (i >= 5 and low in _V1_ACTIONS):
                segs[i] = low
    else:
        if len(segs) > 3 and segs[3].lower() in _RESOURCES:
            segs[3] = segs[3].lower()
        if len(segs) > 5 and segs[5].lower() in (":stop", ":cancel"):
            segs[5] = segs[5].lower()
    return "/".join(segs)


def account_of(path: str) -> str | None:
    segs = path.split("/")
    if len(segs) > 2 and segs[1] == "accounts":
        return segs[2].lower()
    if len(segs) > 3 and segs[1] == "v1" and segs[2] == "accounts":
        return segs[3].lower()
    return None


class TokenBucketLimiter:
    """Per-key token buckets; `acquire` returns 0 when allowed, else seconds until a request would be."""

    MAX_KEYS = 50_000

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: tuple[str, str]) -> float:
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= self.MAX_KEYS:
                self._prune(now)
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely carries no information: forget it.
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= self.MAX_KEYS:
            self._buckets.clear()


class ArrHeadersMiddleware:
    def __init__(self, app: ASGIApp, limiter: TokenBucketLimiter | None) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = canonical_path(scope["path"])
        if path != scope["path"]:
            scope = dict(scope)
            scope["path"] = path
            # The raw path keeps its percent-encoding: an id's encoded '/' must stay visible (app.py's 404s).
            raw = scope.get("raw_path")
            scope["raw_path"] = canonical_path(raw.decode("latin-1")).encode("latin-1") if raw else path.encode()
        account = account_of(path)
        raw = scope.get("raw_path")
        if raw and b"%" in raw and ids_with_encoded_slash(raw.decode("latin-1")) is not None:
            # Decoded, `sessions/a%2Fb` routes as `sessions/a/b`, or `sessions/%2F` as the list: route it nowhere,
            # so that the app's 404 handler answers with the id's 400 (it reads the ids from the raw path).
            scope = {**scope, "path": UNROUTABLE}
        is_api = account is not None
        is_sts = is_api and path.endswith("/token") and path.count("/") == 3
        extra: list[tuple[bytes, bytes]] = [
            (b"ms-cv", new_cv().encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        if is_api and not is_sts:
            extra.append((b"api-supported-versions", ", ".join(SUPPORTED_API_VERSIONS).encode()))
        if is_api and scope["method"] == "GET":
            extra += [(b"cache-control", b"no-store,no-cache"), (b"pragma", b"no-cache")]

        if account is not None and self.limiter is not None:
            # Keyed by account *and* client address: requests are counted before authentication, so a
            # client must not be able to use up another client's allowance for an account.
            client = scope.get("client") or ("", 0)
            wait = self.limiter.acquire((account, str(client[0])))
            if wait > 0:
                await _send_throttled(send, extra, wait, is_sts)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"ms-cv"]
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send_throttled(send: Send, extra: list[tuple[bytes, bytes]], wait: float, is_sts: bool) -> None:
    retry_after = max(1, math.ceil(wait))
    body = json.dumps(
        {
            "error": {
                "code": "TooManyRequests",
                "message": f"Too many requests for this account; retry after {retry_after} seconds.",
            }
        }
    ).encode()
    headers = [
        *extra,
        (b"retry-after", str(retry_after).encode()),
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if is_sts:
        headers.append((b"www-authenticate", b"Invalid request: too many requests"))
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
