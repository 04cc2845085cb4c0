"""The client library imports nothing of the server: `openrr.client` and each of its modules, imported in a fresh
interpreter, load no openrr module outside openrr.client and openrr.protocol, and none of the server's libraries."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import openrr.client

ALLOWED = ("openrr.client", "openrr.protocol")
SERVER_LIBRARIES = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "moderngl", "trimesh", "cv2", "jwt")
MODULES = ["openrr.client", *(f"openrr.client.{m.name}" for m in pkgutil.iter_modules(openrr.client.__path__))]


def _loaded_by(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize("module", MODULES)
def test_the_client_loads_nothing_of_the_server(module: str) -> None:
    loaded = _loaded_by(module)
    server = [m for m in loaded if m.startswith("openrr.") and not m.startswith(tuple(f"{a}." for a in ALLOWED))]
    server = [m for m in server if m not in ALLOWED]
    assert not server, f"{module} loads server modules: {server}"
    libraries = [m for m in loaded if m.split(".")[0] in SERVER_LIBRARIES]
    assert not libraries, f"{module} loads server libraries: {sorted({m.split('.')[0] for m in libraries})}"


def test_the_package_exports_every_client_and_one_exception_base() -> None:
    from openrr import client

    assert {"RestClient", "ConversionClient", "RenderSessionClient", "open_webrtc"} <= set(client.__all__)
    errors = [getattr(client, name) for name in client.__all__ if isinstance(getattr(client, name), type)]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert {e.__name__ for e in errors} >= {"ArrHttpError", "ArrConnectionError", "SessionError", "ConfigError"}
    assert all(issubclass(e, client.ClientError) for e in errors)


def test_the_rest_clients_do_not_load_the_render_clients() -> None:
    """The CLIs build on the REST client: importing the package must not pay for websockets, aiortc or PyAV."""
    loaded = _loaded_by("openrr.client")
    assert not [m for m in ("aiortc", "av", "websockets", "simplejpeg") if m in loaded]
