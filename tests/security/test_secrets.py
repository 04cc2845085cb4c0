"""Secrets at rest (finding 1) and the default account's key (finding 16): the data directory is the service
user's alone, the STS signing key is sealed in the store, and the default key is shown once."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openrr.accounts.sts import TokenService
from openrr.store.db import Database
from openrr.store.secretbox import SecretBox
from openrr.tokens import verify_token
from tests.harness import BANNER_KEY, create_account, running_service

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another local user needs root")


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory every local user may traverse (0755), so that only the data directory's own modes can keep
    another user out (pytest's tmp_path lies under a 0700 directory, which would hide everything anyway)."""
    parent = Path(tempfile.mkdtemp(prefix="openrr-sec-", dir="/tmp"))
    os.chmod(parent, 0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def _nobody_reads(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, "cat", str(path)], capture_output=True, text=True, timeout=10)


def _loose_entries(root: Path) -> list[str]:
    """Entries under `root` (itself included) that anyone but their owner may use."""
    loose = []
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
            loose.append(f"{path} {stat.S_IMODE(st.st_mode):o}")
    return loose


@as_root
def test_another_local_user_reads_nothing_under_the_data_directory(open_parent: Path) -> None:
    """Finding 1: the data directory was 0755 and openrr.db/-wal/-shm 0644, so `nobody` read the STS private key
    and minted tokens for any account. Now the directory is 0700 and every file 0600 whatever the umask (this
    test runs with umask 022): `nobody` can read neither the database, its WAL files, the secrets key, the TLS
    keys, nor a tenant's file. Before the fix the `cat`s of openrr.db and the tenant file succeeded."""
    os.umask(0o022)
    data = open_parent / "data"
    with running_service(data, "--warm-pool", "Standard=0") as svc:
        tenant_file = data / "containers" / svc.account_id / "inputs" / "model.glb"
        # What a tenant's conversion or upload leaves: written by the service, under its umask.
        create_account(data)  # a CLI command writes to the database meanwhile (its umask is private too)
        with svc.http() as http:
            assert http.get("/").status_code == 200
        secrets_paths = [
            data / "openrr.db",
            data / "openrr.db-wal",
            data / "openrr.db-shm",
            data / "secrets.key",
            data / "tls" / "ca-key.pem",
            data / "tls" / "server-key.pem",
        ]
        for path in secrets_paths:
            assert path.exists(), path
        assert _loose_entries(data) == []
        tenant_file.parent.mkdir(parents=True, exist_ok=True)  # by a root process with umask 022: 0755
        tenant_file.write_bytes(b"glTF tenant data")
        for path in [*secrets_paths, tenant_file]:
            r = _nobody_reads(path)
            assert r.returncode != 0 and "Permission denied" in r.stderr, (path, r)
        # The test can fail: nobody reads a file it may read.
        world = open_parent / "world-readable"
        world.write_text("anyone")
        assert _nobody_reads(world).stdout == "anyone"


def test_loose_modes_are_tightened_at_start(open_parent: Path) -> None:
    """Finding 1: an existing data directory with loose modes (from an earlier version or a careless copy) is
    tightened at start, directories to 0700 and files to 0600, and the log says so. Before the fix the modes
    stayed as they were and nothing was logged."""
    os.umask(0o022)
    data = open_parent / "data"
    with running_service(data, "--warm-pool", "Standard=0"):
        pass
    loose_dir = data / "containers" / "copied"
    loose_dir.mkdir(parents=True)
    (loose_dir / "model.obj").write_text("v 0 0 0\n")
    for path, mode in [
        (data, 0o755),
        (data / "openrr.db", 0o644),
        (data / "secrets.key", 0o644),
        (data / "tls", 0o755),
        (data / "tls" / "ca-key.pem", 0o644),
        (loose_dir, 0o777),
        (loose_dir / "model.obj", 0o666),
    ]:
        os.chmod(path, mode)
    assert _loose_entries(data)
    with running_service(data, "--warm-pool", "Standard=0") as svc:
        assert _loose_entries(data) == []
        assert stat.S_IMODE((loose_dir / "model.obj").stat().st_mode) == 0o600
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert re.search(r"tightened \d+ entries under .* to owner-only modes", svc.log()), svc.log()


