"""Finding 12: conversion workers ran as the service's user (root here), with its whole environment and read access
to the whole data directory.

Now a root service runs each worker as the child user (nobody by default), with a cleaned environment, in a work
directory of its own that it names /proc/self/cwd, and its job on stdin. file:// containers are read and written
by the control plane, so one account's local conversion still works end to end.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import trimesh
from cryptography.fernet import Fernet

from tests.conversions import API, wait_conversion
from tests.harness import Service, free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workers change user only when the service runs as root")
WORKER = "openrr.conversions.worker"


@dataclass(frozen=True)
class Seen:
    """A live worker, as root sees it through /proc."""

    pid: int
    uids: tuple[int, ...]
    gids: tuple[int, ...]
    groups: list[int]
    environ: dict[str, str]
    cmdline: list[str]
    cwd: str
    fds: list[str]


def _look(job: str) -> Seen | None:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if WORKER not in cmd or job not in cmd:
            continue
        try:
            with p.oneshot():
                status = Path(f"/proc/{p.pid}/status").read_text()
                groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
                fd_dir = Path(f"/proc/{p.pid}/fd")
                return Seen(
                    p.pid,
                    tuple(p.uids()),
                    tuple(p.gids()),
                    [int(g) for g in groups.split()[1:]],
                    p.environ(),
                    p.cmdline(),
                    p.cwd(),
                    [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)],
                )
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            return None
    return None


_PROBE = """
import os, sys
try:
    os.listdir(sys.argv[1]); print("LISTED")
except PermissionError:
    print("DENIED")
for path in sys.argv[2:]:
    try:
        open(path, "rb").close(); print("READ")
    except PermissionError:
        print("DENIED")
    except OSError as e:
        print(type(e).__name__)
"""


def _as(uid: int, gid: int, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Python code run as the worker's user, with no supplementary groups (as the runner starts workers)."""
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *args],
        user=uid,
        group=gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def isolated(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Service, str, str]]:
    """A root service whose own environment holds secrets: the secrets key and a cloud credential."""
    secrets_key = Fernet.generate_key().decode()
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENRR_SECRETS_KEY", secrets_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    svc = Service(
        base_dir / f"worker-isolation-{uuid.uuid4().hex[:6]}",
        free_port(),
        ["--conversion-workers", "1", "--warm-pool", "Standard=0", "--rate-limit-per-s", "0"],
    ).start()
    try:
        yield svc, secrets_key, canary
    finally:
        svc.stop()


