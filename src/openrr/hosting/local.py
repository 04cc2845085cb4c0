"""Render servers as local child processes, with a warm pool per size.

Every server has a host file (`DATA_DIR/hosts/<id>.host.json`: pid, start time, session) so that a restarted
control plane can find, adopt or clean up what an earlier one started, and a ports file written by the
server itself once it has bound its sockets.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from openrr.hosting.backend import HostGone, Placement, SessionKey
from openrr.hosting.file_broker import FileBroker, socket_pair
from openrr.hosting.health import fetch_health, keep_alive
from openrr.hosting.render_tls import RenderCertificates
from openrr.hosting.server_control import Pushed, ServerControl
from openrr.hosting.server_limits import ServerLimits
from openrr.render.control import (
    HEALTH_PATH,
    PORTS_FILE,
    AssignBody,
    RenderServerArgs,
    control_headers,
    exit_reason,
    new_secret,
    read_ports,
    send_secret,
    server_command,
)
from openrr.storage.session_access import GrantSource
from openrr.util.atomic import write_atomic
from openrr.util.child_process import (
    CHILD_OOM_SCORE_ADJ,
    ChildIdentity,
    child_identity,
    clean_env,
    give,
    popen_identity,
    prepare_home,
    require_reachable,
)

logger = logging.getLogger(__name__)
CHILD_HOME = Path("/proc/self/cwd")
"""A render server's HOME as it sees it: its working directory, which Popen enters before dropping privileges."""


@dataclass
class HostRecord:
    """What is persisted about one render server process."""

    host_id: str
    size: str
    pid: int
    create_time: float
    """psutil's process start time: tells our process apart from a later one that reuses the pid."""
    secret: str
    account_id: str | None = None
    session_id: str | None = None


@dataclass
class _Host:
    record: HostRecord
    popen: subprocess.Popen[bytes] | None = None
    """Set for servers this process started (so they can be reaped); None for adopted ones."""
    ports: tuple[int, int] | None = field(default=None)
    pushed: Pushed = field(default_factory=Pushed)
    """What this control plane last told the server (grants, key ids)."""
    broker: FileBroker | None = None
    """Opens the account's local files for the server (None for adopted servers: their broker socket is gone)."""


@dataclass(frozen=True)
class LocalBackendOptions:
    hosts_dir: Path
    logs_dir: Path
    bind_host: str
    public_hostname: str
    warm_pool: dict[str, int]
    certfile: Path | None
    keyfile: Path | None
    stop_grace_s: float = 5.0
    sts_public_key: Path | None = None
    limits: ServerLimits = field(default_factory=ServerLimits)
    storage_grants: GrantSource | None = None
    """Read tokens for the linked storage of a session's account, pushed to its server (storage/session_access.py)."""
    token_key_ids: Callable[[str], frozenset[str]] | None = None
    """The account's current key ids: tokens minted with any other key are refused by its servers (revocation)."""
    child_user: str | None = None
    """Who render servers run as when the control plane is root (util/child_process.py; default nobody)."""
    memory_limit: dict[str, int] = field(default_factory=dict)
    """Memory limit (bytes) of a render server and of its render process, per size; a size not named: none."""
    local_roots: tuple[Path, ...] = ()
    """Local storage roots: a server may open files of its session account's area under them (file broker)."""
    local_models: bool = True
    tls_dir: Path | None = None
    """The local CA's directory: every render server gets its own leaf from it (never the control plane's key)."""


