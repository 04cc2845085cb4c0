"""Request bodies of both API generations, checked field by field with messages that name the field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from openrr.http.validation import JsonString
from openrr.util.json_values import describe


def _optional_string(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}.")
    return value


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {describe(value)}.")
    return value


OptionalString = Annotated[str | None, BeforeValidator(_optional_string)]

# Published constraints (OpenAPI) that the handlers check themselves, with messages that name the field.
_CONTAINER_URI = Field(
    json_schema_extra={
        "pattern": "^(https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[^?#]+|file:///[^?#]+)$",
        "maxLength": 2048,
    }
)
_PATH = Field(json_schema_extra={"minLength": 1})
_STORAGE_ACCOUNT = Field(json_schema_extra={"pattern": "^[a-z0-9]{3,24}$"})
_CONTAINER_NAME = Field(json_schema_extra={"pattern": "^(\\$root|\\$web|[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9])$"})


class _Lenient(BaseModel):
    # Unknown keys are ignored: Conversion.ps1 merges -AdditionalParameters into `settings`.
    model_config = ConfigDict(extra="ignore")


class InputLocationBody(_Lenient):
    storageContainerUri: JsonString = _CONTAINER_URI
    storageContainerReadListSas: OptionalString = None
    blobPrefix: OptionalString = None
    relativeInputAssetPath: JsonString = _PATH


class OutputLocationBody(_Lenient):
    storageContainerUri: JsonString = _CONTAINER_URI
    storageContainerWriteSas: OptionalString = None
    blobPrefix: OptionalString = None
    outputAssetFilename: OptionalString = None


class SettingsBody(_Lenient):
    inputLocation: Annotated[InputLocationBody, BeforeValidator(_object)]
    outputLocation: Annotated[OutputLocationBody, BeforeValidator(_object)]


class CreateConversionBody(_Lenient):
    settings: Annotated[SettingsBody, BeforeValidator(_object)]


def remap_keys(value: Any, names: tuple[str, ...], aliases: dict[str, str] | None = None) -> Any:
    """Keys mapped case-insensitively onto `names`: v1 documents spelled them variously."""
    if not isinstance(value, dict):
        return value
    lookup = {n.lower(): n for n in names} | (aliases or {})
    return {lookup.get(k.lower(), k) if isinstance(k, str) else k: v for k, v in value.items()}


class V1InputBody(_Lenient):
    storageAccountName: JsonString = _STORAGE_ACCOUNT
    blobContainerName: JsonString = _CONTAINER_NAME
    folderPath: OptionalString = None
    inputAssetPath: JsonString = _PATH
    containerReadListSas: OptionalString = None

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return remap_keys(value, tuple(cls.model_fields))


class V1OutputBody(_Lenient):
    storageAccountName: JsonString = _STORAGE_ACCOUNT
    blobContainerName: JsonString = _CONTAINER_NAME
    folderPath: OptionalString = None
    outputAssetFileName: OptionalString = None
    containerWriteSas: OptionalString = None

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        # The v1 draft's example misspelled the file name's key.
        return remap_keys(value, tuple(cls.model_fields), {"outputasssetfilename": "outputAssetFileName"})


class CreateConversionV1Body(_Lenient):
    input: Annotated[V1InputBody, BeforeValidator(_object)]
    output: Annotated[V1OutputBody, BeforeValidator(_object)]
