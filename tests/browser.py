"""How headless Chromium is launched here (tests and benchmarks alike)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that work here as root (/work/shared/reference/render-stack-notes.md); without the background-networking
# ones Chromium keeps trying hosts this machine cannot reach. The render server's certificate is the service's
# local CA's: a real user imports DATA_DIR/tls/cert.pem instead of ignoring certificate errors.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
]

WEBGL_FLAGS = ["--use-angle=swiftshader", "--use-gl=angle", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
"""WebGL through SwiftShader (CPU), for three.js in tests/reference_renderer.py (render-stack-notes.md)."""


@contextmanager
def chromium(profile: Path, extra_args: Sequence[str] = (), **options: Any) -> Iterator[Any]:
    """A headless Chromium (a Playwright browser context with its own empty profile); skips without Chromium.
    `extra_args`: more command-line flags (WEBGL_FLAGS for a page that renders with WebGL)."""
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_FLAGS, *extra_args],
            ignore_https_errors=True,
            **options,
        )
        try:
            yield context
        finally:
            context.close()
