"""What a newcomer types from the README works as written: the sample flow's Azurite command line and the
example script run with the environment that flow exports (no OPENRR_ENDPOINT: openrr serve's default port)."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _render_frame() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_frame_example", REPO / "examples" / "render_frame.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_frame_defaults_to_the_default_port_of_openrr_serve() -> None:
    example = _render_frame()
    env = {"OPENRR_ACCOUNT_ID": "acc", "OPENRR_ACCOUNT_KEY": "key", "OPENRR_CA_CERT": "/data/tls/cert.pem"}
    assert example.connection(env) == ("https://127.0.0.1:8443", "acc", "key", "/data/tls/cert.pem")
    assert example.connection({**env, "OPENRR_ENDPOINT": "https://h:1"})[0] == "https://h:1"
    assert example.connection({**env, "OPENRR_CA_CERT": ""})[3] is None


def test_render_frame_names_the_account_settings_it_lacks() -> None:
    example = _render_frame()
    with pytest.raises(example.MissingSetting, match=r"^set OPENRR_ACCOUNT_KEY \(") as missing_key:
        example.connection({"OPENRR_ACCOUNT_ID": "acc"})
    assert "OPENRR_ACCOUNT_ID" not in str(missing_key.value)
    with pytest.raises(example.MissingSetting, match="set OPENRR_ACCOUNT_ID and OPENRR_ACCOUNT_KEY"):
        example.connection({"OPENRR_ENDPOINT": "https://127.0.0.1:8443"})


def test_the_readme_starts_azurite_as_the_tests_do() -> None:
    # azure-storage-blob sends a newer API version than the Azurite in package-lock.json knows; without
    # --skipApiVersionCheck `openrr convert` fails with 400 InvalidHeaderValue. tests/azurite.py passes it too.
    lines = [ln for ln in (REPO / "README.md").read_text().splitlines() if ln.startswith("npx azurite-blob ")]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0].split("&")[0])
    assert "--skipApiVersionCheck" in argv
    assert argv[argv.index("--blobHost") + 1] == "127.0.0.1" and argv[argv.index("--blobPort") + 1] == "10000"
    assert '"--skipApiVersionCheck"' in (REPO / "tests" / "azurite.py").read_text()
