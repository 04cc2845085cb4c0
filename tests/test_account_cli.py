"""A newcomer's `openrr account create`, without --data-dir, against a running `openrr serve` with its own: the
account lands in the service's store and its key works (it used to land in the default store: a bare 401)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrr.client.rest import RestClient, tls_context
from tests.harness import running_service


def test_account_create_finds_the_running_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # the service's record goes here (inherited)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENRR_DATA_DIR", "OPENRR_DATABASE_URL")}
    env["XDG_DATA_HOME"] = str(tmp_path / "default")  # the default data dir: not the service's
    with running_service(tmp_path / "served") as svc:
        made = subprocess.run(
            [sys.executable, "-m", "openrr", "account", "create", "--json"],
            capture_output=True, text=True, timeout=60, env=env, check=True,
        )  # fmt: skip
        assert f"using data directory {(tmp_path / 'served').resolve()}" in made.stderr, made.stderr
        account = json.loads(made.stdout)
        with RestClient(
            endpoint=svc.endpoint,
            sts_endpoint=svc.endpoint,
            account_id=account["accountId"],
            account_key=account["primaryKey"],
            verify=tls_context(svc.cert),
        ) as client:
            assert list(client.list_sessions()) == []
    assert not (tmp_path / "default" / "openrr").exists()
    assert list((runtime / "openrr").iterdir()) == []  # the service's record went with it