def test_signing_key_is_sealed_in_the_store(tmp_path: Path) -> None:
    """Finding 1: the `signing_keys` table held the STS private key as plain PEM, so whoever read the database
    could sign tokens. It is now sealed with the secrets key (like linked-storage credentials). Before the fix
    the stored bytes started with -----BEGIN PRIVATE KEY-----."""
    with running_service(tmp_path / "data", "--warm-pool", "Standard=0") as svc:
        with sqlite3.connect(svc.data_dir / "openrr.db") as db:
            ((stored,),) = db.execute("SELECT private_pem FROM signing_keys").fetchall()
        assert b"BEGIN" not in stored and b"PRIVATE KEY" not in stored
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(stored, password=None)
        # It is the real key, sealed: the secrets key opens it, and its public half is the one published.
        box = SecretBox((svc.data_dir / "secrets.key").read_bytes().strip())
        key = serialization.load_pem_private_key(box.open(stored).encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        published = (svc.data_dir / "sts-public.pem").read_bytes()
        assert (
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            == published
        )


def test_a_plain_signing_key_left_by_an_earlier_version_is_sealed_on_load(tmp_path: Path) -> None:
    """Finding 1: a store written before the fix holds a plain PEM; loading it seals it in place and keeps using
    the same key (tokens already issued stay verifiable). Before the fix nothing sealed it."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.migrate()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute(
            "INSERT INTO signing_keys (kid, private_pem, created_at) VALUES (?, ?, ?)",
            ("old", pem, "2025-01-01 00:00:00.000000"),
        )
    box = SecretBox(Fernet.generate_key())
    tokens = TokenService(db, 3600, box)
    token = tokens.issue("6f1c2a9e-0000-4000-8000-00000000abcd", "0123456789abcdef")
    assert verify_token(token, key.public_key()).account_id == "6f1c2a9e-0000-4000-8000-00000000abcd"
    with sqlite3.connect(tmp_path / "old.db") as conn:
        ((stored,),) = conn.execute("SELECT private_pem FROM signing_keys").fetchall()
    assert not stored.startswith(b"-----BEGIN")
    assert box.open(stored).encode() == pem
    db.dispose()


def test_the_default_key_is_shown_once_and_stored_nowhere(tmp_path: Path) -> None:
    """Finding 16: the default account's key was printed at every start (so it ended up in logs) and kept in
    plain text in DATA_DIR/default-account.json. Now only the first start's banner shows it; a second start
    shows the account id without a key, and no file of the data directory contains the key. Before the fix the
    second banner held the key and default-account.json had primaryKey."""
    data = tmp_path / "data"
    with running_service(data, "--warm-pool", "Standard=0") as svc:
        key, account_id = svc.key, svc.account_id
        with svc.api():  # the key from the banner is the real one
            pass
    first_log = svc.log()
    with running_service(data, "--warm-pool", "Standard=0") as again:
        second_banner = again.log()[len(first_log) :]
        assert "openrr is listening on" in second_banner and account_id in second_banner
        assert key not in second_banner and not BANNER_KEY.search(second_banner)
        doc = json.loads((data / "default-account.json").read_text())
        assert doc["accountId"] == account_id and "primaryKey" not in doc and "secondaryKey" not in doc
        for path in data.rglob("*"):
            if path.is_file() and path.name != "serve.log":  # the log is the test's capture of stdout
                assert key.encode() not in path.read_bytes(), path
        assert again.account_id == account_id and again.key == key  # the harness read it from the first banner
        with again.api():
            pass


def test_keys_left_in_default_account_json_by_an_earlier_version_are_removed(tmp_path: Path) -> None:
    """Finding 16: an earlier version wrote the default account's keys to default-account.json; the next start
    removes them from the file, and logs that it did. Before the fix they stayed (and were printed again)."""
    data = tmp_path / "data"
    with running_service(data, "--warm-pool", "Standard=0") as svc:
        key = svc.key
    path = data / "default-account.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "primaryKey": key, "secondaryKey": "x" * 43 + "="}))
    first_log = svc.log()
    with running_service(data, "--warm-pool", "Standard=0") as again:
        assert set(json.loads(path.read_text())) == {"accountId", "accountDomain"}
        later = again.log()[len(first_log) :]
        assert "removed the plain-text account keys" in later and key not in later
