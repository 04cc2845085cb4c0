"""Which store the admin commands open: the running service's, found through the record `openrr serve` leaves.

While `openrr serve` runs it keeps `<runtime dir>/<pid>.json` (its data directory, database and endpoint) open and
locked; the lock goes with the process, however it ends, so a record whose lock can be taken is stale. The runtime
dir is the user's own: `$XDG_RUNTIME_DIR/openrr`, else `<tmp>/openrr-<uid>`; one that is not owner-only (0700) is
not trusted, since a record there would choose the database admin commands write to.

`openrr account ...` without --data-dir, --database-url or their OPENRR_* variables then uses the store of the one
running service; with no service running, the default data directory. Either way one stderr line says which. With
a store named explicitly, it warns when services run and none of them uses that store.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from openrr.cli.settings import settings_from

if TYPE_CHECKING:
    from openrr.config import Settings

EXPLICIT_ENV = ("OPENRR_DATA_DIR", "OPENRR_DATABASE_URL")


@dataclass(frozen=True)
class Store:
    """What identifies a store: the data directory (it also holds the secrets key) and the database, None for
    SQLite in the data directory; a database URL with its password masked."""

    data_dir: Path
    database: str | None

    def __str__(self) -> str:
        return f"data directory {self.data_dir} ({self.database or 'SQLite ' + str(self.data_dir / 'openrr.db')})"


@dataclass(frozen=True)
class Running:
    """One running `openrr serve`, as its record says."""

    pid: int
    store: Store
    database_url: str | None  # the URL to open: None for SQLite in the data directory, or where it holds a password
    endpoint: str

    def __str__(self) -> str:
        return f"the service at {self.endpoint} (pid {self.pid})"


def runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "openrr"
    return Path(tempfile.gettempdir()) / f"openrr-{os.getuid()}"


def _own_dir(path: Path, create: bool) -> bool:
    """Whether `path` is a directory of this user's alone (made so when `create`)."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700, parents=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0


def masked(url: str) -> str:
    """`url` without its password (`user:***@host`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _store_of(settings: Settings) -> Store:
    url = settings.database_url
    return Store(settings.data_dir.resolve(), None if url is None else masked(url))


@contextlib.contextmanager
def announce(settings: Settings) -> Iterator[None]:
    """Keep this process's record while the block runs (nothing, with a warning, where no private runtime dir is)."""
    where = runtime_dir()
    if not _own_dir(where, create=True):
        print(f"openrr: {where} is not owner-only: admin commands will not find this service", file=sys.stderr)
        yield
        return
    store = _store_of(settings)
    url = settings.database_url
    doc = {
        "pid": os.getpid(),
        "dataDir": str(store.data_dir),
        "database": store.database,
        # Passwords stay out of files: an admin command asks for such a URL instead.
        "databaseUrl": url if url == store.database else None,
        "endpoint": settings.endpoint,
    }
    path = where / f"{os.getpid()}.json"
    # Locked before it is renamed into place, so a reader never sees this record unlocked (and thus stale);
    # hence not util/atomic.py, which closes the file.
    fd, temporary = tempfile.mkstemp(dir=where, prefix=".", suffix=".partial")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(doc).encode())
        os.replace(temporary, path)
        yield
    finally:
        Path(temporary).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        os.close(fd)


def running() -> list[Running]:
    """The services running now, from their records; stale records are removed."""
    where = runtime_dir()
    if not _own_dir(where, create=False):
        return []
    found = []
    for path in sorted(where.glob("*.json")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as f:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    doc = json.loads(f.read())
                    found.append(
                        Running(
                            pid=int(doc["pid"]),
                            store=Store(Path(doc["dataDir"]), doc["database"]),
                            database_url=doc["databaseUrl"],
                            endpoint=str(doc["endpoint"]),
                        )
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # not a record of this version
            else:
                path.unlink(missing_ok=True)  # its service is gone: nobody holds the lock
    return found


def admin_settings(args: argparse.Namespace) -> Settings | None:
    """The settings an admin command opens the store with, said on stderr; None (after saying why) where the
    running services leave it open: several run, none on the default store, and the command named none."""
    settings = settings_from(args)
    services = running()
    explicit = args.data_dir is not None or args.database_url is not None or any(v in os.environ for v in EXPLICIT_ENV)
    mine = _store_of(settings)
    same = [s for s in services if s.store == mine]
    if explicit:
        if services and not same:
            others = "; ".join(f"{s} on {s.store}" for s in services)
            print(f"openrr: warning: no running service uses {mine}; running: {others}", file=sys.stderr)
        return settings
    if not services or same:
        whose = f"that of {same[0]}" if same else "the default; no running openrr serve found, --data-dir picks another"
        print(f"openrr: using {mine}: {whose}", file=sys.stderr)
        return settings
    if len({s.store for s in services}) > 1:
        others = "; ".join(f"{s} on {s.store}" for s in services)
        print(f"openrr: several services run, none on {mine}: pick one with --data-dir: {others}", file=sys.stderr)
        return None
    service = services[0]
    if service.database_url is None and service.store.database is not None:
        print(
            f"openrr: {service} uses {service.store}: pass --data-dir and --database-url (its password is not "
            "recorded)",
            file=sys.stderr,
        )
        return None
    args.data_dir, args.database_url = service.store.data_dir, service.database_url
    print(f"openrr: using {service.store}: that of {service}", file=sys.stderr)
    return settings_from(args)
