"""The official Azure SDK converts models held in a real Azurite, and a session renders the result."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from azure.mixedreality.remoterendering import (
    AssetConversionInputSettings,
    AssetConversionOutputSettings,
    AssetConversionStatus,
)

from openrr.client.render_session import RenderSessionClient
from tests.azurite import Azurite, azurite_available
from tests.conversions import (
    API,
    blob_sas_url,
    blobs,
    container_sas,
    container_uri,
    new_container,
    result_entries,
    upload,
    wait_conversion,
    write_obj_model,
)
from tests.harness import Service, create_account, openrr, ready_session
from tests.models import write_models

pytestmark = pytest.mark.skipif(
    azurite_available() is not None and not os.environ.get("CI"), reason=str(azurite_available())
)
BACKGROUND = np.array([0.12, 0.12, 0.14]) * 255


@dataclass(frozen=True)
class Converted:
    input_container: str
    output_container: str
    results: dict[str, Any]
    """Conversion id → the SDK's AssetConversion."""
    ids: dict[str, str]
    """Model kind (glb, obj) → conversion id."""


@pytest.fixture(scope="module")
def converted(service: Service, blob: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """A GLB and an OBJ+MTL+texture, uploaded with azure-storage-blob and converted through the SDK (SAS mode)."""
    models = write_models(tmp_path_factory.mktemp("models"))
    obj = write_obj_model(tmp_path_factory.mktemp("obj"))
    source, target = new_container(blob, "in"), new_container(blob, "out")
    upload(
        blob,
        source,
        {
            "scenes/sphere.glb": models["sphere"],
            "crate/crate.obj": obj["obj"],
            "crate/crate.mtl": obj["mtl"],
            "crate/crate.png": obj["png"],
        },
    )
    client = service.sdk()
    run = uuid.uuid4().hex[:8]
    jobs = {
        "glb": (f"sdk-glb-{run}", "scenes", "sphere.glb"),
        "obj": (f"sdk-obj-{run}", "crate", "crate.obj"),
    }
    pollers = {
        cid: client.begin_asset_conversion(
            conversion_id=cid,
            input_settings=AssetConversionInputSettings(
                storage_container_uri=container_uri(blob, source),
                storage_container_read_list_sas=container_sas(source, "rl"),
                blob_prefix=prefix,  # no trailing '/': the service adds it
                relative_input_asset_path=path,
            ),
            output_settings=AssetConversionOutputSettings(
                storage_container_uri=container_uri(blob, target),
                storage_container_write_sas=container_sas(target, "w"),
                blob_prefix=f"out-{cid}",
            ),
        )
        for cid, prefix, path in jobs.values()
    }
    results = {cid: poller.result(timeout=120) for cid, poller in pollers.items()}
    for cid, poller in pollers.items():
        assert poller.done(), f"conversion {cid} did not end within 120 s"
    return Converted(source, target, results, {kind: job[0] for kind, job in jobs.items()})


def test_sdk_conversions_succeed_with_arr_normalised_settings(converted: Converted, blob: Azurite) -> None:
    for kind, cid in converted.ids.items():
        conversion = converted.results[cid]
        assert conversion.status == AssetConversionStatus.SUCCEEDED, conversion.error
        assert conversion.error is None and conversion.created_on is not None
        name = {"glb": "sphere", "obj": "crate"}[kind]
        out = conversion.settings.output_settings
        assert out.blob_prefix == f"out-{cid}/" and out.output_asset_filename == f"{name}.arrAsset"
        assert out.storage_container_write_sas is None
        inp = conversion.settings.input_settings
        assert inp.blob_prefix == {"glb": "scenes/", "obj": "crate/"}[kind]
        assert inp.storage_container_read_list_sas is None
        expected = f"{container_uri(blob, converted.output_container)}/out-{cid}/{name}.arrAsset"
        assert conversion.output.asset_uri == expected


def test_output_blobs_exist_and_parse(converted: Converted, blob: Azurite) -> None:
    stored = blobs(blob, converted.output_container)
    for kind, cid in converted.ids.items():
        name = {"glb": "sphere", "obj": "crate"}[kind]
        prefix = f"out-{cid}/"
        assert {n for n in stored if n.startswith(prefix)} == {
            f"{prefix}{name}.arrAsset",
            f"{prefix}{name}.info.json",
            f"{prefix}{name}.result.json",
        }
        assert len(stored[f"{prefix}{name}.arrAsset"]) > 1000
        info = json.loads(stored[f"{prefix}{name}.info.json"])
        assert {"files", "inputInfo", "inputStatistics", "outputStatistics"} <= set(info)
        expected_faces = {"glb": 5120, "obj": 12}[kind]
        assert info["inputStatistics"]["numFaces"] == expected_faces
        entries = result_entries(stored[f"{prefix}{name}.result.json"])
        # The crate's texture was uploaded beside it: nothing to warn about.
        assert entries[-1] == {"result": "succeeded"}, entries


def test_list_asset_conversions_finds_them(service: Service, converted: Converted) -> None:
    listed = {c.id: c for c in service.sdk().list_asset_conversions()}
    for cid in converted.ids.values():
        assert listed[cid].status == AssetConversionStatus.SUCCEEDED
        assert listed[cid].output.asset_uri == converted.results[cid].output.asset_uri


def test_session_renders_the_converted_asset_by_sas_url(service: Service, converted: Converted, blob: Azurite) -> None:
    cid = converted.ids["glb"]
    url = blob_sas_url(blob, converted.output_container, f"out-{cid}/sphere.arrAsset")

    async def scenario(doc: dict[str, Any]) -> None:
        async with await RenderSessionClient.connect(
            doc["hostname"], doc["handshakePort"], service.token(), ca=service.cert
        ) as client:
            loaded = await client.load_model(url)
            assert loaded["triangles"] == 5120 and loaded["name"] == "sphere.arrAsset"
            assert "sig=" not in loaded["source"]
            cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0), fov_y=60)
            frame = await client.next_frame(after_command=cmd)
            h, w, _ = frame.image.shape
            centre = frame.image[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].astype(float).mean(axis=(0, 1))
            corner = frame.image[:20, :20].astype(float).mean(axis=(0, 1))
            assert np.abs(corner - BACKGROUND).max() < 12, "the corner should show the background"
            assert np.abs(centre - BACKGROUND).max() > 40, "the sphere should fill the middle of the picture"

    with ready_session(service, "conv-render") as doc:
        asyncio.run(scenario(doc))


