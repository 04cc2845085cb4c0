"""A uvicorn server that drops connections which never get to a request.

uvicorn bounds a kept-alive connection between requests (`timeout_keep_alive`) but not the time before the
first one: asyncio gives a TLS handshake 60 s, and a connection that completes TLS (or plain TCP) and then
sends nothing, or sends request headers a byte at a time, is kept until the client goes. Each such
connection holds a file descriptor and counts against `limit_concurrency`, so a few hundred idle sockets
would shut every real client out.

`GuardedServer` creates its listeners itself (uvicorn's `startup` has no parameter for this) with
- `ssl_handshake_timeout`: a connection that has not completed TLS within the limit is aborted, including
  a TCP connection that never sends a ClientHello;
- a timer per connection, started once the transport is up (after TLS): if no complete request head has
  arrived when it fires, the connection is closed.
Used by the control plane and by render servers alike.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

import uvicorn

logger = logging.getLogger(__name__)
STARTUP_FAILURE = 3  # uvicorn's exit status when the lifespan startup fails (uvicorn.server does not export it)


def _has_request(protocol: Any, transport: asyncio.BaseTransport) -> bool:
    """Whether the connection got past its first request head (or was upgraded to a WebSocket)."""
    # uvicorn's HTTP protocols (h11 and httptools) set `cycle` when a request head is complete; an upgrade
    # swaps the transport's protocol for the WebSocket one.
    return getattr(protocol, "cycle", None) is not None or transport.get_protocol() is not protocol


class _FirstRequestTimer:
    """Wraps a protocol's connection_made to close the connection if no request arrives in time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s

    def watch(self, protocol: asyncio.Protocol) -> asyncio.Protocol:
        made = protocol.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            made(transport)
            self.loop.call_later(self.timeout_s, self._expire, protocol, transport)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    @staticmethod
    def _expire(protocol: asyncio.Protocol, transport: asyncio.BaseTransport) -> None:
        if transport.is_closing() or _has_request(protocol, transport):
            return
        # abort, not close: close would wait to flush to a peer that may never read.
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


class GuardedServer(uvicorn.Server):
    """uvicorn.Server whose connections must complete TLS, then send a request head, each within `first_request_s`."""

    def __init__(self, config: uvicorn.Config, first_request_s: float) -> None:
        super().__init__(config)
        self.first_request_s = first_request_s

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config = self.config
        loop = asyncio.get_running_loop()
        timer = _FirstRequestTimer(loop, self.first_request_s)

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
            )
            return timer.watch(protocol)

        if sockets is None:
            sockets = [config.bind_socket()]
        tls: dict[str, Any] = {"ssl": config.ssl}
        if config.ssl is not None:
            tls["ssl_handshake_timeout"] = self.first_request_s
        self.servers = [
            await loop.create_server(create_protocol, sock=sock, backlog=config.backlog, **tls) for sock in sockets
        ]
        self.started = True


def guarded_config(app: Any, *, keep_alive_s: float, max_connections: int | None, **kwargs: Any) -> uvicorn.Config:
    """uvicorn.Config with openrr's connection limits and no `Server` header (it names the software)."""
    return uvicorn.Config(
        app,
        timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]  # call_later takes any number of seconds
        limit_concurrency=max_connections,
        server_header=False,
        **kwargs,
    )
