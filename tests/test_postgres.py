"""The same service on a real PostgreSQL server instead of SQLite."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from azure.mixedreality.remoterendering import (
    AssetConversionInputSettings,
    AssetConversionOutputSettings,
    AssetConversionStatus,
    RenderingSessionStatus,
)
from cryptography.fernet import Fernet

from tests.harness import Service, free_port, openrr, render_server_pids, wait_for
from tests.models import write_models
from tests.postgres import postgres_available, postgres_server

# CI installs PostgreSQL (.ci/run); skipping is only for a developer machine without it, and says why.
pytestmark = pytest.mark.skipif(
    postgres_available() is not None and not os.environ.get("CI"), reason=str(postgres_available())
)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    # Not under pytest's tmp dir: that is private to root, and the server runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="openrr-pg-"))
    # The module's data directories share one database, as replicas do, so they share its secrets key too (the
    # STS signing key and storage credentials in it are sealed with that key).
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENRR_SECRETS_KEY", Fernet.generate_key().decode())
    try:
        with postgres_server(base) as url:
            yield url
    finally:
        mp.undo()
        shutil.rmtree(base, ignore_errors=True)


def test_service_on_postgres_through_the_sdk(pg_url: str, base_dir: Path) -> None:
    data = base_dir / "pg-service"
    made = openrr("account", "create", "--json", "--database-url", pg_url, data_dir=data)
    account = json.loads(made.stdout)
    args = ["--database-url", pg_url, "--warm-pool", "Standard=1"]
    svc = Service(data, free_port(), args, account_id=account["accountId"], key=account["primaryKey"]).start()
    try:
        client = svc.sdk()
        session = client.begin_rendering_session(session_id="on-pg", size="standard", lease_time_minutes=5).result(30)
        assert session.status == RenderingSessionStatus.READY
        assert client.update_rendering_session(session_id="on-pg", lease_time_minutes=9).lease_time_minutes == 9
        client.stop_rendering_session(session_id="on-pg")
        assert client.get_rendering_session(session_id="on-pg").status == RenderingSessionStatus.STOPPED
    finally:
        assert svc.stop() == 0

    # The records really live in PostgreSQL, under Alembic's schema version.
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, max_lease_minutes FROM sessions WHERE id = 'on-pg'")).one()
        assert tuple(row) == ("Stopped", 9)
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == _head_revision()
        assert conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar() == 1
    engine.dispose()


def _head_revision() -> str:
    versions = Path(__file__).resolve().parent.parent / "src" / "openrr" / "store" / "migrations" / "versions"
    return max(p.name.split("_")[0] for p in versions.glob("[0-9]*.py"))


def test_conversion_on_postgres(pg_url: str, base_dir: Path) -> None:
    """A conversion job claimed and run through PostgreSQL (row locks with SKIP LOCKED), file:// containers."""
    data = base_dir / "pg-conversion"
    account = json.loads(openrr("account", "create", "--json", "--database-url", pg_url, data_dir=data).stdout)
    area = data / "containers" / account["accountId"]  # each account's file:// containers live in its own area
    source, target = area / "in", area / "out"
    target.mkdir(parents=True)
    write_models(source)
    args = ["--database-url", pg_url, "--warm-pool", "Standard=0", "--conversion-workers", "1"]
    svc = Service(data, free_port(), args, account_id=account["accountId"], key=account["primaryKey"]).start()
    try:
        done = (
            svc.sdk()
            .begin_asset_conversion(
                conversion_id="on-pg",
                input_settings=AssetConversionInputSettings(
                    storage_container_uri=source.as_uri(), relative_input_asset_path="sphere.glb"
                ),
                output_settings=AssetConversionOutputSettings(storage_container_uri=target.as_uri()),
            )
            .result(60)
        )
        assert done.status == AssetConversionStatus.SUCCEEDED, done.error
        assert done.output.asset_uri == f"{target.as_uri()}/sphere.arrAsset"
        assert (target / "sphere.arrAsset").is_file()
    finally:
        assert svc.stop() == 0
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, attempts, owner FROM conversions WHERE id = 'on-pg'")).one()
        assert tuple(row) == ("Succeeded", 1, None)
    engine.dispose()


def test_render_servers_stop_even_when_the_database_is_gone(base_dir: Path) -> None:
    data = base_dir / "pg-gone"
    base = Path(tempfile.mkdtemp(prefix="openrr-pg-"))
    try:
        with postgres_server(base) as url:
            made = json.loads(openrr("account", "create", "--json", "--database-url", url, data_dir=data).stdout)
            args = ["--database-url", url, "--warm-pool", "Standard=1"]
            svc = Service(data, free_port(), args, account_id=made["accountId"], key=made["primaryKey"]).start()
            try:
                client = svc.sdk()
                client.begin_rendering_session(session_id="orphan-check", size="Standard", lease_time_minutes=5).result(
                    30
                )
                wait_for(lambda: len(render_server_pids(data)) == 2, 15, "the session's server and a refilled pool")
            except BaseException:
                svc.stop()
                raise
        # PostgreSQL is stopped now; a clean shutdown must still leave no render server behind.
        svc.stop()
        wait_for(lambda: not render_server_pids(data), 15, "render servers to be stopped")
    finally:
        shutil.rmtree(base, ignore_errors=True)
