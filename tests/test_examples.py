"""The repository's sample `examples/arrconfig.json`, used as the README says: its placeholders stay in the file and
the account comes from the environment, the domains are overridden to the test service's port. If the sample drifts
from what `openrr session` and `openrr convert` read, these fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from openrr.model.arrasset import read_asset
from tests.azurite import Azurite
from tests.conversions import blobs
from tests.harness import Service

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "arrconfig.json"


def openrr_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENRR_", "AZURE_STORAGE_"))}
    clean.pop("REQUESTS_CA_BUNDLE", None)
    return subprocess.run(
        [sys.executable, "-m", "openrr", *args],
        capture_output=True,
        text=True,
        cwd=REPO,  # the sample's localAssetDirectoryPath is relative to the checkout, where the README runs it
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


def account_env(service: Service) -> dict[str, str]:
    return {
        "OPENRR_ACCOUNT_ID": service.account_id,
        "OPENRR_ACCOUNT_KEY": service.key,
        "OPENRR_ENDPOINT": service.endpoint,
        "OPENRR_STS_ENDPOINT": service.endpoint,
        "OPENRR_CA_CERT": service.cert,
    }


def test_the_sample_names_openrr_on_its_default_port_and_azurite() -> None:
    sample = json.loads(SAMPLE.read_text())
    assert sample["accountSettings"]["arrAccountDomain"] == "127.0.0.1:8443"
    assert sample["renderingSessionSettings"]["remoteRenderingDomain"] == "127.0.0.1:8443"
    assert sample["assetConversionSettings"]["storageAccountName"] == "devstoreaccount1"
    model = REPO / sample["assetConversionSettings"]["localAssetDirectoryPath"]
    assert (model / sample["assetConversionSettings"]["inputAssetPath"]).is_file()


def test_a_session_from_the_sample(service: Service) -> None:
    created = openrr_cli(
        "session", "create", "--config", str(SAMPLE), "--wait", "--json", env=account_env(service)
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    doc = json.loads(created.stdout)
    try:
        assert doc["status"] == "Ready"
        assert doc["maxLeaseTimeMinutes"] == 30  # the sample's maxLeaseTime 0:30:00
    finally:
        stopped = openrr_cli("session", "stop", "--config", str(SAMPLE), "--id", doc["id"], env=account_env(service))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_a_conversion_from_the_sample(service: Service, blob: Azurite) -> None:
    env = {**account_env(service), "AZURE_STORAGE_CONNECTION_STRING": blob.connection_string}
    converted = openrr_cli("convert", "--config", str(SAMPLE), "--poll-interval", "0.2", env=env)
    assert converted.returncode == 0, converted.stdout + converted.stderr
    assert "cube/cube.obj" in blobs(blob, "arrinput")
    names = set(blobs(blob, "arroutput"))
    assert {"converted/cube.arrAsset", "converted/cube.result.json", "converted/cube.info.json"} <= names
    url = converted.stdout.strip().splitlines()[-1]
    model = read_asset(httpx.get(url).content, "cube.arrAsset")
    assert model.triangles == 12
