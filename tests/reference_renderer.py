"""three.js (npm `three`, its GLTFLoader) in headless Chromium: the reference renderer openrr's pictures are held
against (tests/test_reference_images.py).

One loopback HTTP server serves the page (tests/reference/), three.js from node_modules and the test's files (the
scenes and the environment map, which the openrr session fetches from the same server). One Chromium page renders
every scene; `ReferenceRenderer.render()` returns RGB uint8 pixels.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from tests.browser import WEBGL_FLAGS, chromium
from tests.gltf_scenes import BACKGROUND_SRGB, ENVIRONMENT_FILE, GltfScene, light_fields
from tests.models import serve_directory

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "tests" / "reference"
THREE = REPO / "node_modules" / "three"
LOAD_MS = 60_000
"""Loading three.js and prefiltering the environment on SwiftShader (CPU) takes seconds; a bound, not a pause."""


@dataclass
class ReferenceRenderer:
    page: Any
    base: str
    """The server's URL; the test's files are under {base}/files/."""
    errors: list[str]

    def file_url(self, name: str) -> str:
        return f"{self.base}/files/{name}"

    def spec(self, scene: GltfScene, width: int, height: int, environment_intensity: float = 1.0) -> dict[str, Any]:
        view = scene.view
        environment = {"url": self.file_url(ENVIRONMENT_FILE), "intensity": environment_intensity}
        return {
            "model": self.file_url(scene.file),
            "width": width,
            "height": height,
            "background": list(BACKGROUND_SRGB),
            "camera": {
                "position": list(view.position),
                "target": list(view.target),
                "up": list(view.up),
                "fovY": view.fov_y,
                "near": view.near,
                "far": view.far,
            },
            "environment": environment if scene.environment else None,
            "lights": [light_fields(light) for light in scene.lights],
        }

    def render(self, scene: GltfScene, width: int, height: int) -> npt.NDArray[np.uint8]:
        """The scene as three.js draws it: (height, width, 3) sRGB."""
        try:
            url = self.page.evaluate("spec => window.renderScene(spec)", self.spec(scene, width, height))
        except Exception as exc:
            raise AssertionError(f"three.js failed on {scene.name}: {exc}; page errors: {self.errors}") from exc
        png = base64.b64decode(url.partition(",")[2])
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert pixels.shape == (height, width, 3), pixels.shape
        return pixels


@contextmanager
def reference_renderer(files: Path, work: Path) -> Iterator[ReferenceRenderer]:
    """Serves `files` (and the page, and three.js) on loopback and opens the page in headless Chromium with WebGL
    (SwiftShader). Skips on a developer machine without `npm install`; CI always has three.js."""
    if not (THREE / "build" / "three.module.js").exists():
        if os.environ.get("CI"):
            raise AssertionError(f"three.js is missing at {THREE}: run npm install")
        pytest.skip(f"three.js is missing at {THREE} (npm install)")
    root = work / "www"
    root.mkdir(parents=True)
    for name, target in (("reference", PAGE), ("three", THREE), ("files", files)):
        (root / name).symlink_to(target, target_is_directory=True)
    with serve_directory(root) as base, chromium(work / "profile", WEBGL_FLAGS, device_scale_factor=1) as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
        page.goto(f"{base}/reference/index.html")
        try:
            page.wait_for_function("() => window.referenceReady === true", timeout=LOAD_MS)
        except Exception as exc:
            raise AssertionError(f"the three.js reference page did not load: {errors}") from exc
        yield ReferenceRenderer(page, base, errors)
