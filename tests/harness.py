"""Runs a real `openrr serve` in a subprocess, on a real socket, with its own data directory.

Nothing here is mocked: tests talk HTTPS to the service, which starts real render-server processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

T = TypeVar("T")


BANNER_KEY = re.compile(
    r"^\s*account id\s+(?P<account>[0-9a-f-]{36})\s*\n\s*account key\s+(?P<key>[A-Za-z0-9+/]{43}=)\s*$", re.M
)
"""The account id and key lines of `openrr serve`'s banner, when it shows a key (first start only)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds (never a blind sleep)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def openrr(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openrr", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def create_account(data_dir: Path) -> dict[str, str]:
    out = openrr("account", "create", "--json", data_dir=data_dir)
    doc: dict[str, str] = json.loads(out.stdout)
    return doc


@dataclass
class Service:
    data_dir: Path
    port: int
    args: list[str]
    account_id: str = ""
    key: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "serve.log"

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert(self) -> str:
        return str(self.data_dir / "tls" / "cert.pem")

    @property
    def tls(self) -> ssl.SSLContext:
        """Trusts the service's self-signed certificate (and nothing else)."""
        return ssl.create_default_context(cafile=self.cert)

    def start(self) -> Service:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "openrr", "serve",
            "--data-dir", str(self.data_dir), "--port", str(self.port), *self.args,
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_for(self._answers, 30, f"openrr serve on {self.endpoint} (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise
        if not self.account_id:
            self.account_id, self.key = self.first_banner_account()
        return self

    def first_banner_account(self) -> tuple[str, str]:
        """The default account's id and key, as the first start's banner showed them (its only showing: the key
        is stored nowhere in plain text, and later starts print no key)."""
        found = BANNER_KEY.search(self.log())
        if found is None:
            raise AssertionError(f"no account key in any banner of {self.log_path}:\n{self.log()}")
        return found["account"], found["key"]

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"openrr serve exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(self.endpoint + "/", verify=self.tls, timeout=2).status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    # --- clients ---------------------------------------------------------------------------------

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.endpoint, verify=self.tls, timeout=30)

    def token(self, account_id: str | None = None, key: str | None = None) -> str:
        aid, k = account_id or self.account_id, key or self.key
        r = httpx.get(
            f"{self.endpoint}/accounts/{aid}/token",
            headers={"Authorization": f"Bearer {aid}:{k}"},
            verify=self.tls,
        )
        r.raise_for_status()
        token: str = r.json()["AccessToken"]
        return token

    def api(self, account_id: str | None = None, key: str | None = None) -> httpx.Client:
        """An HTTPS client authenticated with an STS token for the account."""
        return httpx.Client(
            base_url=self.endpoint,
            verify=self.tls,
            timeout=30,
            headers={"Authorization": f"Bearer {self.token(account_id, key)}"},
        )

    def sdk(self, account_id: str | None = None, key: str | None = None, **kwargs: Any) -> Any:
        """The official Azure SDK client, unmodified, pointed at this service."""
        from azure.core.credentials import AzureKeyCredential
        from azure.mixedreality.remoterendering import RemoteRenderingClient

        # The SDK's internal STS client ignores connection_verify; REQUESTS_CA_BUNDLE reaches both pipelines.
        os.environ["REQUESTS_CA_BUNDLE"] = self.cert
        return RemoteRenderingClient(
            endpoint=self.endpoint,
            account_id=account_id or self.account_id,
            account_domain="localhost",
            credential=AzureKeyCredential(key or self.key),
            authentication_endpoint_url=self.endpoint,
            polling_interval=kwargs.pop("polling_interval", 0.2),
            **kwargs,
        )

    def render_server_pids(self) -> list[int]:
        return render_server_pids(self.data_dir)

    def host_records(self) -> list[dict[str, Any]]:
        """The service's records of its render servers (DATA_DIR/hosts/*.host.json: pid, session, account)."""
        out = []
        for path in (self.data_dir / "hosts").glob("*.host.json"):
            try:
                out.append(json.loads(path.read_text()))
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # being replaced or removed right now
        return out

    def host_record(self, session_id: str, timeout: float = 10) -> dict[str, Any]:
        """The record of the render server given to `session_id` (a warm pool's servers have none)."""

        def probe() -> dict[str, Any] | None:
            return next((h for h in self.host_records() if h.get("session_id") == session_id), None)

        return wait_for(probe, timeout, f"the host record of session {session_id}")


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by its parent counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def render_server_pids(under: Path, kind: str = "render-server") -> list[int]:
    """Live render-server processes whose state files lie under `under` (zombies don't count). With
    kind="openrr.render.frame_process": their render processes, which name the state file in their arguments."""
    marker = str(under)
    pids = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if kind in cmd and any(marker in c for c in cmd) and p.info["status"] != "zombie":
            pids.append(p.info["pid"])
    return pids


def render_process_pids(under: Path) -> list[int]:
    return render_server_pids(under, "openrr.render.frame_process")


@contextmanager
def running_service(data_dir: Path, *args: str) -> Iterator[Service]:
    svc = Service(data_dir, free_port(), list(args)).start()
    try:
        yield svc
    finally:
        svc.stop()


def session_doc(api: httpx.Client, account_id: str, session_id: str) -> dict[str, Any]:
    r = api.get(f"/accounts/{account_id}/sessions/{session_id}", params={"api-version": "2021-01-01"})
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def wait_status(
    api: httpx.Client, account_id: str, session_id: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        doc = session_doc(api, account_id, session_id)
        return doc if doc["status"] == status else None

    return wait_for(probe, timeout, f"session {session_id} to be {status}", interval=0.1)


@contextmanager
def ready_session(svc: Service, prefix: str, size: str = "Standard") -> Iterator[dict[str, Any]]:
    """A new session of the service's default account, Ready; stopped afterwards whatever happened."""
    sid = f"{prefix}-{uuid.uuid4().hex[:10]}"
    params = {"api-version": "2021-01-01"}
    with svc.api() as api:
        r = api.put(
            f"/accounts/{svc.account_id}/sessions/{sid}", params=params, json={"maxLeaseTimeMinutes": 10, "size": size}
        )
        assert r.status_code == 201, r.text
        try:
            yield wait_status(api, svc.account_id, sid, "Ready")
        finally:
            api.post(f"/accounts/{svc.account_id}/sessions/{sid}/:stop", params=params)
