"""Conversions that go wrong: bad storage access, bad input, and workers or control planes that die mid-job.

Every failure must end the job (never Running forever) with ARR's error code, a message saying precisely what
happened, and, wherever the output container can be written, the `<name>.result.json` that says it too.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trimesh
from azure.core.exceptions import HttpResponseError
from azure.mixedreality.remoterendering import AssetConversionInputSettings, AssetConversionOutputSettings

from tests.azurite import Azurite, azurite_available
from tests.conversions import (
    API,
    blobs,
    container_sas,
    container_uri,
    conversion_doc,
    new_container,
    result_entries,
    upload,
    wait_conversion,
)
from tests.harness import Service, free_port, process_gone, wait_for
from tests.models import write_models

needs_azurite = pytest.mark.skipif(
    azurite_available() is not None and not os.environ.get("CI"), reason=str(azurite_available())
)
ACCESS_DENIED = (
    "Access to the input blob container was denied. Invalid access rights or invalid shared access signature."
)


# --- storage and input faults, against Azurite ----------------------------------------------------


def _request(
    az: Azurite, source: str, in_sas: str, path: str, target: str, out_sas: str, prefix: str
) -> dict[str, Any]:
    return {
        "settings": {
            "inputLocation": {
                "storageContainerUri": container_uri(az, source) if "://" not in source else source,
                "storageContainerReadListSas": in_sas,
                "relativeInputAssetPath": path,
            },
            "outputLocation": {
                "storageContainerUri": container_uri(az, target),
                "storageContainerWriteSas": out_sas,
                "blobPrefix": prefix,
            },
        }
    }


@needs_azurite
def test_storage_and_input_faults_fail_precisely_and_leave_result_files(
    service: Service, blob: Azurite, tmp_path: Path
) -> None:
    models = write_models(tmp_path / "models")
    source, target = new_container(blob, "fin"), new_container(blob, "fout")
    upload(
        blob,
        source,
        {
            "sphere.glb": models["sphere"],
            "corrupt.glb": models["corrupt"],
            "notes.txt": b"not a model",
            "badjson/sphere.glb": models["sphere"],
            "badjson/sphere.ConversionSettings.json": b'{"scaling": 2,',
            "badkey/sphere.glb": models["sphere"],
            "badkey/sphere.ConversionSettings.json": json.dumps({"scale": 2}).encode(),
        },
    )
    read, write = container_sas(source, "rl"), container_sas(target, "w")
    forged = read.replace("sig=", "sig=AAAA")
    gone = f"http://127.0.0.1:{free_port()}/devstoreaccount1/{source}"  # nothing listens there
    run = uuid.uuid4().hex[:6]
    # id → (input container, its SAS, model path, output SAS, code, words the message must contain, result file?)
    cases: dict[str, tuple[str, str, str, str, str, list[str], bool]] = {
        f"bad-sas-{run}": (
            source, forged, "sphere.glb", write,
            "InputContainerAccessDenied", ["was refused (403 AuthorizationFailure"], True,
        ),
        f"no-container-{run}": (
            f"nosuch{run}", container_sas(f"nosuch{run}", "rl"), "sphere.glb", write,
            "InputContainerAccessDenied", ["the container does not exist (404 ContainerNotFound"], True,
        ),
        f"unreachable-{run}": (
            gone, read, "sphere.glb", write, "InputContainerAccessDenied", ["could not be reached"], True,
        ),
        f"missing-{run}": (
            source, read, "scenes/nope.glb", write, "InputContainerError",
            ["Could not find the asset file in the storage account.",
             "'scenes/nope.glb' does not exist in the container", "7 blobs are there", "sphere.glb"], True,
        ),
        f"corrupt-{run}": (source, read, "corrupt.glb", write, "ConversionProcessFailed", ["corrupt.glb"], True),
        f"extension-{run}": (
            source, read, "notes.txt", write, "ConversionProcessFailed", ["unsupported input format '.txt'"], True,
        ),
        f"settings-json-{run}": (
            source, read, "badjson/sphere.glb", write, "ConversionProcessFailed",
            ["badjson/sphere.ConversionSettings.json"], True,
        ),
        f"settings-key-{run}": (
            source, read, "badkey/sphere.glb", write, "ConversionProcessFailed",
            ["badkey/sphere.ConversionSettings.json", "scale"], True,
        ),
        f"bad-out-sas-{run}": (
            source, read, "sphere.glb", write.replace("sig=", "sig=AAAA"), "OutputContainerAccessDenied",
            ["Access to the output blob container was denied", "was refused (403 AuthorizationFailure"], False,
        ),
    }  # fmt: skip
    with service.api() as api:
        for cid, (src, in_sas, path, out_sas, *_rest) in cases.items():
            r = api.put(
                f"/accounts/{service.account_id}/conversions/{cid}",
                params=API,
                json=_request(blob, src, in_sas, path, target, out_sas, cid),
            )
            assert r.status_code == 201, r.text
        stored_after: dict[str, bytes] = {}
        for cid, (_src, _sas, path, _out, code, words, has_result) in cases.items():
            doc = wait_conversion(api, service.account_id, cid, "Failed", timeout=120)
            assert doc["error"]["code"] == code, doc
            message = doc["error"]["message"]
            for word in words:
                assert word in message, (cid, message)
            assert "sig=" not in message and "SharedKey" not in message, message
            assert "output" not in doc
            if cid.startswith("bad-sas"):
                assert message.startswith(ACCESS_DENIED), message  # ARR's words, then what storage said
            elif code == "InputContainerAccessDenied":
                assert not message.startswith(ACCESS_DENIED), message  # not blamed on the SAS when it isn't
            v1 = api.get(f"/v1/accounts/{service.account_id}/conversions/{cid}").json()
            assert v1["status"] == "Failure" and v1["error"]["code"] == code and v1["convertedAsset"] is None
            stored_after = blobs(blob, target)
            result_name = f"{cid}/{Path(path).stem}.result.json"
            assert (result_name in stored_after) == has_result, (cid, sorted(stored_after))
            if has_result:
                entries = result_entries(stored_after[result_name])
                assert entries[-1] == {"result": "failed"}
                errors = [e for e in entries if "error" in e]
                assert len(errors) == 1 and errors[0]["error"] == code, entries
            # A failed conversion leaves no asset behind.
            assert not any(n.startswith(f"{cid}/") and n.endswith(".arrAsset") for n in stored_after)


@needs_azurite
def test_sdk_poller_raises_the_failure(service: Service, blob: Azurite) -> None:
    source, target = new_container(blob, "pin"), new_container(blob, "pout")
    upload(blob, source, {"other.glb": b"glTF"})
    poller = service.sdk().begin_asset_conversion(
        conversion_id=f"sdk-fail-{uuid.uuid4().hex[:6]}",
        input_settings=AssetConversionInputSettings(
            storage_container_uri=container_uri(blob, source),
            storage_container_read_list_sas=container_sas(source, "rl"),
            relative_input_asset_path="missing.glb",
        ),
        output_settings=AssetConversionOutputSettings(
            storage_container_uri=container_uri(blob, target), storage_container_write_sas=container_sas(target, "w")
        ),
    )
    with pytest.raises(HttpResponseError) as failed:
        poller.result(timeout=60)
    assert failed.value.error.code == "InputContainerError"
    assert "'missing.glb' does not exist" in failed.value.error.message


# --- process faults: workers and control planes that die ------------------------------------------

FAST = [
    "--conversion-workers",
    "1",
    "--conversion-lease-s",
    "3",
    "--warm-pool",
    "Standard=0",
    "--rate-limit-per-s",
    "0",
    "--fetch-allow",  # Azurite listens on a loopback port
    "127.0.0.1",
]


def _worker_pids(job: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "openrr.conversions.worker" in cmd and job in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p.info["pid"])
    return found


def _local_job(svc: Service, cid: str) -> tuple[dict[str, Any], Path]:
    """A request converting a 330k-triangle sphere between file:// containers of the account's local storage."""
    area = svc.data_dir / "containers" / svc.account_id
    inp, out = area / "in", area / "out"
    inp.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if not (inp / "big.glb").exists():
        trimesh.creation.icosphere(subdivisions=7).export(inp / "big.glb")
    request = {
        "settings": {
            "inputLocation": {"storageContainerUri": inp.as_uri(), "relativeInputAssetPath": "big.glb"},
            "outputLocation": {"storageContainerUri": out.as_uri(), "blobPrefix": cid},
        }
    }
    return request, out / cid