def test_linked_storage_converts_without_sas_in_both_apis(service: Service, blob: Azurite, tmp_path: Path) -> None:
    """ARR's linked storage: the account holds the storage key (`openrr account link-storage`), requests no SAS."""
    account = create_account(service.data_dir)
    aid, key = account["accountId"], account["primaryKey"]
    models = write_models(tmp_path / "models")
    source, target = new_container(blob, "lin"), new_container(blob, "lout")
    upload(blob, source, {"sphere.glb": models["sphere"]})

    client = service.sdk(account_id=aid, key=key)
    inp = AssetConversionInputSettings(
        storage_container_uri=container_uri(blob, source), relative_input_asset_path="sphere.glb"
    )
    out = AssetConversionOutputSettings(storage_container_uri=container_uri(blob, target))
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as unlinked:
        client.begin_asset_conversion(conversion_id="linked-before", input_settings=inp, output_settings=out)
    assert unlinked.value.status_code == 403 and unlinked.value.error.code == "DelegatedResourceAccessError"

    linked = openrr(
        "account",
        "link-storage",
        aid,
        "--connection-string",
        blob.connection_string,
        "--json",
        data_dir=service.data_dir,
    )
    assert json.loads(linked.stdout) == [{"storageAccount": "devstoreaccount1", "blobEndpoint": blob.blob_endpoint}]
    listed = openrr("account", "storage-links", aid, data_dir=service.data_dir).stdout
    assert blob.blob_endpoint in listed and "Eby8" not in listed  # the key is never shown again

    done = client.begin_asset_conversion(conversion_id="linked", input_settings=inp, output_settings=out).result(120)
    assert done.status == AssetConversionStatus.SUCCEEDED, done.error
    assert f"{target}/sphere.arrAsset" in done.output.asset_uri

    # v1's `create` (no SAS) names containers by storage account: the link supplies the endpoint.
    with service.api(aid, key) as api:
        r = api.post(
            f"/v1/accounts/{aid}/conversions/create",
            json={
                "input": {
                    "storageAccountName": "devstoreaccount1",
                    "blobContainerName": source,
                    "inputAssetPath": "sphere.glb",
                },
                "output": {"storageAccountName": "devstoreaccount1", "blobContainerName": target, "folderPath": "v1"},
            },
        )
        assert r.status_code == 202, r.text
        v1_id = r.json()["conversionId"]
        assert r.headers["location"].endswith(f"/v1/accounts/{aid}/conversions/{v1_id}")
        wait_conversion(api, aid, v1_id, "Succeeded")
        v1 = api.get(f"/v1/accounts/{aid}/conversions/{v1_id}").json()
        assert v1["status"] == "Success" and v1["error"] is None
        assert v1["convertedAsset"] == {
            "storageAccountName": "devstoreaccount1",
            "blobContainerName": target,
            "assetFilePath": "v1/sphere.arrAsset",
        }
        assert api.get(f"/accounts/{aid}/conversions/{v1_id}", params=API).json()["status"] == "Succeeded"
    assert {"v1/sphere.arrAsset", "v1/sphere.result.json", "sphere.arrAsset"} <= set(blobs(blob, target))