class LocalBackend:
    shared = False
    """Render servers are this process's children: its warm pool and servers are its own, not any other replica's."""

    def __init__(self, options: LocalBackendOptions) -> None:
        self.opts = options
        options.hosts_dir.mkdir(parents=True, exist_ok=True)
        options.logs_dir.mkdir(parents=True, exist_ok=True)
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None
        self.identity: ChildIdentity = child_identity(options.child_user)
        require_reachable(self.identity, "render servers")
        scheme = "https" if options.certfile else "http"
        probe_host = "127.0.0.1" if options.bind_host in ("0.0.0.0", "") else options.bind_host
        probe_host = "[::1]" if probe_host == "::" else probe_host
        self._base = f"{scheme}://{probe_host}"
        self._certs = (
            RenderCertificates(options.tls_dir or options.certfile.parent, [options.public_hostname, options.bind_host])
            if options.certfile
            else None
        )
        self._verify: ssl.SSLContext | bool = self._certs.verify_context() if self._certs else False
        self._control = ServerControl(options.storage_grants, options.token_key_ids)
        self._recover()

    # --- HostingBackend ------------------------------------------------------------------------------

    def acquire(self, key: SessionKey, size: str) -> str:
        placed = self._placed_for(key)
        if placed is not None:
            # A pass that died between placing and recording (or a retried one): never a second server.
            return placed
        warm = self._take_warm(size)
        if warm is not None:
            try:
                self._assign(warm, key)
                logger.info("session %s gets warm render server %s", key.session_id, warm.record.host_id)
                return warm.record.host_id
            except (httpx.HTTPError, HostGone) as e:
                logger.warning("warm server %s could not be assigned (%s); starting one", warm.record.host_id, e)
                self.release(warm.record.host_id)
        host = self._spawn(size, key)
        return host.record.host_id

    async def probe(self, host_ref: str, key: SessionKey) -> Placement | None:
        host = self._host(host_ref)
        self._check_alive(host)
        ports = self._ports(host)
        if ports is None:
            return None
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self._verify)
        doc = await fetch_health(self._client, f"{self._base}:{ports[0]}{HEALTH_PATH}", host.record.secret)
        if doc is None:
            self._check_alive(host)
            return None
        serves = doc.identity
        if (serves.session_id, serves.account_id) != (key.session_id, key.account_id):
            raise HostGone(f"The process on port {ports[0]} answers for another session ({serves.session_id}).")
        # Grants and key ids before the first Placement (hosting/server_control.py).
        base, name = f"{self._base}:{ports[0]}", host.record.host_id
        if not await self._control.push(self._client, base, host.record.secret, host.pushed, key, name):
            return None
        return Placement(self.opts.public_hostname, ports[0], ports[1])

    def release(self, host_ref: str) -> None:
        with self._lock:
            host = self._hosts.pop(host_ref, None)
        if host is None:
            host = self._load(host_ref)
        if host is not None:
            self._terminate(host)
            if host.broker is not None:
                host.broker.close()
        for suffix in (".host.json", ".ports.json", ".ports.tmp"):
            (self.opts.hosts_dir / f"{host_ref}{suffix}").unlink(missing_ok=True)
        # rmtree works on descriptors (no symlink the server left is followed out of its home).
        shutil.rmtree(self._home(host_ref), ignore_errors=True)

    def warm_count(self, size: str) -> int:
        # Only servers that have bound their ports (a cached file read): one still starting would keep a fast
        # start waiting for seconds, to answer Starting all the same.
        with self._lock:
            warm = [h for h in self._hosts.values() if h.record.session_id is None and h.record.size == size]
        return sum(1 for h in warm if self._ports(h) is not None)

    def maintain(self) -> None:
        with self._lock:
            warm = [h for h in self._hosts.values() if h.record.session_id is None]
        live: list[tuple[str, str]] = []
        for host in warm:
            if not self._alive(host):
                logger.warning("warm render server %s died; replacing it", host.record.host_id)
                self.release(host.record.host_id)
            elif (ports := self._ports(host)) is not None:
                live.append((f"{self._base}:{ports[0]}{HEALTH_PATH}", host.record.secret))
        keep_alive(live, self._verify)
        for size, wanted in self.opts.warm_pool.items():
            with self._lock:
                have = sum(1 for h in self._hosts.values() if h.record.session_id is None and h.record.size == size)
            for _ in range(max(0, wanted - have)):
                self._spawn(size, None)

    def shutdown(self) -> None:
        with self._lock:
            refs = list(self._hosts)
        for ref in refs:
            self.release(ref)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def claimed_refs(self) -> dict[str, SessionKey]:
        # A warm server being handed over has session_id "" until its server took the assignment: not claimed yet.
        with self._lock:
            return {
                ref: SessionKey(h.record.account_id, h.record.session_id)
                for ref, h in self._hosts.items()
                if h.record.session_id and h.record.account_id
            }

    # --- internals -------------------------------------------------------------------------------------

    def _spawn(self, size: str, key: SessionKey | None) -> _Host:
        host_id = uuid.uuid4().hex[:16]
        secret = new_secret()
        # The server's home: owned by the child user, 0700, inside hosts_dir (which that user cannot traverse).
        # Popen enters it as root before switching user, so the server reaches it only as its working directory
        # (relative paths, /proc/self/cwd): nothing else under the data directory is reachable to it.
        home = prepare_home(self.identity, self._home(host_id))
        certfile = keyfile = None
        if self._certs is not None:
            chain, leaf_key = self._certs.issue()
            certfile, keyfile = self._hand(home, "tls-cert.pem", chain), self._hand(home, "tls-key.pem", leaf_key)
        sts_key = self.opts.sts_public_key
        sts_public_key = self._hand(home, "sts-public.pem", sts_key.read_bytes()) if sts_key else None
        ours, theirs = socket_pair()
        args = RenderServerArgs(
            host_id=host_id,
            ports_file=home / PORTS_FILE,
            size=size,
            bind=self.opts.bind_host,
            session_id=key.session_id if key else None,
            account_id=key.account_id if key else None,
            certfile=certfile,
            keyfile=keyfile,
            sts_public_key=sts_public_key,
            memory_limit=self.opts.memory_limit.get(size) or None,
            oom_score_adj=CHILD_OOM_SCORE_ADJ,
            files_fd=theirs.fileno(),
            **self.opts.limits.as_args(),
        )
        cmd = server_command(sys.executable) + args.to_argv()
        log = open(self.opts.logs_dir / f"render-{host_id}.log", "ab")  # noqa: SIM115 (the child owns it)
        try:
            # A session of its own: Ctrl-C in the control plane's terminal must not reach render servers
            # directly (the control plane stops them itself), and a killed control plane leaves them to adopt.
            # The control secret goes over stdin (render/control.py's send_secret).
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                env=clean_env(self.identity, CHILD_HOME),
                cwd=home,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
                **popen_identity(self.identity),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            log.close()
            theirs.close()
        assert popen.stdin is not None
        send_secret(popen.stdin, secret)
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = 0.0
        record = HostRecord(host_id, size, popen.pid, create_time, secret)
        broker = FileBroker(ours, self.opts.local_roots, self.opts.local_models, host_id)
        if key is not None:
            record.account_id, record.session_id = key.account_id, key.session_id
            broker.account_id = key.account_id
        host = _Host(record, popen, broker=broker)
        self._save(record)
        with self._lock:
            self._hosts[host_id] = host
        logger.info(
            "started render server %s (pid %d, %s, as %s)%s",
            host_id,
            popen.pid,
            size,
            self.identity.name,
            f" for session {key.session_id}" if key else " for the warm pool",
        )
        return host

    def _hand(self, home: Path, name: str, data: bytes) -> Path:
        """Write `data` (0600) into a server's home, made the child user's own; its path as the server sees it."""
        path = home / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        give(self.identity, path)
        return path

    def _placed_for(self, key: SessionKey) -> str | None:
        """The live server already given to `key`, if any."""
        with self._lock:
            for ref, host in self._hosts.items():
                r = host.record
                if (r.account_id, r.session_id) == (key.account_id, key.session_id) and self._alive(host):
                    return ref
        return None

    def _take_warm(self, size: str) -> _Host | None:
        with self._lock:
            for host in self._hosts.values():
                r = host.record
                if r.session_id is None and r.size == size and self._alive(host):
                    # Claim it before leaving the lock so no other session takes it.
                    r.session_id = ""
                    return host
        return None

    def _assign(self, host: _Host, key: SessionKey) -> None:
        deadline = time.monotonic() + 10
        ports = self._ports(host)
        while ports is None and time.monotonic() < deadline:
            self._check_alive(host)
            time.sleep(0.02)
            ports = self._ports(host)
        if ports is None:
            raise HostGone("the warm server never reported its ports")
        r = httpx.post(
            f"{self._base}:{ports[0]}{AssignBody.path}",
            json=AssignBody(key.session_id, key.account_id).to_json(),
            headers=control_headers(host.record.secret),
            verify=self._verify,
            timeout=5,
        )
        r.raise_for_status()
        host.record.account_id, host.record.session_id = key.account_id, key.session_id
        if host.broker is not None:
            host.broker.account_id = key.account_id
        self._save(host.record)

    def _ports(self, host: _Host) -> tuple[int, int] | None:
        if host.ports is None:
            found = read_ports(self._ports_path(host.record.host_id))
            if found is None:
                return None
            host.ports = (found.handshake_port, found.inspector_port)
        return host.ports

    def _alive(self, host: _Host) -> bool:
        if host.popen is not None:
            return host.popen.poll() is None
        try:
            proc = psutil.Process(host.record.pid)
            return proc.create_time() == host.record.create_time and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _check_alive(self, host: _Host) -> None:
        if self._alive(host):
            return
        rc = host.popen.returncode if host.popen is not None else None
        why = exit_reason(rc) if rc is not None else "is no longer running"
        raise HostGone(f"The render server (pid {host.record.pid}) {why}.")

    def _host(self, host_ref: str) -> _Host:
        with self._lock:
            host = self._hosts.get(host_ref)
        if host is None:
            host = self._load(host_ref)
            if host is None:
                raise HostGone(f"The render server {host_ref} is unknown on this machine.")
            with self._lock:
                self._hosts.setdefault(host_ref, host)
        return host

    def _terminate(self, host: _Host) -> None:
        if not self._alive(host):
            if host.popen is not None:
                host.popen.wait()
            return
        pid = host.record.pid
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not self._wait_gone(host, self.opts.stop_grace_s):
            logger.warning("render server %s ignored SIGTERM; killing it", host.record.host_id)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self._wait_gone(host, 5.0)
        logger.info("render server %s (pid %d) stopped", host.record.host_id, pid)

    def _wait_gone(self, host: _Host, timeout: float) -> bool:
        if host.popen is not None:
            try:
                host.popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(host):
                return True
            time.sleep(0.05)
        return False

    def _host_path(self, host_id: str) -> Path:
        return self.opts.hosts_dir / f"{host_id}.host.json"

    def _home(self, host_id: str) -> Path:
        return self.opts.hosts_dir / host_id

    def _ports_path(self, host_id: str) -> Path:
        return self._home(host_id) / PORTS_FILE

    def _save(self, record: HostRecord) -> None:
        # Not durable: after a reboot no server it names runs any more.
        write_atomic(self._host_path(record.host_id), json.dumps(asdict(record)).encode(), durable=False)

    def _load(self, host_id: str) -> _Host | None:
        try:
            doc: dict[str, Any] = json.loads(self._host_path(host_id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return _Host(HostRecord(**doc))

    def _recover(self) -> None:
        """Adopt servers of live sessions left by an earlier control plane; stop its warm servers."""
        for path in sorted(self.opts.hosts_dir.glob("*.host.json")):
            host_id = path.name.removesuffix(".host.json")
            host = self._load(host_id)
            if host is None:
                path.unlink(missing_ok=True)
                continue
            if host.record.session_id:
                with self._lock:
                    self._hosts[host_id] = host
                logger.info("found render server %s of session %s", host_id, host.record.session_id)
            else:
                logger.info("stopping leftover warm render server %s", host_id)
                self.release(host_id)
