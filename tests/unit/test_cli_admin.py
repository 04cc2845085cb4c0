"""The admin commands in process: which store `openrr account` opens (the running service's, found through the
record `openrr serve` keeps), what they load, and the migration head they skip alembic by."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openrr.cli import running
from openrr.cli.main import main
from openrr.config import Settings
from openrr.store.db import MIGRATIONS, head_revision


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime dir for the records, a home whose default data dir no service uses, no OPENRR_* store."""
    base = tmp_path / "run"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home-data"))
    for name in running.EXPLICIT_ENV:
        monkeypatch.delenv(name, raising=False)
    yield base / "openrr"


def _accounts(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["account", "list", "--json", "--data-dir", str(data_dir)]) == 0
    return [a["accountId"] for a in json.loads(capsys.readouterr().out)]


def test_account_create_uses_the_running_services_store(
    runtime: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    with running.announce(Settings(data_dir=served, port=1234)):
        assert main(["account", "create", "--json"]) == 0
        made = json.loads(capsys.readouterr().out)["accountId"]
        assert made in _accounts(served, capsys)
    assert not (tmp_path / "home-data" / "openrr").exists()  # the default store was not touched
    assert list(runtime.iterdir()) == []  # the record went with the block


def test_it_says_which_store_it_used(runtime: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served = tmp_path / "served"
    with running.announce(Settings(data_dir=served, port=1234)):
        assert main(["account", "list"]) == 0
        said = capsys.readouterr().err
        assert f"using data directory {served.resolve()}" in said and "127.0.0.1:1234" in said
        # A store named explicitly is used as named, with a warning that the running service uses another.
        other = tmp_path / "other"
        assert main(["account", "list", "--data-dir", str(other)]) == 0
        said = capsys.readouterr().err
        assert f"warning: no running service uses data directory {other.resolve()}" in said and str(served) in said
    # No service: the default, and the line says so.
    assert main(["account", "list"]) == 0
    said = capsys.readouterr().err
    assert "no running openrr serve found" in said and str(tmp_path / "home-data" / "openrr") in said


def test_two_services_on_other_stores_are_ambiguous(
    runtime: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running.announce(Settings(data_dir=tmp_path / "a")):
        # A second service on another store: announce() in a child process, killed (no clean exit) afterwards.
        child = subprocess.Popen(
            [sys.executable, "-c", _ANNOUNCE, str(tmp_path / "b")], stdout=subprocess.PIPE, text=True, env=os.environ
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "announced"
            assert main(["account", "list"]) == 2
            said = capsys.readouterr().err
            assert "several services run" in said and str(tmp_path / "a") in said and str(tmp_path / "b") in said
        finally:
            child.kill()
            child.wait()
    # The killed child's record is stale: its lock went with it, and the next reader removes it.
    assert running.running() == [] and list(runtime.iterdir()) == []


_ANNOUNCE = """
import sys
import time
from pathlib import Path
from openrr.cli import running
from openrr.config import Settings
with running.announce(Settings(data_dir=Path(sys.argv[1]))):
    print("announced", flush=True)
    time.sleep(60)
"""


def test_a_runtime_dir_others_can_write_is_not_trusted(runtime: Path, tmp_path: Path) -> None:
    runtime.mkdir(mode=0o777)
    runtime.chmod(0o777)  # past the umask
    (runtime / "1.json").write_text(json.dumps({"pid": 1, "dataDir": "/elsewhere", "database": None}))
    assert running.running() == []
    with running.announce(Settings(data_dir=tmp_path / "served")):
        assert list(runtime.glob("[0-9]*.json")) == [runtime / "1.json"]  # nothing announced there


def test_passwords_stay_out_of_records(runtime: Path, tmp_path: Path) -> None:
    url = "postgresql+psycopg://openrr:s3cret@127.0.0.1:5432/openrr"
    with running.announce(Settings(data_dir=tmp_path / "d", database_url=url)):
        (record,) = runtime.glob("*.json")
        assert "s3cret" not in record.read_text()
        (found,) = running.running()
        assert found.database_url is None and found.store.database == url.replace("s3cret", "***")


def test_the_admin_cli_loads_no_render_nor_client_stack(runtime: Path, tmp_path: Path) -> None:
    # `openrr account list` starts in well under 0.5 s because it loads only what it uses; timings on a shared
    # machine are noise, what it loads is not. The second open of a store at the head skips alembic too.
    probe = (
        "import sys\n"
        "from openrr.cli.main import main\n"
        f"main(['account', 'list', '--data-dir', {str(tmp_path)!r}])\n"
        "heavy = ('moderngl', 'aiortc', 'cv2', 'av', 'trimesh', 'httpx', 'fastapi', 'uvicorn', 'alembic')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    for loaded in ("['alembic']", "[]"):  # the first open migrates
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == loaded, out.stdout + out.stderr


def test_the_head_revision_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()


def test_render_server_is_the_contracts_command_name() -> None:
    from openrr.cli.main import COMMANDS, RENDER_SERVER
    from openrr.render.control import RENDER_SERVER_COMMAND

    assert RENDER_SERVER == RENDER_SERVER_COMMAND and RENDER_SERVER in COMMANDS


def test_serve_refuses_a_data_directory_a_running_service_uses(
    runtime: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = tmp_path / "served"
    with running.announce(Settings(data_dir=served, port=1234)):
        assert main(["serve", "--data-dir", str(served), "--port", "1"]) == 2
    said = capsys.readouterr().err
    assert f"already uses data directory {served.resolve()}" in said and "127.0.0.1:1234" in said
    assert not served.exists()  # refused before creating or changing anything there
