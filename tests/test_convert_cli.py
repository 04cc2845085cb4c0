"""`openrr convert ...` run as a user runs it: a subprocess talking HTTPS to a real `openrr serve` and HTTP to a real
Azurite, configured by ARR's arrconfig.json, the environment and flags."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from openrr.cli.toolkit import UploadProgress
from openrr.model.arrasset import read_asset
from tests.azurite import ACCOUNT, KEY, Azurite, azurite_available
from tests.conversions import blobs, container_uri, conversion_doc, new_container, upload
from tests.harness import Service, create_account, openrr, running_service
from tests.models import write_models
from tests.test_session_cli import write_arrconfig

pytestmark = pytest.mark.skipif(
    azurite_available() is not None and not os.environ.get("CI"), reason=str(azurite_available())
)
SAS_URL_LINE = re.compile(r"^(http\S+\?\S*sig=\S+)$", re.MULTILINE)


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Nothing from the runner's environment may leak in: no OPENRR_*, no storage credentials, no CA bundle.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENRR_", "AZURE_STORAGE_")) and k != "REQUESTS_CA_BUNDLE"
    }
    env.update(extra or {})
    return env


def cli(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openrr", "convert", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(env),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=180,
    )


def _cid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _account_env(svc: Service, account_id: str | None = None, key: str | None = None) -> dict[str, str]:
    return {
        "OPENRR_ACCOUNT_ID": account_id or svc.account_id,
        "OPENRR_ACCOUNT_KEY": key or svc.key,
        "OPENRR_ENDPOINT": svc.endpoint,
        "OPENRR_CA_CERT": svc.cert,
    }


def _sas_url(stdout: str) -> str:
    found = SAS_URL_LINE.findall(stdout)
    assert len(found) == 1, stdout
    assert stdout.rstrip().endswith(found[0]), "the SAS URL is the last line, ready to copy"
    return str(found[0])


def _model_dir(root: Path) -> Path:
    """A model directory as Conversion.ps1 uploaded it: the model plus files beside it, in sub-folders too."""
    models = write_models(root / "made")
    asset = root / "asset"
    (asset / "notes").mkdir(parents=True)
    (asset / "sphere.glb").write_bytes(models["sphere"].read_bytes())
    (asset / "notes" / "readme.txt").write_text("uploaded along with the model\n")
    return asset


# --- the whole flow ------------------------------------------------------------------------------


def test_default_flow_uploads_converts_and_prints_a_sas_url(service: Service, blob: Azurite, tmp_path: Path) -> None:
    asset = _model_dir(tmp_path)
    source, target = f"cin{uuid.uuid4().hex[:10]}", f"cout{uuid.uuid4().hex[:10]}"  # the CLI creates them
    config = write_arrconfig(
        tmp_path / "arrconfig.json",
        arrAccountId=service.account_id,
        arrAccountKey=service.key,
        arrAccountDomain=service.endpoint,
        remoteRenderingDomain=service.endpoint,
        storageAccountName=ACCOUNT,
        blobInputContainerName=source,
        blobOutputContainerName=target,
        localAssetDirectoryPath=str(asset),
        inputFolderPath="models\\sphere",  # a Windows user's folder path: the CLI makes it a blob prefix
        inputAssetPath="sphere.glb",
        outputFolderPath="converted",
    )
    cid = _cid("cli-conv")
    r = cli(
        "--config", config, "--ca-cert", service.cert, "--id", cid, "--poll-interval", "0.2",
        cwd=tmp_path, env={"AZURE_STORAGE_CONNECTION_STRING": blob.connection_string},
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr

    # Uploaded under inputFolderPath, sub-folders kept; progress shown as plain lines (no terminal here).
    assert set(blobs(blob, source)) == {"models/sphere/sphere.glb", "models/sphere/notes/readme.txt"}
    assert "Uploading 2 files" in r.stderr and "[2/2]" in r.stderr and "\r" not in r.stderr
    assert "Uploaded 2 file(s)" in r.stdout and f"Started conversion '{cid}'." in r.stdout
    assert f"Conversion '{cid}': Succeeded" in r.stderr
    assert "Conversion succeeded." in r.stdout

    with service.api() as api:
        doc = conversion_doc(api, service.account_id, cid)
    assert doc["status"] == "Succeeded"
    assert doc["settings"]["inputLocation"]["blobPrefix"] == "models/sphere/"
    asset_uri = f"{container_uri(blob, target)}/converted/sphere.arrAsset"
    assert doc["output"]["outputAssetUri"] == asset_uri
    assert re.search(rf"^\s+outputAssetUri:\s+{re.escape(asset_uri)}$", r.stdout, re.MULTILINE)

    url = _sas_url(r.stdout)
    assert url.startswith(asset_uri + "?") and "sp=r" in url
    assert httpx.get(asset_uri).status_code == 403  # the container is private: the SAS is what opens it
    got = httpx.get(url)
    assert got.status_code == 200, got.text
    model = read_asset(got.content, "sphere.arrAsset")
    assert model.triangles == 5120
    assert {"converted/sphere.arrAsset", "converted/sphere.result.json", "converted/sphere.info.json"} <= set(
        blobs(blob, target)
    )


def test_actions_one_by_one_with_env_and_json(service: Service, blob: Azurite, tmp_path: Path) -> None:
    asset = _model_dir(tmp_path)
    source, target = new_container(blob, "sin"), new_container(blob, "sout")
    env = {**_account_env(service), "AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_STORAGE_KEY": KEY}
    storage = [
        "--blob-endpoint", blob.blob_endpoint, "--blob-input-container-name", source,
        "--blob-output-container-name", target, "--input-asset-path", "sphere.glb",
    ]  # fmt: skip

    # upload needs no account: only storage.
    r = cli("upload", *storage, "--local-asset-directory-path", asset, "--json", cwd=tmp_path,
            env={k: v for k, v in env.items() if not k.startswith("OPENRR_")})  # fmt: skip
    assert r.returncode == 0, r.stderr
    uploaded = json.loads(r.stdout)
    assert uploaded["containerUri"] == container_uri(blob, source)
    assert sorted(uploaded["blobs"]) == ["notes/readme.txt", "sphere.glb"] and uploaded["bytes"] > 1000

    cid = _cid("cli-steps")
    r = cli("start", *storage, "--id", cid, "--output-folder-path", "out/", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    assert started["id"] == cid and started["status"] in ("NotStarted", "Running", "Succeeded")
    assert "storageContainerReadListSas" not in json.dumps(started)  # the service never echoes SAS tokens
    assert "(container SAS tokens)" in r.stderr

    r = cli("wait", cid, "--poll-interval", "0.2", "--json", "--storage-account-key", "-", cwd=tmp_path,
            env={k: v for k, v in env.items() if k != "AZURE_STORAGE_KEY"}, stdin=KEY + "\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    waited = json.loads(r.stdout)
    assert waited["status"] == "Succeeded" and waited["error"] is None
    assert waited["output"]["outputAssetUri"] == f"{container_uri(blob, target)}/out/sphere.arrAsset"
    assert httpx.get(waited["outputAssetSasUrl"]).status_code == 200

    r = cli("status", "--id", cid, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s+status:\s+Succeeded$", r.stdout, re.MULTILINE)
    assert httpx.get(_sas_url(r.stdout)).status_code == 200
    # Without a storage key, status still works; it just cannot sign a URL.
    r = cli("status", cid, "--json", cwd=tmp_path, env=_account_env(service))
    assert r.returncode == 0 and "outputAssetSasUrl" not in json.loads(r.stdout)

    # Cancelling an ended conversion changes nothing, and says so.
    r = cli("cancel", cid, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "already ended" in r.stdout and re.search(r"status:\s+Succeeded", r.stdout)

    r = cli("status", "no-such-conversion", cwd=tmp_path, env=env)
    assert r.returncode == 1 and "HTTP 404" in r.stderr and "MS-CV is '" in r.stderr


def test_cancel_and_timeout_while_not_started(base_dir: Path, blob: Azurite, tmp_path: Path) -> None:
    # A control plane without conversion workers: jobs stay NotStarted, so cancel and timeouts are deterministic.
    with running_service(base_dir / "convert-no-workers", "--conversion-workers", "0",
                         "--warm-pool", "Standard=0") as svc:  # fmt: skip
        source, target = new_container(blob, "nin"), new_container(blob, "nout")
        env = {**_account_env(svc), "AZURE_STORAGE_CONNECTION_STRING": blob.connection_string}
        storage = ["--blob-input-container-name", source, "--blob-output-container-name", target]
        cid = _cid("cli-cancel")
        r = cli("start", *storage, "--input-asset-path", "m.glb", "--id", cid, "--wait", "--timeout", "0.5",
                "--poll-interval", "0.1", cwd=tmp_path, env=env)  # fmt: skip
        assert r.returncode == 1
        assert "timed out after" in r.stderr and "is still NotStarted" in r.stderr
        assert f"openrr convert cancel {cid}" in r.stderr

        r = cli("cancel", cid, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert f"Cancelled conversion '{cid}'." in r.stdout
        assert re.search(r"error:\s+ConversionCancelled: ", r.stdout)

        r = cli("wait", cid, cwd=tmp_path, env=env)
        assert r.returncode == 1
        assert "Conversion cancelled." in r.stdout
        assert f"conversion '{cid}' Cancelled: ConversionCancelled: " in r.stderr
        assert SAS_URL_LINE.search(r.stdout) is None


def test_failed_conversion_exits_1_with_its_code(service: Service, blob: Azurite, tmp_path: Path) -> None:
    model = tmp_path / "model.txt"
    model.write_text("not a model format\n")
    env = {**_account_env(service), "AZURE_STORAGE_CONNECTION_STRING": blob.connection_string}
    source, target = new_container(blob, "fin"), new_container(blob, "fout")
    cid = _cid("cli-fail")
    r = cli(
        "--local-asset-directory-path", model, "--blob-input-container-name", source,
        "--blob-output-container-name", target, "--id", cid, "--poll-interval", "0.2", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert set(blobs(blob, source)) == {"model.txt"}  # a single file: inputAssetPath defaults to its name
    assert f"conversion '{cid}' Failed: ConversionProcessFailed: " in r.stderr and ".txt" in r.stderr
    assert "Conversion failed." in r.stdout and re.search(r"error:\s+ConversionProcessFailed: ", r.stdout)
    assert SAS_URL_LINE.search(r.stdout) is None
    assert "model.result.json" in blobs(blob, target)  # written on failure too

    r = cli("wait", cid, "--json", cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["code"] == "ConversionProcessFailed"


def test_linked_storage_needs_no_storage_key(service: Service, blob: Azurite, tmp_path: Path) -> None:
    account = create_account(service.data_dir)
    aid, key = account["accountId"], account["primaryKey"]
    models = write_models(tmp_path / "models")
    source, target = new_container(blob, "lkin"), new_container(blob, "lkout")
    upload(blob, source, {"sphere.glb": models["sphere"]})
    args = [
        "start", "--storage-account-name", ACCOUNT, "--blob-endpoint", blob.blob_endpoint,
        "--blob-input-container-name", source, "--blob-output-container-name", target,
        "--input-asset-path", "sphere.glb", "--wait", "--poll-interval", "0.2",
    ]  # fmt: skip
    env = _account_env(service, aid, key)

    r = cli(*args, cwd=tmp_path, env=env)  # no key: linked storage, which this account does not have yet
    assert r.returncode == 1
    assert "HTTP 403 DelegatedResourceAccessError" in r.stderr and "openrr account link-storage" in r.stderr

    openrr("account", "link-storage", aid, "--connection-string", blob.connection_string, data_dir=service.data_dir)
    r = cli(*args, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(linked storage)" in r.stderr and "no SAS URL" in r.stderr
    assert re.search(rf"outputAssetUri:\s+{re.escape(container_uri(blob, target))}/sphere.arrAsset$", r.stdout, re.M)
    assert SAS_URL_LINE.search(r.stdout) is None
    # With a key at hand, --use-linked-storage still sends no SAS (and the output's SAS URL is printed).
    r = cli(*args[:-3], "--use-linked-storage", "--id", _cid("cli-linked"), "--wait", cwd=tmp_path,
            env={**env, "AZURE_STORAGE_KEY": KEY})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "(linked storage)" in r.stderr and httpx.get(_sas_url(r.stdout)).status_code == 200


# --- bad settings --------------------------------------------------------------------------------


def test_unfilled_arrconfig_names_every_missing_setting(tmp_path: Path) -> None:
    template = write_arrconfig(tmp_path / "arrconfig.json")  # ARR's file as shipped: all placeholders
    r = cli("--config", template, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    for setting in (
        "accountSettings.arrAccountId",
        "accountSettings.arrAccountKey",
        "renderingSessionSettings.remoteRenderingDomain",
        "assetConversionSettings.storageAccountName",
        "assetConversionSettings.blobInputContainerName",
        "assetConversionSettings.blobOutputContainerName",
        "assetConversionSettings.localAssetDirectoryPath",
    ):
        assert f"{setting} not filled in" in r.stderr, r.stderr
    assert str(template) in r.stderr and "AZURE_STORAGE_CONNECTION_STRING" in r.stderr
    # upload needs only storage settings: the account's are not asked for.
    r = cli("upload", "--config", template, cwd=tmp_path)
    assert r.returncode == 2 and "accountSettings" not in r.stderr and "storageAccountName" in r.stderr


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"assetConversionSettings": {"storageAccountName": "a",}}')
    r = cli("upload", "--config", tmp_path / "broken.json", cwd=tmp_path)
    assert r.returncode == 2 and "could not parse config file" in r.stderr

    asset = tmp_path / "asset"
    asset.mkdir()
    (asset / "house.glb").write_bytes(b"glTF")
    config = write_arrconfig(
        tmp_path / "arrconfig.json",
        storageAccountName="mystorage",
        blobInputContainerName="in",
        blobOutputContainerName="out",
        localAssetDirectoryPath=str(asset),
        inputAssetPath="tower.glb",
        outputAssetFileName="tower.fbx",
    )
    r = cli("upload", "--config", config, cwd=tmp_path)
    assert r.returncode == 2
    assert f"{asset / 'tower.glb'} does not exist" in r.stderr
    assert "no key for the storage account 'mystorage'" in r.stderr and "--storage-connection-string" in r.stderr
    assert "outputAssetFileName 'tower.fbx' must be a file name ending in .arrAsset" in r.stderr

    # The connection string names another storage account than the file: refused rather than guessed.
    r = cli("upload", "--config", config, "--input-asset-path", "house.glb", cwd=tmp_path,
            env={"AZURE_STORAGE_CONNECTION_STRING": f"AccountName=other;AccountKey={KEY}"})  # fmt: skip
    assert r.returncode == 2
    assert "connection string is for the storage account 'other'" in r.stderr and "'mystorage'" in r.stderr
    r = cli("upload", "--config", config, "--local-asset-directory-path", tmp_path / "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "nowhere does not exist" in r.stderr
    r = cli("upload", "--config", config, "--storage-connection-string", "SharedAccessSignature=sv=x", cwd=tmp_path)
    assert r.returncode == 2 and "needs AccountName and AccountKey" in r.stderr
    r = cli("upload", "--config", config, "--input-folder-path", "a/../b", cwd=tmp_path)
    assert r.returncode == 2 and "must not contain '.' or '..' parts" in r.stderr

    r = cli("wait", "--account-id", str(uuid.uuid4()), "--account-key", "k", "--endpoint", "127.0.0.1:1",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "no conversion ID given" in r.stderr


def test_storage_errors_exit_1(service: Service, blob: Azurite, tmp_path: Path) -> None:
    asset = _model_dir(tmp_path)
    wrong_key = KEY[:-8] + "AAAAAAA="
    r = cli("upload", "--storage-account-name", ACCOUNT, "--storage-account-key", wrong_key,
            "--blob-endpoint", blob.blob_endpoint, "--blob-input-container-name", new_container(blob, "wk"),
            "--local-asset-directory-path", asset, "--input-asset-path", "sphere.glb", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 1
    assert "403" in r.stderr and "check the storage key" in r.stderr
    assert wrong_key not in r.stderr and "sig=" not in r.stderr


# --- pieces that need no server ------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_upload_progress_redraws_one_line_on_a_terminal() -> None:
    out = _Terminal()
    progress = UploadProgress(out)
    progress.start(2, 2048)
    progress.update(1, "a.glb", 512)
    progress.file_done(1, "a.glb", 1024, 1024)
    progress.update(2, "b.png", 2048)
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\rUploading 1/2:  25% of 2.0 KB (a.glb)\x1b[K" in text
    assert "\rUploading 2/2: 100% of 2.0 KB (b.png)\x1b[K" in text
