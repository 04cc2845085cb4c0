"""Published shapes of the conversion APIs (2021-01-01 and v1): documentation only, serialisation is by hand."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openrr.conversions.body import CreateConversionV1Body, V1InputBody, V1OutputBody
from openrr.http.openapi import (
    API_VERSION,
    LOCATION,
    SKIPTOKEN,
    data_plane_errors,
    error,
    json_body,
    operation,
)

ConversionStatusName = Literal["NotStarted", "Running", "Succeeded", "Failed", "Cancelled"]
V1StatusName = Literal["Created", "Running", "Success", "Failure", "Aborted"]


class ConversionError(BaseModel):
    code: str
    message: str


class InputLocation(BaseModel):
    """As echoed: normalised, never a SAS token."""

    storageContainerUri: str
    blobPrefix: str | None = None
    relativeInputAssetPath: str


class OutputLocation(BaseModel):
    storageContainerUri: str
    blobPrefix: str | None = None
    outputAssetFilename: str | None = None


class ConversionSettings(BaseModel):
    model_config = ConfigDict(title="conversion_settings")
    inputLocation: InputLocation
    outputLocation: OutputLocation


class ConversionOutput(BaseModel):
    outputAssetUri: str


class Conversion(BaseModel):
    """`conversion`, plus openrr's `progress` (0 to 1)."""

    model_config = ConfigDict(title="conversion")
    id: str
    creationTime: str = Field(json_schema_extra={"format": "date-time"})
    settings: ConversionSettings
    output: ConversionOutput | None = None
    error: ConversionError | None
    status: ConversionStatusName
    progress: float = Field(ge=0, le=1)


class ConversionList(BaseModel):
    model_config = ConfigDict(title="conversion_list")
    conversions: list[Conversion]
    nextLink: str | None = Field(alias="@nextLink")


class V1ConvertedAsset(BaseModel):
    storageAccountName: str | None
    blobContainerName: str | None
    assetFilePath: str


class V1Conversion(BaseModel):
    model_config = ConfigDict(title="v1_conversion")
    conversionId: str
    status: V1StatusName
    error: ConversionError | None
    convertedAsset: V1ConvertedAsset | None
    progress: float = Field(ge=0, le=1)


class V1ConversionList(BaseModel):
    model_config = ConfigDict(title="v1_conversion_list")
    conversions: list[V1Conversion]
    nextLink: str | None = Field(alias="@nextLink")


class V1ConversionCreated(BaseModel):
    conversionId: str


class V1CreateRefusal(BaseModel):
    """v1's refusal of a create: a bare sentence."""

    error: str


class V1ProblemDetails(BaseModel):
    """ASP.NET's problem details, v1's answer to a body that is not a JSON object."""

    errors: dict[str, list[str]]
    type: str
    title: str
    status: int
    traceId: str


class V1InputSasBody(V1InputBody):
    containerReadListSas: str = Field(min_length=1)  # type: ignore[assignment]


class V1OutputSasBody(V1OutputBody):
    containerWriteSas: str = Field(min_length=1)  # type: ignore[assignment]


class CreateConversionV1SasBody(CreateConversionV1Body):
    """The SAS variant's body, as published: its handler refuses a missing SAS with its own message."""

    input: V1InputSasBody  # type: ignore[assignment]
    output: V1OutputSasBody  # type: ignore[assignment]


_LINK = (
    "The token was issued for another account, or no SAS was given and no storage account is linked for the "
    "container (code DelegatedResourceAccessError)."
)


def create_2021(body: type[BaseModel]) -> dict[str, Any]:
    return operation(
        status=201,
        body=body,
        query=[API_VERSION],
        summary="Create a conversion (idempotent for the same settings)",
        responses={
            **data_plane_errors(body=True, not_found=False),
            200: json_body(Conversion, "A conversion with this ID and the same settings exists already."),
            201: json_body(Conversion, "Conversion created."),
            403: error(_LINK),
            409: error("A conversion with this ID exists with other settings."),
        },
    )


GET_2021 = operation(
    status=200,
    query=[API_VERSION],
    summary="Get a conversion",
    responses={**data_plane_errors(body=False, not_found=True), 200: json_body(Conversion, "The conversion.")},
)
CANCEL_2021 = operation(
    status=200,
    query=[API_VERSION],
    summary="Cancel a conversion (openrr's extension)",
    responses={**data_plane_errors(body=False, not_found=True), 200: json_body(Conversion, "The conversion.")},
)
LIST_2021 = operation(
    status=200,
    query=[API_VERSION, SKIPTOKEN],
    summary="List the conversions",
    responses={
        **data_plane_errors(body=False, not_found=False),
        200: json_body(ConversionList, "One page of conversions."),
    },
)


def create_v1(body: type[BaseModel], summary: str) -> dict[str, Any]:
    bad: dict[str, Any] = {
        "description": "Malformed request: ARR's error body, v1's bare sentence, or problem details for non-JSON.",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/ErrorResponse"},
                        {"$ref": "#/components/schemas/V1CreateRefusal"},
                        {"$ref": "#/components/schemas/V1ProblemDetails"},
                    ]
                }
            }
        },
    }
    return operation(
        status=202,
        body=body,
        summary=summary,
        responses={
            **data_plane_errors(body=True, not_found=False),
            202: json_body(V1ConversionCreated, "Conversion created; Location names it.", LOCATION),
            400: bad,
            403: error(_LINK),
        },
        extra_models=(V1CreateRefusal, V1ProblemDetails),
    )


GET_V1 = operation(
    status=200,
    summary="Get a conversion (v1)",
    responses={**data_plane_errors(body=False, not_found=True), 200: json_body(V1Conversion, "The conversion.")},
)
LIST_V1 = operation(
    status=200,
    query=[SKIPTOKEN],
    summary="List the conversions (v1, 50 a page)",
    responses={
        **data_plane_errors(body=False, not_found=False),
        200: json_body(V1ConversionList, "One page of conversions."),
    },
)
