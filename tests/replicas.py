"""Two `openrr serve` replicas on one database, as a round-robin load balancer sees them: started in turn (A makes
the shared CA and the default account, B finds both), each with its own data directory, sharing the database, the
local CA directory (--ca-dir) and the secrets key; and the official SDK with a transport that alternates its
requests between them. Used by tests/test_replicas.py (local backend) and tests/test_kubernetes_replicas.py."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.pipeline.transport import RequestsTransport
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from tests.harness import Service, free_port, render_server_pids

SDK_DEFAULT_POLLING_S = 5


@dataclass
class Replica(Service):
    """A Service whose certificate is the shared CA's (--ca-dir), not one of its data directory."""

    ca_dir: Path | None = None

    @property
    def cert(self) -> str:
        assert self.ca_dir is not None
        return str(self.ca_dir / "cert.pem")


class AlternatingTransport(RequestsTransport):  # type: ignore[misc]
    """Sends each SDK request to the next replica in turn, as a round-robin load balancer would."""

    def __init__(self, ports: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ports = itertools.cycle(ports)
        self._lock = threading.Lock()
        self.sent: list[tuple[str, int]] = []
        self.put_statuses: list[str] = []
        """The session status each PUT (create) answered."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        with self._lock:
            port = next(self._ports)
        url = httpx.URL(request.url)
        request.url = str(url.copy_with(port=port))
        self.sent.append((request.method, port))
        response = super().send(request, **kwargs)
        if request.method == "PUT":
            self.put_statuses.append(json.loads(response.text())["status"])
        return response


@dataclass
class Pair:
    a: Replica
    b: Replica
    url: str

    def rows(self) -> dict[str, dict[str, Any]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                found = conn.execute(text("SELECT * FROM sessions")).mappings().all()
        finally:
            engine.dispose()
        return {r["id"]: dict(r) for r in found}


@contextmanager
def replicas(base: Path, url: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    """Replica A then B (A makes the shared CA and the default account; B finds both)."""
    monkeypatch.setenv("OPENRR_SECRETS_KEY", Fernet.generate_key().decode())
    ca = base / "ca"
    common = ["--database-url", url, "--ca-dir", str(ca), "--rate-limit-per-s", "0", *args]
    a = Replica(base / "a", free_port(), [*common, "--replica-id", "replica-a"], ca_dir=ca)
    b = Replica(base / "b", free_port(), [*common, "--replica-id", "replica-b"], ca_dir=ca)
    started: list[Replica] = []
    try:
        a.start()
        started.append(a)
        b.account_id, b.key = a.account_id, a.key
        b.start()
        started.append(b)
        yield Pair(a, b, url)
    finally:
        for r in started:
            if r.proc is not None and r.proc.poll() is None:
                r.stop()
        for r in (a, b):
            assert not render_server_pids(r.data_dir), f"render servers left under {r.data_dir}"


def alternating_sdk(pair: Pair) -> tuple[Any, AlternatingTransport]:
    transport = AlternatingTransport([pair.a.port, pair.b.port])
    # Default polling: the fast start is what makes a warm create return at once.
    return pair.a.sdk(polling_interval=SDK_DEFAULT_POLLING_S, transport=transport), transport


def sdk_get_update_list_stop(client: Any, session: Any) -> None:
    """The rest of the official SDK's lifecycle of a Ready `session`: get it, extend its lease, find it in the list,
    stop it (then it reads Stopped)."""
    from azure.mixedreality.remoterendering import RenderingSessionStatus

    sid = session.id
    got = client.get_rendering_session(session_id=sid)
    assert got.status == RenderingSessionStatus.READY and got.handshake_port == session.handshake_port
    assert client.update_rendering_session(session_id=sid, lease_time_minutes=30).lease_time_minutes == 30
    assert client.get_rendering_session(session_id=sid).lease_time_minutes == 30
    assert sid in {s.id for s in client.list_rendering_sessions()}
    client.stop_rendering_session(session_id=sid)
    assert client.get_rendering_session(session_id=sid).status == RenderingSessionStatus.STOPPED
