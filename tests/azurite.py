"""A real Azurite blob service (the Azure Storage emulator, from npm) for tests."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's fixed development account (public, documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_available() -> str | None:
    """None if Azurite can run here, else why not."""
    return None if AZURITE.exists() else f"Azurite is not installed ({AZURITE}); run `npm install`"


@dataclass(frozen=True)
class Azurite:
    port: int

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={self.blob_endpoint};"
        )


@contextmanager
def azurite(workdir: Path) -> Iterator[Azurite]:
    port = free_port()
    log = open(workdir / "azurite.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workdir),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",  # it would try to reach Microsoft, which CI and tests must not
            "--loose",
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
    )
    log.close()

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"azurite exited with {proc.returncode}: {(workdir / 'azurite.log').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 30, "Azurite to listen")
        yield Azurite(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
