"""What `openrr convert` needs besides the account: arrconfig.json's `assetConversionSettings` and storage credentials,
merged as for sessions: flags > environment > file.

Conversion.ps1 found the storage account's key through Azure (`Connect-AzAccount`, `resourceGroup`); openrr cannot
use Azure AD, so the key comes as a connection string or an account key (the environment variable names are the
Azure CLI's). `resourceGroup` is read and ignored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from openrr.client.arrconfig import ArrConfig, ConfigError, is_filled
from openrr.client.errors import ClientError
from openrr.protocol.storage_uri import default_endpoint, normalise_endpoint, parse_connection_string

ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_STORAGE_ACCOUNT = "AZURE_STORAGE_ACCOUNT"
ENV_STORAGE_KEY = "AZURE_STORAGE_KEY"
SECTION = "assetConversionSettings"

# (arrconfig.json key, flag): Conversion.ps1's parameter names, in kebab case.
FIELDS = {
    "resourceGroup": "--resource-group",
    "storageAccountName": "--storage-account-name",
    "blobInputContainerName": "--blob-input-container-name",
    "blobOutputContainerName": "--blob-output-container-name",
    "localAssetDirectoryPath": "--local-asset-directory-path",
    "inputFolderPath": "--input-folder-path",
    "inputAssetPath": "--input-asset-path",
    "outputFolderPath": "--output-folder-path",
    "outputAssetFileName": "--output-asset-file-name",
}


class StorageFailure(ClientError):
    """A storage operation failed; the message says which and why, without credentials."""


def flag_dest(key: str) -> str:
    return FIELDS[key].removeprefix("--").replace("-", "_")


@dataclass(frozen=True)
class StorageAccount:
    name: str
    blob_endpoint: str
    """No trailing `/`: `https://NAME.blob.core.windows.net`, or e.g. Azurite's `http://127.0.0.1:10000/NAME`."""
    key: str | None
    """The shared key: needed to upload and to sign SAS tokens; linked storage needs none."""

    def container_uri(self, container: str) -> str:
        return f"{self.blob_endpoint}/{container}"


@dataclass(frozen=True)
class ConversionPlan:
    """Everything the requested actions need, resolved; None where an action that was not asked for needs it."""

    storage: StorageAccount | None
    input_container: str | None
    output_container: str | None
    local_path: Path | None
    input_folder: str
    """'' or ending in '/' (Conversion.ps1 added the '/' client-side)."""
    input_asset_path: str | None
    output_folder: str
    output_asset_filename: str
    use_sas: bool
    """Container SAS tokens (-UseContainerSas) or linked storage (-UseConnectedStorageAccount)."""

    def local_files(self) -> list[tuple[Path, str]]:
        """(file, blob name) for every file to upload: the directory's files at any depth, or the one file."""
        assert self.local_path is not None
        if self.local_path.is_file():
            return [(self.local_path, self.input_folder + self.local_path.name)]
        files = sorted(p for p in self.local_path.rglob("*") if p.is_file())
        return [(p, self.input_folder + p.relative_to(self.local_path).as_posix()) for p in files]


def load_asset_settings(config: ArrConfig | None) -> dict[str, str]:
    """The filled-in values of the file's assetConversionSettings (arrconfig.py already checked the file parses)."""
    if config is None:
        return {}
    doc = json.loads(config.path.read_text(encoding="utf-8-sig"))
    section = doc.get(SECTION) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        return {}
    return {k: v.strip() for k, v in section.items() if k in FIELDS and is_filled(v)}


def read_secret(value: str | None) -> str | None:
    """`-` reads the value from stdin, keeping it off the process list (as `openrr account link-storage` does)."""
    return sys.stdin.readline().strip() if value == "-" else value


class _Resolver:
    def __init__(self, args: Any, env: Mapping[str, str], config: ArrConfig | None) -> None:
        self.args = args
        self.env = env
        self.config = config
        self.file = load_asset_settings(config)
        self.problems: list[str] = []

    def value(self, key: str, env: str | None = None) -> str | None:
        for candidate in (getattr(self.args, flag_dest(key), None), self.env.get(env) if env else None):
            if is_filled(candidate):
                return candidate.strip()
        return self.file.get(key)

    def missing(self, key: str, env: str | None = None, extra: str = "") -> None:
        places = [f"pass {FIELDS[key]}"]
        if env:
            places.append(f"set {env}")
        where = f"{SECTION}.{key}"
        places.append(f"fill in {where} in {self.config.path}" if self.config else f"set {where} in an arrconfig.json")
        self.problems.append(f"{where} not filled in - {', '.join(places[:-1])} or {places[-1]}{extra}")


def _folder(text: str | None, key: str, problems: list[str]) -> str:
    if not text:
        return ""
    folder = text.replace("\\", "/").strip("/")
    if any(part in ("..", ".") for part in folder.split("/")):
        problems.append(f"{SECTION}.{key} '{text}' must not contain '.' or '..' parts")
    return folder + "/" if folder else ""


