"""The client library's examples, run against a real service: the docstring examples of openrr.client.render_session
and openrr.client.webrtc, and examples/render_frame.py. Each must show the model it loaded; the render session's
example once returned a frame from before the model loaded (next_frame took whatever frame was queued)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from openrr.client import render_session, webrtc
from tests.harness import Service

REPO = Path(__file__).resolve().parents[1]
BACKGROUND = np.array([0.12, 0.12, 0.14]) * 255  # the renderer's clear colour


def _shows_model(pixel: Any) -> bool:
    return bool(np.abs(np.asarray(pixel, dtype=float) - BACKGROUND).max() > 40)


def _docstring_example(module: ModuleType) -> str:
    """The indented block of the module's docstring."""
    assert module.__doc__
    return textwrap.dedent("\n".join(line for line in module.__doc__.splitlines() if line.startswith("    ")))


async def _run_example(code: str, names: dict[str, Any]) -> dict[str, Any]:
    source = "async def example():\n" + textwrap.indent(code + "\nreturn locals()", "    ")
    namespace: dict[str, Any] = {**names, "RenderSessionClient": render_session.RenderSessionClient}
    namespace["open_webrtc"] = webrtc.open_webrtc
    exec(compile(source, "<docstring example>", "exec"), namespace)  # our own docstring
    seen: dict[str, Any] = await namespace["example"]()
    return seen


@pytest.mark.parametrize("module", [render_session, webrtc], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_the_docstring_example_shows_the_model(
    module: ModuleType, service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    names = {
        "endpoint": service.endpoint,
        "account_id": service.account_id,
        "key": service.key,
        "session_id": session["id"],
        "cert": service.cert,
        "model_url": model_url["sphere"],
    }
    seen = asyncio.run(_run_example(_docstring_example(module), names))
    image = seen["frame"].image if "frame" in seen else seen["image"]
    height, width, _ = image.shape
    assert _shows_model(image[height // 2, width // 2]), "the example's frame does not show the model"
    assert not _shows_model(image[-1, -1])


def test_render_frame_script_shows_the_model(
    service: Service, session: dict[str, Any], model_url: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPENRR_")},
        "OPENRR_ENDPOINT": service.endpoint,
        "OPENRR_ACCOUNT_ID": service.account_id,
        "OPENRR_ACCOUNT_KEY": service.key,
        "OPENRR_CA_CERT": service.cert,
    }
    out = tmp_path / "frame.jpg"
    script = [sys.executable, str(REPO / "examples" / "render_frame.py"), session["id"], model_url["sphere"]]
    done = subprocess.run([*script, "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout)
    assert seen["model"].endswith("sphere.glb") and seen["triangles"] == 5120
    assert _shows_model(seen["centre"]) and not _shows_model(seen["corner"])
    assert out.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    refused = subprocess.run(
        [*script], capture_output=True, text=True, env={**env, "OPENRR_ACCOUNT_KEY": "wrong"}, timeout=120
    )
    assert refused.returncode == 1 and refused.stdout.startswith("error: getting an access token failed: HTTP 401")
