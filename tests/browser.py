"""How headless Chromium is launched here (tests and benchmarks alike)."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags that work here as root (/work/shared/reference/render-stack-notes.md); without the background-networking
# ones Chromium keeps trying hosts this machine cannot reach. The render server's certificate is the service's
# self-signed one: a real user imports DATA_DIR/tls/cert.pem instead of ignoring certificate errors.
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
