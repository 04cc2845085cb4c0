"""Engine, transactions and schema migration."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Executable, Row, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from openrr.util.private_dir import create_private_file, private_umask

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


def head_revision() -> str:
    """The newest migration's revision. Migrations are `versions/NNNN_<what>.py` with revision "NNNN", each on the
    one before (tests/unit/test_cli_admin.py holds this against alembic's own reading)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


P = ParamSpec("P")
T = TypeVar("T")

FIRST_START_LOCK = 7072
"""PostgreSQL advisory lock that serialises replicas' first-start work on one database: the migration and the
STS signing key's creation (two replicas started at once would race on both; 7071 is capacity's)."""


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # Reads run in autocommit: a single SELECT needs no BEGIN/ROLLBACK round, and WAL keeps it consistent.
            self.engine: Engine = _sqlite_engine(url, begin=None)
            # Writers take the lock up front (BEGIN IMMEDIATE) so that a reader that later writes cannot
            # deadlock with another process (the CLI) and fail with "database is locked".
            self._write_engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
            self._write_engine = self.engine
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._write_factory = sessionmaker(self._write_engine, expire_on_commit=False)
        self._readers = threading.local()
        # SQLite allows one writer; serialising writers inside the process avoids busy-retry storms.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def migrate(self) -> None:
        if self._revision() == head_revision():
            # At the head already (every open but the first after an upgrade): no alembic, which takes ~100 ms
            # of start-up time, most of what an admin command (`openrr account list`) would wait for.
            return
        # Imported here for that start-up time; nothing of openrr is behind it.
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._write_engine.begin() as conn:
            # Replicas starting together on a fresh database: one migrates, the others then find it at the head.
            self.first_start_lock(conn)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def first_start_lock(self, tx: Connection | Session) -> None:
        """Hold FIRST_START_LOCK until `tx` ends (PostgreSQL; SQLite's writers are serialised already)."""
        if not self.is_sqlite:
            tx.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_START_LOCK})

    def _revision(self) -> str | None:
        """The store's migration revision (alembic's table), None before the first."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()

    def fetch_one(self, stmt: Executable, params: dict[str, Any] | None = None) -> Row[Any] | None:
        with self._reader() as conn:
            return conn.execute(stmt, params).first()

    def fetch_all(self, stmt: Executable, params: dict[str, Any] | None = None) -> list[Row[Any]]:
        with self._reader() as conn:
            return list(conn.execute(stmt, params).all())

    @contextmanager
    def _reader(self) -> Iterator[Connection]:
        if not self.is_sqlite:
            with self.engine.connect() as pooled:
                yield pooled
            return
        # SQLite reads run in autocommit, so a connection kept per thread holds no transaction or snapshot;
        # keeping it saves a pool checkout per read on the API's hot path.
        conn: Connection | None = getattr(self._readers, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            self._readers.conn = conn
        yield conn

    async def read_async(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read from async code.

        SQLite reads take microseconds and never wait (WAL), so they run inline: a hop to a worker thread costs
        more than the read, and 40 threads contending for the GIL halved API throughput (bench/RESULTS.md).
        A PostgreSQL read crosses the network, so it goes to a worker thread.
        """
        if self.is_sqlite:
            return fn(*args, **kwargs)
        return await run_in_threadpool(fn, *args, **kwargs)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._factory() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction; committed on success, rolled back on any exception."""
        if self._write_lock is not None:
            with self._write_lock, self._write_factory.begin() as s:
                yield s
        else:
            with self._write_factory.begin() as s:
                yield s

    def dispose(self) -> None:
        self.engine.dispose()
        self._write_engine.dispose()


class DatabaseSettings(Protocol):
    """What `open_database` needs of the settings (config.Settings has it; store/ does not import config)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def database_url(self) -> str | None: ...
    @property
    def sqlite_path(self) -> Path: ...
    @property
    def effective_database_url(self) -> str: ...


def open_database(settings: DatabaseSettings) -> Database:
    """The control plane's database, migrated to the latest schema."""
    # Whatever this process creates in the data directory is owner-only; the database file is created 0600
    # before SQLite opens it, and SQLite gives its -wal/-shm files the database file's mode.
    private_umask()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.database_url is None:
        create_private_file(settings.sqlite_path)
    db = Database(settings.effective_database_url)
    db.migrate()
    return db


def _sqlite_engine(url: str, begin: str | None) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    # pysqlite's own transaction handling is bypassed (SQLAlchemy's documented recipe) so that we choose
    # the BEGIN; WAL lets readers go on while one writer writes.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

    return engine
