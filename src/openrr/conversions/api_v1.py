"""The legacy v1 conversion API: another window onto the same jobs as the 2021 API.

v1 named containers by storage account and container name. A storage account linked to the openrr account
(`openrr account link-storage`) supplies its endpoint, so Azurite and other non-Azure endpoints work; any other
name means `https://<name>.blob.core.windows.net`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openrr.conversions import openapi as doc
from openrr.conversions.api_2021 import create
from openrr.conversions.api_deps import ConversionApiServices, conversion_services
from openrr.conversions.body import CreateConversionV1Body
from openrr.conversions.model import ConversionView
from openrr.conversions.request import InvalidSetting, build_request
from openrr.conversions.state import ConversionStatus
from openrr.http.body import read_json_object, validate_body
from openrr.http.errors import ArrError
from openrr.http.links import route_link
from openrr.http.paging import next_page_link, requested_after
from openrr.http.responses import ArrJSONResponse
from openrr.protocol.storage_uri import default_endpoint, parse_container_uri

router = APIRouter()
BASE = "/v1/accounts/{account_id}/conversions"
PAGE_SIZE = 50  # v1's documented page size
V1_STATUS = {
    ConversionStatus.NOT_STARTED: "Created",
    ConversionStatus.RUNNING: "Running",
    ConversionStatus.SUCCEEDED: "Success",
    ConversionStatus.FAILED: "Failure",
    ConversionStatus.CANCELLED: "Aborted",
}


class V1CreateError(ArrError):
    """v1 answered a refused create with a bare string: `{"error": "Unable to start conversion: ..."}`."""

    def body(self) -> dict[str, Any]:
        return {
            "error": f"Unable to start conversion: Invalid request - the following errors occurred:\n\t{self.message}"
        }


class V1ProblemDetails(ArrError):
    """A body that was not JSON got ASP.NET's problem-details object from v1."""

    def body(self) -> dict[str, Any]:
        return {
            "errors": {"$": [self.message]},
            "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
            "title": "One or more validation errors occurred.",
            "status": self.status,
            "traceId": f"|{uuid.uuid4().hex[:8]}.{uuid.uuid4().hex[:8]}.",
        }


def _authorize(
    request: Request, account_id: str, conversion_id: str | None = None
) -> tuple[ConversionApiServices, str]:
    services = conversion_services(request)
    return services, services.auth.authorize(request, account_id, "conversion", conversion_id, api_version=False)


async def _parse(request: Request, services: ConversionApiServices) -> CreateConversionV1Body:
    try:
        data = await read_json_object(request, services.settings.max_body_bytes)
    except ArrError as e:
        if e.status != 400:
            raise
        raise V1ProblemDetails(400, e.code, e.message) from e
    try:
        return validate_body(CreateConversionV1Body, data)
    except ArrError as e:
        raise V1CreateError(e.status, e.code, e.message, e.target) from e


_AZURE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(\$root|\$web|[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9])$")


def _container_uri(
    services: ConversionApiServices, account: str, storage_account: str, container: str, where: str
) -> str:
    endpoint = services.links.endpoint_of(account, storage_account)
    if endpoint is None:
        if not _AZURE_ACCOUNT.fullmatch(storage_account):
            raise V1CreateError(
                400,
                "BadRequest",
                f"The {where} storageAccountName '{storage_account[:64]}' is not a storage account name (3 to 24 "
                "lower-case letters and digits) and no storage account of that name is linked to this account.",
                f"{where}.storageAccountName",
            )
        endpoint = default_endpoint(storage_account)
    if not _CONTAINER.fullmatch(container):
        raise V1CreateError(
            400,
            "BadRequest",
            f"The {where} blobContainerName '{container[:64]}' is not a container name (3 to 63 lower-case letters, "
            "digits and single hyphens, starting and ending with a letter or digit).",
            f"{where}.blobContainerName",
        )
    return f"{endpoint}/{container}"


