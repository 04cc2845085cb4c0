"""Helpers for the conversion tests: containers in a real Azurite, SAS tokens, models, and waiting on jobs."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_blob_sas, generate_container_sas
from PIL import Image

from tests.azurite import ACCOUNT, KEY, Azurite
from tests.harness import wait_for

API = {"api-version": "2021-01-01"}


def new_container(az: Azurite, prefix: str = "c") -> str:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    BlobServiceClient.from_connection_string(az.connection_string).create_container(name)
    return name


def upload(az: Azurite, container: str, files: dict[str, Path | bytes]) -> None:
    client = BlobServiceClient.from_connection_string(az.connection_string).get_container_client(container)
    for name, data in files.items():
        client.upload_blob(name, data.read_bytes() if isinstance(data, Path) else data, overwrite=True)


def blobs(az: Azurite, container: str) -> dict[str, bytes]:
    client = BlobServiceClient.from_connection_string(az.connection_string).get_container_client(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def container_uri(az: Azurite, container: str) -> str:
    return f"{az.blob_endpoint}/{container}"


def container_sas(container: str, permission: str) -> str:
    return "?" + generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
        permission=ContainerSasPermissions.from_string(permission),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


def blob_sas_url(az: Azurite, container: str, name: str) -> str:
    sas = generate_blob_sas(
        ACCOUNT,
        container,
        name,
        account_key=KEY,
        permission="r",
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    return f"{az.blob_endpoint}/{container}/{name}?{sas}"


def write_obj_model(root: Path) -> dict[str, Path]:
    """A unit cube as OBJ + MTL + PNG texture (pure red), written by hand so that every reference is known."""
    root.mkdir(parents=True, exist_ok=True)
    corners = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = ["mtllib crate.mtl", *(f"v {x} {y} {z}" for x, y, z in corners)]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "usemtl crate"]
    for a, b, c, d in faces:
        lines += [f"f {a + 1}/1 {b + 1}/2 {c + 1}/3", f"f {a + 1}/1 {c + 1}/3 {d + 1}/4"]
    paths = {"obj": root / "crate.obj", "mtl": root / "crate.mtl", "png": root / "crate.png"}
    paths["obj"].write_text("\n".join(lines) + "\n")
    paths["mtl"].write_text("newmtl crate\nKd 1 1 1\nmap_Kd crate.png\n")
    Image.new("RGB", (8, 8), (230, 20, 20)).save(paths["png"])
    return paths


def conversion_doc(api: httpx.Client, account: str, cid: str) -> dict[str, Any]:
    r = api.get(f"/accounts/{account}/conversions/{cid}", params=API)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def wait_conversion(api: httpx.Client, account: str, cid: str, status: str, timeout: float = 90) -> dict[str, Any]:
    """Poll until the conversion ends; fail at once if it ends otherwise than `status`."""

    def probe() -> dict[str, Any] | None:
        doc = conversion_doc(api, account, cid)
        if doc["status"] in ("Succeeded", "Failed", "Cancelled"):
            assert doc["status"] == status, json.dumps(doc, indent=2)
            return doc
        return None

    return wait_for(probe, timeout, f"conversion {cid} to be {status}", interval=0.2)


def result_entries(data: bytes) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(data)
    assert isinstance(entries, list) and "conversionId" in entries[0], entries
    assert sum(1 for e in entries if "result" in e) == 1 and "result" in entries[-1], entries
    return entries