def resolve_plan(
    args: Any, env: Mapping[str, str], config: ArrConfig | None, *, upload: bool, start: bool, sign: bool
) -> ConversionPlan:
    """Resolve what `upload` and/or `start` need (`sign`: a key is wanted for the output's SAS URL if there is one);
    every problem is reported at once, as Conversion.ps1's Verify* functions did."""
    r = _Resolver(args, env, config)
    problems = r.problems
    storage = _storage(r, required=upload or start, key_required=upload) if (upload or start or sign) else None

    use_sas = bool(storage and storage.key)
    if getattr(args, "use_container_sas", None):
        use_sas = True
        if start and storage is not None and storage.key is None:
            problems.append(
                f"--use-container-sas needs the storage account's key to sign SAS tokens - pass "
                f"--storage-connection-string or --storage-account-key, or set {ENV_CONNECTION_STRING}"
            )
    if getattr(args, "use_linked_storage", None):
        use_sas = False

    input_container = output_container = input_asset = None
    local_path: Path | None = None
    input_folder = _folder(r.value("inputFolderPath"), "inputFolderPath", problems)
    output_folder = _folder(r.value("outputFolderPath"), "outputFolderPath", problems)
    if upload or start:
        input_container = r.value("blobInputContainerName")
        if input_container is None:
            r.missing("blobInputContainerName")
        input_asset = r.value("inputAssetPath")
    if start:
        output_container = r.value("blobOutputContainerName")
        if output_container is None:
            r.missing("blobOutputContainerName")
    if upload:
        local_path, input_asset = _local(r, input_asset)
    if (upload or start) and input_asset is None and not any("localAssetDirectoryPath" in p for p in problems):
        r.missing("inputAssetPath", extra=" (the model's path under the input folder, e.g. house.fbx)")
    if input_asset is not None:
        input_asset = input_asset.replace("\\", "/").lstrip("/")

    output_name = r.value("outputAssetFileName") or ""
    if output_name and (not output_name.endswith(".arrAsset") or "/" in output_name):
        problems.append(f"{SECTION}.outputAssetFileName '{output_name}' must be a file name ending in .arrAsset")
    if problems:
        raise ConfigError(problems)
    return ConversionPlan(
        storage, input_container, output_container, local_path, input_folder, input_asset, output_folder,
        output_name, use_sas,
    )  # fmt: skip


def _local(r: _Resolver, input_asset: str | None) -> tuple[Path | None, str | None]:
    text = r.value("localAssetDirectoryPath")
    if text is None:
        r.missing("localAssetDirectoryPath", extra=" (a model file, or the directory holding it and its textures)")
        return None, input_asset
    path = Path(text).expanduser()
    if path.is_file():
        # One file: it is the model, whatever inputAssetPath says, unless that names another file.
        if input_asset is not None and PurePosixPath(input_asset.replace("\\", "/")).name != path.name:
            r.problems.append(
                f"{SECTION}.inputAssetPath '{input_asset}' does not name the file {path} "
                "given as localAssetDirectoryPath"
            )
        return path, input_asset or path.name
    if not path.is_dir():
        r.problems.append(f"{SECTION}.localAssetDirectoryPath: {path} does not exist")
        return None, input_asset
    if input_asset is not None and not (path / input_asset).is_file():
        r.problems.append(
            f"{SECTION}.inputAssetPath: {path / input_asset} does not exist (inputAssetPath is relative to "
            f"localAssetDirectoryPath, as it is to inputFolderPath in the container)"
        )
    return path, input_asset


def _storage(r: _Resolver, *, required: bool, key_required: bool) -> StorageAccount | None:
    args = r.args
    problems = r.problems
    name = r.value("storageAccountName", ENV_STORAGE_ACCOUNT)
    endpoint = getattr(args, "blob_endpoint", None)
    key = None
    connection = read_secret(getattr(args, "storage_connection_string", None)) or r.env.get(ENV_CONNECTION_STRING)
    if is_filled(connection):
        try:
            cs_name, key, cs_endpoint = parse_connection_string(connection)
        except ValueError as e:
            problems.append(f"the storage connection string is not usable: {e}")
            return None
        if name is not None and name != cs_name:
            problems.append(
                f"the storage connection string is for the storage account '{cs_name}', but "
                f"{SECTION}.storageAccountName is '{name}'"
            )
        name = cs_name
        endpoint = endpoint or cs_endpoint
    flag_key = read_secret(getattr(args, "storage_account_key", None))
    key = flag_key if is_filled(flag_key) else key or (r.env.get(ENV_STORAGE_KEY) or None)

    if name is None:
        if required:
            also = f" (or pass --storage-connection-string / set {ENV_CONNECTION_STRING})"
            r.missing("storageAccountName", ENV_STORAGE_ACCOUNT, also)
        return None
    if key is None and key_required:
        problems.append(
            f"no key for the storage account '{name}' - pass --storage-connection-string or --storage-account-key "
            f"('-' reads it from stdin), or set {ENV_CONNECTION_STRING} or {ENV_STORAGE_KEY} (openrr cannot sign in "
            "to Azure as Conversion.ps1 did)"
        )
    try:
        blob_endpoint = normalise_endpoint(endpoint or default_endpoint(name))
    except ValueError as e:
        problems.append(f"--blob-endpoint: {e}")
        return None
    return StorageAccount(name, blob_endpoint, key)