async def _create(request: Request, account_id: str, with_sas: bool) -> Response:
    services, account = _authorize(request, account_id)
    body = await _parse(request, services)
    if with_sas:
        for name, given in (
            ("input.containerReadListSas", body.input.containerReadListSas),
            ("output.containerWriteSas", body.output.containerWriteSas),
        ):
            if not given:
                raise V1CreateError(400, "BadRequest", f"The '{name}' field is required.", name)
    try:
        req = build_request(
            {
                "storageContainerUri": _container_uri(
                    services, account, body.input.storageAccountName, body.input.blobContainerName, "input"
                ),
                "blobPrefix": body.input.folderPath,
                "relativeInputAssetPath": body.input.inputAssetPath,
            },
            {
                "storageContainerUri": _container_uri(
                    services, account, body.output.storageAccountName, body.output.blobContainerName, "output"
                ),
                "blobPrefix": body.output.folderPath,
                "outputAssetFilename": body.output.outputAssetFileName,
            },
            body.input.containerReadListSas if with_sas else None,
            body.output.containerWriteSas if with_sas else None,
        )
    except InvalidSetting as e:
        raise V1CreateError(400, "BadRequest", _v1_wording(e.message), e.target) from e
    conversion_id = str(uuid.uuid4())
    try:
        await create(services, account, conversion_id, req)
    except ArrError as e:
        if e.status != 400:
            raise
        raise V1CreateError(e.status, e.code, _v1_wording(e.message), e.target) from e
    base = services.settings.public_base
    location = route_link(base, request, "get_conversion_v1", account_id=account_id, conversion_id=conversion_id)
    return ArrJSONResponse({"conversionId": conversion_id}, status_code=202, headers={"Location": location})


def _v1_wording(message: str) -> str:
    """v1 called the fields by its own names."""
    for new, old in (
        ("relativeInputAssetPath", "inputAssetPath"),
        ("outputAssetFilename", "outputAssetFileName"),
        ("blobPrefix", "folderPath"),
        ("settings.inputLocation", "input"),
        ("settings.outputLocation", "output"),
    ):
        message = message.replace(new, old)
    return message


@router.post(BASE + "/create", **doc.create_v1(CreateConversionV1Body, "Create a conversion from linked storage (v1)"))
async def create_linked(request: Request, account_id: str) -> Response:
    return await _create(request, account_id, with_sas=False)


@router.post(
    BASE + "/createwithsharedaccesssignature",
    **doc.create_v1(doc.CreateConversionV1SasBody, "Create a conversion with SAS tokens (v1)"),
)
async def create_with_sas(request: Request, account_id: str) -> Response:
    return await _create(request, account_id, with_sas=True)


def v1_conversion(v: ConversionView) -> dict[str, Any]:
    converted = None
    if v.status is ConversionStatus.SUCCEEDED:
        out = v.settings["outputLocation"]
        uri = parse_container_uri(out["storageContainerUri"])
        converted = {
            "storageAccountName": uri.storage_account,
            "blobContainerName": uri.container,
            "assetFilePath": out.get("blobPrefix", "") + out["outputAssetFilename"],
        }
    return {
        "conversionId": v.id,
        "status": V1_STATUS[v.status],
        "error": {"code": v.error_code, "message": v.error_message or ""} if v.error_code else None,
        "convertedAsset": converted,
        "progress": round(v.progress, 4),
    }


@router.get(BASE + "/{conversion_id}", name="get_conversion_v1", **doc.GET_V1)
async def get_conversion(request: Request, account_id: str, conversion_id: str) -> Response:
    services, account = _authorize(request, account_id, conversion_id)
    view = await services.db.read_async(services.conversions.get, account, conversion_id)
    return ArrJSONResponse(v1_conversion(view))


@router.get(BASE, **doc.LIST_V1)
async def list_conversions(request: Request, account_id: str) -> Response:
    services, account = _authorize(request, account_id)
    page = await services.db.read_async(services.conversions.list_page, account, PAGE_SIZE, requested_after(request))
    link = next_page_link(services.settings.public_base, request, page.next_after)
    return ArrJSONResponse({"conversions": [v1_conversion(v) for v in page.items], "@nextLink": link})
