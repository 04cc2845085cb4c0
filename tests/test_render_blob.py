"""Models loaded from Azure Blob storage by SAS URL, against a real Azurite."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from openrr.client.render_session import RenderSessionClient, SessionError
from tests.azurite import ACCOUNT, KEY, Azurite, azurite_available
from tests.harness import Service, wait_status
from tests.models import write_models

# CI installs Azurite (`npm install` in .ci/run); skipping is only for a developer machine without it, and says why.
pytestmark = pytest.mark.skipif(
    azurite_available() is not None and not os.environ.get("CI"), reason=str(azurite_available())
)
API = {"api-version": "2021-01-01"}


def _sas_url(az: Azurite, container: str, name: str, permission: str = "r") -> str:
    sas = generate_blob_sas(
        ACCOUNT,
        container,
        name,
        account_key=KEY,
        permission=BlobSasPermissions.from_string(permission),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    return f"{az.blob_endpoint}/{container}/{name}?{sas}"


def test_session_loads_a_model_by_sas_url(service: Service, blob: Azurite, tmp_path: Path) -> None:
    models = write_models(tmp_path / "models")
    container = f"models{uuid.uuid4().hex[:8]}"
    client = BlobServiceClient.from_connection_string(blob.connection_string)
    client.create_container(container)
    with open(models["sphere"], "rb") as f:
        client.get_blob_client(container, "scenes/sphere.glb").upload_blob(f)
    good = _sas_url(blob, container, "scenes/sphere.glb")
    forged = good.replace("sig=", "sig=AAAA")

    sid = f"blob-{uuid.uuid4().hex[:8]}"
    with service.api() as api:
        r = api.put(
            f"/accounts/{service.account_id}/sessions/{sid}",
            params=API,
            json={"maxLeaseTimeMinutes": 5, "size": "Standard"},
        )
        assert r.status_code == 201
        doc = wait_status(api, service.account_id, sid, "Ready")
        try:
            asyncio.run(_load(service, doc, good, forged))
        finally:
            api.post(f"/accounts/{service.account_id}/sessions/{sid}/:stop", params=API)
    # The SAS URL went to the render server; its signature must not come back out through a log (httpx logs
    # every request's URL at INFO).
    render_logs = sorted((service.data_dir / "logs").glob("render-*.log"))
    assert render_logs
    for log in render_logs:
        assert "sig=" not in log.read_text(errors="replace"), f"a SAS signature in {log}"


async def _load(service: Service, doc: dict[str, Any], good: str, forged: str) -> None:
    async with await RenderSessionClient.connect(
        doc["hostname"], doc["handshakePort"], service.token(), ca=service.cert
    ) as client:
        with pytest.raises(SessionError) as denied:
            await client.load_model(forged)
        assert denied.value.code == "ModelLoadFailed" and "403" in denied.value.message
        assert "sig=" not in denied.value.message  # SAS tokens are never echoed
        loaded = await client.load_model(good)
        assert loaded["triangles"] == 5120 and loaded["name"] == "sphere.glb"
        assert "sig=" not in loaded["source"]
        cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0))
        frame = await client.next_frame(after_command=cmd)
        centre = frame.image[350:370, 630:650].astype(float).mean(axis=(0, 1))
        assert abs(centre - [31, 31, 36]).max() > 40, "the model should be in the middle of the picture"
