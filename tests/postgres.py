"""A throwaway real PostgreSQL server for tests: initdb in a temp dir, listening on loopback only."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.harness import free_port, wait_for


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    return None


def postgres_available() -> str | None:
    """None if a server can be started here, else why not."""
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server(base: Path) -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh, empty database."""
    data = base / "pgdata"
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    assert initdb and pg_ctl
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "openrr", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data), "-o", opts, "-l", str(data / "server.log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    url = f"postgresql+psycopg://openrr@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        def accepts() -> bool:
            try:
                psycopg.connect(f"postgresql://openrr@127.0.0.1:{port}/postgres", connect_timeout=2).close()
            except psycopg.OperationalError:
                return False
            return True

        wait_for(accepts, 20, "PostgreSQL to accept connections")
        yield url
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One PostgreSQL server per test module (import this fixture into the module); skipped where none can run,
    except in CI, where its absence fails the tests."""
    if postgres_available() is not None and not os.environ.get("CI"):
        pytest.skip(str(postgres_available()))
    # Not under pytest's temporary directory: the server runs as `postgres`, which cannot enter root's 0700 one.
    base = Path(tempfile.mkdtemp(prefix="openrr-pg-"))
    try:
        with postgres_server(base) as url:
            yield url
    finally:
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(url: str) -> str:
    """A new, empty database on the server of `url` (one per test, on a server shared by the module); its URL."""
    import psycopg  # as in postgres_server

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"
