"""Counts API requests by route template, method and status, as raw ASGI (like http/middleware.py: it sits on
every request).

Two parts, because no single place knows both: the route is chosen deep inside the app (Starlette's router puts it
in the scope it routes), while throttled requests are answered before routing, by the middleware outside. The outer
part (`RequestCounter`) wraps everything and reads the status from the response; it leaves a slot in the scope,
which the inner part (`RouteTemplate`, wrapping the FastAPI app itself) fills with the matched route's template.
The slot survives the copies of the scope that middleware in between makes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import Counter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SLOT = "openrr.metrics.route"
NO_ROUTE = "(none)"
"""The route label of a request that matched no route (404) or was answered before routing (429)."""
METRICS_PATH = "/metrics"
METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other is "other", so that made-up methods cannot multiply the series."""


class RouteTemplate:
    """Innermost: after the app has handled a request, writes the template of the route it matched (e.g.
    `/accounts/{account_id}/sessions/{session_id}`, never the ids themselves) into the outer part's slot."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            slot: list[str] | None = scope.get(SLOT)
            if slot is not None:
                slot[0] = _template(scope)


def _template(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", NO_ROUTE))
    # FastAPI's router names no route for a Mount, whose match sets the root path to its prefix (`/viewer`): one
    # series for every file under it.
    return str(scope.get("root_path") or NO_ROUTE)


class RequestCounter:
    """Outermost: counts each HTTP request once its response has started (500 if the app failed before that)."""

    def __init__(self, app: ASGIApp, requests: Counter) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = [NO_ROUTE]
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app({**scope, SLOT: slot}, receive, send_and_note)
        finally:
            if slot[0] != METRICS_PATH:  # the scrapes themselves are not the API's traffic
                method = scope["method"] if scope["method"] in METHODS else "other"
                self.requests.labels(slot[0], method, str(status[0])).inc()