def _start(api: httpx.Client, svc: Service, cid: str) -> tuple[int, Path]:
    """Create the job and return its worker's pid as soon as the worker exists (the job is then mid-way)."""
    request, out = _local_job(svc, cid)
    r = api.put(f"/accounts/{svc.account_id}/conversions/{cid}", params=API, json=request)
    assert r.status_code == 201, r.text
    pids = wait_for(lambda: _worker_pids(f"{svc.account_id}/{cid}"), 15, f"the worker of {cid}", interval=0.01)
    assert conversion_doc(api, svc.account_id, cid)["status"] == "Running"
    return pids[0], out


@pytest.fixture
def fast(base_dir: Path, request: pytest.FixtureRequest) -> Iterator[Service]:
    svc = Service(base_dir / f"conv-{request.node.name}", free_port(), FAST).start()
    try:
        yield svc
    finally:
        svc.stop()


def test_killed_worker_is_retried_once_then_fails(fast: Service) -> None:
    with fast.api() as api:
        pid, out = _start(api, fast, "killed-once")
        os.kill(pid, signal.SIGKILL)
        wait_conversion(api, fast.account_id, "killed-once", "Succeeded", timeout=60)
        assert (out / "big.arrAsset").is_file() and (out / "big.result.json").is_file()
        assert "killed by SIGKILL" in fast.log()

        first, _ = _start(api, fast, "killed-twice")
        os.kill(first, signal.SIGKILL)
        job = f"{fast.account_id}/killed-twice"
        second = wait_for(lambda: [p for p in _worker_pids(job) if p != first], 15, "the retry's worker", 0.01)[0]
        os.kill(second, signal.SIGKILL)
        doc = wait_conversion(api, fast.account_id, "killed-twice", "Failed", timeout=30)
        assert doc["error"]["code"] == "InternalServerError"
        assert doc["error"]["message"].startswith("The conversion worker process was killed by SIGKILL.")
        assert "interrupted 2 times" in doc["error"]["message"]
        assert not _worker_pids(job)


