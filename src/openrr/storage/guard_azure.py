"""An azure-core transport whose every connection goes through the address guard (guard.py).

azure-storage-blob sends through requests and urllib3; its RedirectPolicy re-sends through the same transport, so
every hop is checked. The urllib3 connection classes resolve, check and connect to a checked address; TLS still
verifies the certificate against the host name of the URL.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from openrr.storage.guard import FetchPolicy, guarded_connect


class _GuardedConnect:
    """Mixed into urllib3's connection classes: `_new_conn` as urllib3 writes it, through guarded_connect."""

    policy: FetchPolicy = FetchPolicy()

    def _new_conn(self: Any) -> socket.socket:
        try:
            sock = guarded_connect(
                self._dns_host, self.port, self.policy, self.timeout, self.source_address, self.socket_options
            )
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except TimeoutError as e:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: FetchPolicy) -> None:
        # Classes of this policy's own: urllib3 builds connections from a class, not from an instance.
        http = type("GuardedHTTPConnection", (_GuardedConnect, HTTPConnection), {"policy": policy})
        https = type("GuardedHTTPSConnection", (_GuardedConnect, HTTPSConnection), {"policy": policy})
        self._pools = {
            "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
        # Retries and redirects are azure-core's (its policies), as in its own adapter.
        super().__init__(max_retries=Retry(total=False, redirect=False, raise_on_status=False))

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # A proxy would make the connection on our behalf, past the guard.
        raise requests.exceptions.InvalidProxyURL("proxies are not used for guarded fetches")


def guarded_transport(
    policy: FetchPolicy, connection_timeout: float = 10, read_timeout: float = 60
) -> RequestsTransport:
    """For `transport=` of azure-storage-blob clients."""
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    adapter = _GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return RequestsTransport(
        session=session,
        session_owner=True,
        use_env_settings=False,
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
    )
