"""What a conversion is asked to do, normalised the way ARR normalised it.

Prefixes gain a trailing `/`, a missing output file name becomes `<input base name>.arrAsset`, and SAS tokens
are kept apart from the settings so that they are never echoed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from openrr.protocol.storage_uri import ContainerUri, parse_container_uri

ASSET_SUFFIX = ".arrAsset"
MAX_URI = 2048
MAX_BLOB_PATH = 1024
MAX_SAS = 4096
Access = Literal["sas", "linked", "local"]


class InvalidSetting(ValueError):
    def __init__(self, target: str, message: str) -> None:
        super().__init__(message)
        self.target = target
        self.message = message


@dataclass(frozen=True)
class InputLocation:
    container: ContainerUri
    relative_input_asset_path: str
    blob_prefix: str
    """'' for the whole container; otherwise ends with '/'."""
    sas: str | None = None

    @property
    def access(self) -> Access:
        return _access(self.container, self.sas)


@dataclass(frozen=True)
class OutputLocation:
    container: ContainerUri
    output_asset_filename: str
    blob_prefix: str
    sas: str | None = None

    @property
    def access(self) -> Access:
        return _access(self.container, self.sas)

    @property
    def asset_blob(self) -> str:
        return self.blob_prefix + self.output_asset_filename

    @property
    def asset_uri(self) -> str:
        return f"{self.container.uri}/{self.asset_blob}"


@dataclass(frozen=True)
class ConversionRequest:
    input: InputLocation
    output: OutputLocation

    @property
    def access(self) -> str:
        return f"{self.input.access}/{self.output.access}"

    def settings_doc(self) -> dict[str, Any]:
        """The settings as ARR echoed them: normalised, without SAS tokens."""
        inp: dict[str, Any] = {"storageContainerUri": self.input.container.uri}
        if self.input.blob_prefix:
            inp["blobPrefix"] = self.input.blob_prefix
        inp["relativeInputAssetPath"] = self.input.relative_input_asset_path
        out: dict[str, Any] = {"storageContainerUri": self.output.container.uri}
        if self.output.blob_prefix:
            out["blobPrefix"] = self.output.blob_prefix
        out["outputAssetFilename"] = self.output.output_asset_filename
        return {"inputLocation": inp, "outputLocation": out}

    def settings_json(self) -> str:
        return json.dumps(self.settings_doc(), separators=(",", ":"))

    def secrets_json(self) -> str | None:
        if not self.input.sas and not self.output.sas:
            return None
        return json.dumps({"input": self.input.sas, "output": self.output.sas})

    @classmethod
    def restore(cls, settings_json: str, secrets_json: str | None) -> ConversionRequest:
        """From what the store keeps (already validated once)."""
        doc = json.loads(settings_json)
        sas = json.loads(secrets_json) if secrets_json else {}
        return build_request(doc["inputLocation"], doc["outputLocation"], sas.get("input"), sas.get("output"))


def build_request(
    inp: dict[str, Any], out: dict[str, Any], input_sas: str | None, output_sas: str | None
) -> ConversionRequest:
    """Normalise and check settings given with ARR's field names (strings or None)."""
    in_uri = _container("settings.inputLocation.storageContainerUri", inp.get("storageContainerUri"))
    out_uri = _container("settings.outputLocation.storageContainerUri", out.get("storageContainerUri"))
    relative = _blob_path(
        "settings.inputLocation.relativeInputAssetPath", inp.get("relativeInputAssetPath"), required=True
    )
    if relative.endswith("/"):
        raise InvalidSetting(
            "settings.inputLocation.relativeInputAssetPath",
            f"The relativeInputAssetPath '{relative}' names a folder; it must name the model file.",
        )
    filename = out.get("outputAssetFilename") or default_output_filename(relative)
    _check_filename(filename)
    return ConversionRequest(
        InputLocation(
            in_uri,
            relative,
            normalise_prefix("settings.inputLocation.blobPrefix", inp.get("blobPrefix")),
            _sas("settings.inputLocation.storageContainerReadListSas", input_sas),
        ),
        OutputLocation(
            out_uri,
            filename,
            normalise_prefix("settings.outputLocation.blobPrefix", out.get("blobPrefix")),
            _sas("settings.outputLocation.storageContainerWriteSas", output_sas),
        ),
    )


def default_output_filename(relative_input: str) -> str:
    """ARR's default: the input's base name with the asset suffix (`models/testBox.fbx` → `testBox.arrAsset`)."""
    return PurePosixPath(relative_input).stem + ASSET_SUFFIX


def normalise_prefix(target: str, value: str | None) -> str:
    if not value:
        return ""  # absent and "" both mean the container root (Conversion.ps1 sends "" when unset)
    _blob_path(target, value, required=False)
    return value if value.endswith("/") else value + "/"


def _access(container: ContainerUri, sas: str | None) -> Access:
    if container.is_local:
        return "local"
    return "sas" if sas else "linked"


def _container(target: str, value: str | None) -> ContainerUri:
    if not value:
        raise InvalidSetting(target, f"The '{target}' field is required.")
    if len(value) > MAX_URI:
        raise InvalidSetting(target, f"The storageContainerUri is {len(value)} characters long; at most {MAX_URI}.")
    try:
        return parse_container_uri(value)
    except ValueError as e:
        raise InvalidSetting(target, f"The storageContainerUri '{value[:200]}' is invalid: {e}.") from None


def _blob_path(target: str, value: str | None, required: bool) -> str:
    name = target.rsplit(".", 1)[-1]
    if not value:
        if required:
            raise InvalidSetting(target, f"The '{target}' field is required.")
        return ""
    if len(value) > MAX_BLOB_PATH:
        raise InvalidSetting(target, f"The {name} is {len(value)} characters long; at most {MAX_BLOB_PATH}.")
    if "\\" in value:
        raise InvalidSetting(target, f"The {name} '{value[:200]}' contains '\\'; separate folders with '/'.")
    if any(ord(c) < 32 for c in value):
        raise InvalidSetting(target, f"The {name} contains control characters.")
    parts = value.rstrip("/").split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidSetting(
            target, f"The {name} '{value[:200]}' is not a relative path: no leading '/', '.', '..' or empty folders."
        )
    return value


def _check_filename(filename: str) -> None:
    target = "settings.outputLocation.outputAssetFilename"
    if not filename.endswith(ASSET_SUFFIX):
        raise InvalidSetting(target, f"The outputAssetFilename '{filename[:200]}' must end in '{ASSET_SUFFIX}'.")
    if "/" in filename or "\\" in filename or filename == ASSET_SUFFIX:
        raise InvalidSetting(
            target, f"The outputAssetFilename '{filename[:200]}' must be a file name (folders go in blobPrefix)."
        )
    if len(filename) > 255 or any(ord(c) < 32 for c in filename):
        raise InvalidSetting(target, "The outputAssetFilename must be at most 255 printable characters.")


def _sas(target: str, value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > MAX_SAS:
        raise InvalidSetting(target, f"The SAS token is {len(value)} characters long; at most {MAX_SAS}.")
    return value