def test_control_plane_killed_mid_job_is_recovered_after_restart(fast: Service) -> None:
    with fast.api() as api:
        pid, out = _start(api, fast, "orphaned")
    fast.kill9()
    # The worker notices that its control plane is gone and stops by itself: nothing runs unsupervised.
    wait_for(lambda: process_gone(pid), 10, "the orphaned worker to exit")
    restarted = Service(fast.data_dir, fast.port, FAST, account_id=fast.account_id, key=fast.key).start()
    fast.proc = restarted.proc  # the fixture stops whichever runs
    with restarted.api() as api:
        # Taken over once its lease (3 s) ran out, and run again from the start.
        wait_conversion(api, restarted.account_id, "orphaned", "Succeeded", timeout=60)
    assert json.loads((out / "big.result.json").read_text())[-1] == {"result": "succeeded"}
    assert "conversion orphaned: attempt 2 starts" in restarted.log()


def test_clean_shutdown_hands_the_job_to_the_next_start(fast: Service) -> None:
    with fast.api() as api:
        pid, _ = _start(api, fast, "interrupted")
    assert fast.stop() == 0
    assert process_gone(pid)
    assert "handed 1 running conversions back" in fast.log()
    restarted = Service(fast.data_dir, fast.port, FAST, account_id=fast.account_id, key=fast.key).start()
    fast.proc = restarted.proc
    with restarted.api() as api:
        wait_conversion(api, restarted.account_id, "interrupted", "Succeeded", timeout=60)
    # Not counted as a failed attempt: the second start runs it as attempt 1 again.
    assert restarted.log().count("conversion interrupted: attempt 1 starts") == 2


def test_cancel_stops_a_running_worker(fast: Service) -> None:
    with fast.api() as api:
        pid, _ = _start(api, fast, "cancelled")
        r = api.post(f"/accounts/{fast.account_id}/conversions/cancelled/:cancel", params=API)
        assert r.status_code == 200 and r.json()["status"] == "Cancelled"
        wait_for(lambda: process_gone(pid), 10, "the cancelled job's worker to be stopped")
        # The runner does not overwrite the cancellation with a late outcome.
        wait_for(lambda: "cancelled or taken over" in fast.log(), 10, "the runner to notice")
        assert conversion_doc(api, fast.account_id, "cancelled")["status"] == "Cancelled"
