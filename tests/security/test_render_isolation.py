"""Findings 6 (memory), 11 (the key handed to every render server), 12 and 13 for render servers: who they run as,
what they can reach, what they hold, how much memory they may use, and how long an idle connection may stay.

These run a service of their own whose data directory lies in a directory every user may traverse, so that only
openrr's own modes keep the child user out (pytest's temporary directories are root-only, which would hide a
regression)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from cryptography import x509

from openrr.client.render_session import RenderSessionClient, SessionError
from tests.harness import Service, create_account, free_port, ready_session, wait_for
from tests.models import write_models

NOBODY = 65534
LIMIT = "Max data size"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="render servers change user only when the service is root")


@pytest.fixture(scope="module")
def isolated() -> Iterator[Service]:
    top = Path(tempfile.mkdtemp(prefix="openrr-isolation-"))
    top.chmod(0o755)  # traversable by anyone: only the data directory's own modes may keep the child user out
    svc = Service(top / "data", free_port(), ["--warm-pool", "Standard=0", "--rate-limit-per-s", "0"]).start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def ready(isolated: Service) -> Iterator[dict[str, Any]]:
    with ready_session(isolated, "isolation") as doc:
        yield doc


def _render_process(server_pid: int) -> psutil.Process:
    def probe() -> psutil.Process | None:
        for child in psutil.Process(server_pid).children():
            if "openrr.render.frame_process" in child.cmdline():
                return child
        return None

    return wait_for(probe, 10, "the render server's render process")


def _as_nobody(cwd: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@AS_ROOT
def test_render_server_runs_as_the_child_user_without_the_control_secret(
    isolated: Service, ready: dict[str, Any]
) -> None:
    """Finding 12. Before: render servers ran as the service's user (root), with its whole environment, and the
    control secret in OPENRR_RENDER_CONTROL_SECRET, readable in /proc/<pid>/environ."""
    record = isolated.host_record(ready["id"])
    for proc in (psutil.Process(record["pid"]), _render_process(record["pid"])):
        assert proc.uids().real == proc.uids().effective == NOBODY, proc.cmdline()
        assert proc.gids().real == NOBODY and os.getgroups() is not None
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace")
        assert record["secret"] not in environ
        names = [entry.split("=", 1)[0] for entry in environ.split("\0") if entry]
        assert not [n for n in names if n.startswith("OPENRR_")], names
        assert "HOME" in names and "PATH" in names
    # The secret did reach the server (over stdin): the control plane's probe gets the identity document.
    r = httpx.get(
        f"https://127.0.0.1:{ready['handshakePort']}/health",
        headers={"x-openrr-control": record["secret"]},
        verify=isolated.tls,
    )
    assert r.json()["sessionId"] == ready["id"]


@AS_ROOT
def test_render_user_cannot_reach_the_data_directory(isolated: Service, ready: dict[str, Any]) -> None:
    """Finding 12 (and 1, 2, 3 from a render server). As the render server's user, from its own working directory:
    the database, the CA's and the STS's keys and another tenant's files are out of reach by every path. Before:
    the data directory was 0755 with 0644 files, and render servers ran as root anyway."""
    other = create_account(isolated.data_dir)
    secret = isolated.data_dir / "containers" / other["accountId"] / "inputs" / "secret.glb"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"glTF another tenant's model")
    record = isolated.host_record(ready["id"])
    home = Path(os.readlink(f"/proc/{record['pid']}/cwd"))
    assert home.is_relative_to(isolated.data_dir) and home.stat().st_uid == NOBODY
    assert (home.stat().st_mode & 0o777) == 0o700
    # What the server was handed is its own (so the refusals below are not a broken test user).
    assert _as_nobody(home, "cat", "tls-key.pem").returncode == 0
    rel = os.path.relpath(isolated.data_dir, home)
    targets = [
        isolated.data_dir / "openrr.db",
        isolated.data_dir / "tls" / "ca-key.pem",
        isolated.data_dir / "tls" / "server-key.pem",
        isolated.data_dir / "secrets.key",
        secret,
    ]
    for target in targets:
        assert target.exists(), target
        for spelling in (str(target), os.path.join(rel, os.path.relpath(target, isolated.data_dir))):
            done = _as_nobody(home, "cat", spelling)
            assert done.returncode != 0 and "Permission denied" in done.stderr, (spelling, done.stdout[:80])


@AS_ROOT
def test_render_servers_die_first_and_have_a_memory_limit(isolated: Service, ready: dict[str, Any]) -> None:
    """Finding 6. Before: render servers had no memory limit and the same OOM standing as the control plane."""
    record = isolated.host_record(ready["id"])
    assert isolated.proc is not None
    control = int(Path(f"/proc/{isolated.proc.pid}/oom_score_adj").read_text())
    for proc in (psutil.Process(record["pid"]), _render_process(record["pid"])):
        assert int(Path(f"/proc/{proc.pid}/oom_score_adj").read_text()) > control
        line = next(x for x in Path(f"/proc/{proc.pid}/limits").read_text().splitlines() if x.startswith(LIMIT))
        soft, hard = line[len(LIMIT) :].split()[:2]
        # render_memory_limit's Standard default, as RLIMIT_DATA (util/child_process.lower_standing says why)
        assert int(soft) == int(hard) == 8 * 1024**3


def test_render_server_has_its_own_leaf_certificate(isolated: Service, ready: dict[str, Any]) -> None:
    """Finding 11. Before: the control plane's certificate (CA:TRUE) and its private key were handed to every render
    server. Now each has a CA:FALSE leaf of its own, issued by the local CA the clients trust."""
    der = _peer_certificate(ready["handshakePort"], isolated.tls)
    leaf = x509.load_der_x509_certificate(der)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    control = x509.load_der_x509_certificate(_peer_certificate(isolated.port, isolated.tls))
    assert leaf.public_key() != control.public_key()
    record = isolated.host_record(ready["id"])
    home = Path(os.readlink(f"/proc/{record['pid']}/cwd"))
    assert not any(p.name in ("ca-key.pem", "server-key.pem") for p in home.iterdir())


def _peer_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_health_tells_strangers_nothing(isolated: Service, ready: dict[str, Any]) -> None:
    """Finding 5. Before: /health answered anyone with the account id, session id and pid."""
    url = f"https://127.0.0.1:{ready['handshakePort']}/health"
    for headers in ({}, {"x-openrr-control": "guess"}):
        r = httpx.get(url, headers=headers, verify=isolated.tls)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert "server" not in r.headers  # finding 16: no Server header on render servers either
        assert isolated.account_id not in r.text and ready["id"] not in r.text


def test_idle_connections_to_a_render_server_are_dropped(isolated: Service, ready: dict[str, Any]) -> None:
    """Finding 13. A TCP connection that never starts TLS is closed after the handshake timeout (10 s). Before:
    it stayed open forever."""
    with socket.create_connection(("127.0.0.1", ready["handshakePort"]), timeout=5) as idle:
        idle.settimeout(15)
        assert idle.recv(1) == b""  # the server closed it: EOF, not our timeout


def test_local_models_load_through_the_broker_only_from_the_account_area(
    isolated: Service, ready: dict[str, Any], tmp_path: Path
) -> None:
    """Finding 3 with render servers that cannot open files themselves: the control plane's file broker opens a
    path of the session account's area and hands the descriptor over; another account's file is refused with the
    same message as a missing one. Before: a render server opened any path with a model extension."""
    models = write_models(tmp_path / "models")
    mine = isolated.data_dir / "containers" / isolated.account_id / "models"
    mine.mkdir(parents=True, exist_ok=True)
    shutil.copy(models["sphere"], mine / "sphere.glb")
    theirs = isolated.data_dir / "containers" / "someone-else" / "sphere.glb"
    theirs.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(models["sphere"], theirs)

    async def scenario(doc: dict[str, Any]) -> None:
        client = await RenderSessionClient.connect(
            "127.0.0.1", doc["handshakePort"], isolated.token(), ca=isolated.cert
        )
        async with client:
            for spelling in ("models/sphere.glb", str(mine / "sphere.glb"), f"file://{mine / 'sphere.glb'}"):
                loaded = await client.load_model(spelling)
                assert loaded["triangles"] == 5120, spelling
            messages = []
            for spelling in (str(theirs), "../someone-else/sphere.glb", "models/missing.glb"):
                with pytest.raises(SessionError) as refused:
                    await client.load_model(spelling)
                assert refused.value.code == "ModelLoadFailed"
                messages.append(str(refused.value).replace(spelling, "<path>"))
            assert len(set(messages)) == 1, messages  # outside and missing read alike

    asyncio.run(scenario(ready))


@AS_ROOT
def test_children_are_not_started_when_the_child_user_cannot_run_openrr() -> None:
    """Finding 12: a root service whose Python the child user cannot reach (pyenv under /root) would start and then
    fail every session with a bare 'permission denied', or tempt an operator into running children as root. The
    backend and the conversion runner check at start and refuse, naming the path and --child-user. A directory of
    root's (0700) stands in for /root; the real installation passes the same check."""
    from openrr.util.child_process import ChildUserError, child_identity, require_reachable

    top = Path(tempfile.mkdtemp(prefix="openrr-reach-", dir="/tmp"))  # pytest's tmp_path is itself root-only
    try:
        os.chmod(top, 0o755)
        private = top / "private"
        private.mkdir(mode=0o700)
        (private / "python").write_text("")
        nobody = child_identity(None)
        assert nobody.uid == NOBODY
        with pytest.raises(ChildUserError) as e:
            require_reachable(nobody, "render servers", [private / "python"])
        assert f"cannot reach {private} " in str(e.value) and "--child-user" in str(e.value)
        os.chmod(private, 0o755)
        require_reachable(nobody, "render servers", [private / "python"])
    finally:
        shutil.rmtree(top, ignore_errors=True)
    require_reachable(nobody, "render servers")  # this installation (CI's venv: Debian's Python, not under /root)