def test_worker_runs_as_nobody_without_secrets_and_a_local_conversion_still_succeeds(
    isolated: tuple[Service, str, str],
) -> None:
    """Finding 12. Before the fix the worker's uid was 0, its /proc/<pid>/environ held OPENRR_SECRETS_KEY and every
    other variable of the service, and it could read openrr.db (and every account's files) by path."""
    svc, secrets_key, canary = isolated
    nobody = pwd.getpwnam("nobody")
    area = svc.data_dir / "containers" / svc.account_id
    inp, out = area / "in", area / "out"
    inp.mkdir(parents=True)
    out.mkdir(parents=True)
    # ~330k triangles: the worker converts for seconds, long enough to be looked at while it runs.
    trimesh.creation.icosphere(subdivisions=7).export(inp / "big.glb")
    cid = f"iso-{uuid.uuid4().hex[:6]}"
    request = {
        "settings": {
            "inputLocation": {"storageContainerUri": inp.as_uri(), "relativeInputAssetPath": "big.glb"},
            "outputLocation": {"storageContainerUri": out.as_uri(), "blobPrefix": cid},
        }
    }
    with svc.api() as api:
        r = api.put(f"/accounts/{svc.account_id}/conversions/{cid}", params=API, json=request)
        assert r.status_code == 201, r.text
        seen = wait_for(lambda: _look(f"{svc.account_id}/{cid}"), 60, "the conversion's worker", interval=0.01)
        work_dir = seen.cwd

        # Who it runs as: nobody, with nobody's group and no supplementary group.
        assert set(seen.uids) == {nobody.pw_uid}, seen
        assert set(seen.gids) == {nobody.pw_gid} and seen.groups == [], seen
        # What it was handed: no setting, no secret, nothing of the service's environment; the job is on stdin.
        assert not [k for k in seen.environ if k.startswith("OPENRR_")], seen.environ
        assert "AWS_SECRET_ACCESS_KEY" not in seen.environ
        for secret in (secrets_key, canary, svc.key):
            assert not any(secret in v for v in seen.environ.values())
            assert not any(secret in a for a in seen.cmdline)
        assert seen.cmdline[1:] == ["-I", "-m", WORKER, "--job", f"{svc.account_id}/{cid}"]
        assert seen.environ["HOME"] == "/proc/self/cwd"
        # Its work directory is its own (0700), under the conversions' work root ...
        assert Path(work_dir).parent == svc.data_dir / "conversions" / "work"
        st = os.stat(work_dir)
        assert (st.st_uid, st.st_mode & 0o777) == (nobody.pw_uid, 0o700)
        # ... and the only thing under the data directory it holds open.
        data = str(svc.data_dir) + os.sep
        held = [f for f in seen.fds if f.startswith(data) and not f.startswith(work_dir + os.sep) and f != work_dir]
        assert held == [], seen.fds

        # As that user, the database, the default account's key file, the account's files and the work directory's
        # own path are out of reach.
        targets = [svc.data_dir / "openrr.db", svc.data_dir / "default-account.json", inp / "big.glb"]
        probe = _as(nobody.pw_uid, nobody.pw_gid, _PROBE, work_dir, *map(str, targets))
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.split() == ["DENIED"] * 4, probe.stdout

        doc = wait_conversion(api, svc.account_id, cid, "Succeeded", timeout=180)
    assert doc["output"]["outputAssetUri"].endswith(f"{cid}/big.arrAsset")
    # The outputs were stored by the control plane (the worker could not have written the account's directory).
    for name in ("big.arrAsset", "big.result.json"):
        assert (out / cid / name).stat().st_uid == os.geteuid()
    assert not Path(work_dir).exists(), "the work directory outlived its job"


def test_outputs_left_as_links_are_not_followed_when_the_control_plane_stores_them(tmp_path: Path) -> None:
    """Finding 12 (what the control plane does for a worker): a worker, which may run the tenant's exploit, could
    leave links in its output directory pointing at the database; the control plane, root, stores the outputs of
    file:// containers. Before the fix upload_tree listed files with Path.is_file(), which follows links: the
    database would have been copied into the tenant's container as `<prefix>/model.arrAsset`, and the key files
    under `textures/`. Now the listing never follows a link and each file is opened beneath the directory."""
    from openrr.conversions.staging import make_work_dir, store_outputs

    secret = tmp_path / "data" / "openrr.db"
    secret.parent.mkdir()
    secret.write_bytes(b"SQLite format 3\0 secret rows")
    (tmp_path / "data" / "keys").mkdir()
    (tmp_path / "data" / "keys" / "key.pem").write_bytes(b"PRIVATE KEY")
    work = tmp_path / "work" / "job"
    make_work_dir(work)
    (work / "output" / "model.result.json").write_text("[]")
    (work / "output" / "model.arrAsset").symlink_to(secret)
    (work / "output" / "textures").symlink_to(tmp_path / "data" / "keys", target_is_directory=True)
    root = tmp_path / "containers"
    container = root / "acct" / "out"
    container.mkdir(parents=True)

    names = store_outputs(container.as_uri(), [root / "acct"], "p/", work, lambda _f: None)
    assert names == ["p/model.result.json"]
    stored = sorted(p.relative_to(container).as_posix() for p in container.rglob("*") if p.is_file())
    assert stored == ["p/model.result.json"]
