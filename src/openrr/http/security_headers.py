"""Headers that confine the browser viewer's page: what it may load and connect to, and who may frame it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def viewer_csp(render_hostname: str) -> str:
    """The viewer's Content-Security-Policy.

    Scripts, styles and the API come from this origin only; the one other place the page talks to is the render
    servers, by WebSocket (wss) on their handshake ports, all on the configured render host name. A WebRTC
    picture arrives as a MediaStream (srcObject), which CSP does not govern; the favicon is a `data:` URL.
    `form-action 'none'`: the forms are handled by script; if the script did not run, a native submit would put
    the typed key into a URL, which this refuses.
    """
    # CSP host sources cannot spell IPv6 literals: fall back to any wss endpoint there.
    render = "wss:" if ":" in render_hostname else f"wss://{render_hostname}:*"
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {render}",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """Adds fixed headers to the responses of the wrapped app under `prefix` (replacing any of the same name)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str], prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.names = {k for k, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        under = not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")
        if scope["type"] != "http" or not under:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", []) if h[0].lower() not in self.names]
                message["headers"] = kept + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def viewer_headers(app: ASGIApp, render_hostname: str, prefix: str = "/viewer") -> SecurityHeaders:
    """Responses under `prefix` (the viewer's files, and the router's redirect of the bare prefix) with CSP and
    no Referer. X-Content-Type-Options: nosniff comes from ArrHeadersMiddleware, on every response."""
    return SecurityHeaders(
        app,
        {"Content-Security-Policy": viewer_csp(render_hostname), "Referrer-Policy": "no-referrer"},
        prefix,
    )
