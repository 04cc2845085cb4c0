"""httpx clients whose every connection, redirect hops included, goes through the address guard (guard.py)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from openrr.storage.guard import FetchPolicy, guarded_connect

MAX_REDIRECTS = 5


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only where the policy allows (resolved once, checked, then used)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # A refusal (FetchRefused) is raised as it is, outside httpcore's exception mapping, so that callers can
        # tell it from a failed connection.
        source = None if local_address is None else (local_address, 0)
        try:
            sock = guarded_connect(host, port, self.policy, timeout, source, list(socket_options or ()))
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(str(e)) from e
        except OSError as e:
            raise httpcore.ConnectError(str(e) or type(e).__name__) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SyncStream(sock)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched from")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with a connection pool on the guarded backend; no proxies (they would connect for us)."""

    def __init__(self, policy: FetchPolicy, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            network_backend=GuardedBackend(policy),
        )


def guarded_client(policy: FetchPolicy, timeout: httpx.Timeout, headers: dict[str, str] | None = None) -> httpx.Client:
    """A client that follows at most MAX_REDIRECTS redirects, each to http(s) only (httpx refuses other schemes)
    and each connected through the guard."""
    return httpx.Client(
        transport=GuardedTransport(policy),
        timeout=timeout,
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
        headers=headers,
    )
