"""The 2021-01-01 (and 2021-01-01-preview) conversion API, plus openrr's `:cancel` extension."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from openrr.accounts.service import AccountGone
from openrr.conversions import openapi as doc
from openrr.conversions.api_deps import ConversionApiServices, conversion_services
from openrr.conversions.body import CreateConversionBody
from openrr.conversions.codes import LINK_MISSING, LINK_MISSING_MESSAGE
from openrr.conversions.request import ConversionRequest, InvalidSetting, build_request
from openrr.conversions.serialize import conversion_json
from openrr.conversions.service import ConversionConflict, LinkedStorageMissing
from openrr.http.body import parse_body
from openrr.http.errors import ArrError, account_gone, bad_request
from openrr.http.paging import next_page_link, requested_after
from openrr.http.responses import ArrJSONResponse

router = APIRouter()
BASE = "/accounts/{account_id}/conversions"


def _authorize(
    request: Request, account_id: str, conversion_id: str | None = None
) -> tuple[ConversionApiServices, str]:
    services = conversion_services(request)
    return services, services.auth.authorize(request, account_id, "conversion", conversion_id)


def request_of(body: CreateConversionBody) -> ConversionRequest:
    inp, out = body.settings.inputLocation, body.settings.outputLocation
    try:
        return build_request(
            inp.model_dump(), out.model_dump(), inp.storageContainerReadListSas, out.storageContainerWriteSas
        )
    except InvalidSetting as e:
        raise bad_request(e.message, e.target) from e


def link_missing(e: LinkedStorageMissing) -> ArrError:
    detail = (
        f" (openrr: no storage account is linked to this account for {e.endpoint}; give a SAS token for the "
        f"{e.location}, or link the storage account with `openrr account link-storage`.)"
    )
    return ArrError(403, LINK_MISSING, LINK_MISSING_MESSAGE + detail, f"settings.{e.location}.storageContainerUri")


async def create(
    services: ConversionApiServices, account: str, conversion_id: str, req: ConversionRequest
) -> tuple[dict[str, object], bool]:
    """Shared by both API generations: the create, with its refusals as ArrErrors."""
    try:
        view, created = await run_in_threadpool(services.conversions.create, account, conversion_id, req)
    except ConversionConflict as e:
        raise ArrError(409, "Conflict", "A resource already exists under the given ID.", "conversionId") from e
    except LinkedStorageMissing as e:
        raise link_missing(e) from e
    except InvalidSetting as e:
        raise bad_request(e.message, e.target) from e
    except AccountGone as e:
        raise account_gone() from e
    return conversion_json(view), created


@router.put(BASE + "/{conversion_id}", **doc.create_2021(CreateConversionBody))
async def create_conversion(request: Request, account_id: str, conversion_id: str) -> Response:
    services, account = _authorize(request, account_id, conversion_id)
    body = await parse_body(request, CreateConversionBody, services.settings.max_body_bytes)
    doc, created = await create(services, account, conversion_id, request_of(body))
    return ArrJSONResponse(doc, status_code=201 if created else 200)


@router.get(BASE + "/{conversion_id}", **doc.GET_2021)
async def get_conversion(request: Request, account_id: str, conversion_id: str) -> Response:
    services, account = _authorize(request, account_id, conversion_id)
    view = await services.db.read_async(services.conversions.get, account, conversion_id)
    return ArrJSONResponse(conversion_json(view))


@router.post(BASE + "/{conversion_id}/:cancel", **doc.CANCEL_2021)
async def cancel_conversion(request: Request, account_id: str, conversion_id: str) -> Response:
    """openrr's extension: ARR had no cancel operation (though its RBAC had `convert/delete`)."""
    services, account = _authorize(request, account_id, conversion_id)
    view = await run_in_threadpool(services.conversions.cancel, account, conversion_id)
    return ArrJSONResponse(conversion_json(view))


@router.get(BASE, **doc.LIST_2021)
async def list_conversions(request: Request, account_id: str) -> Response:
    services, account = _authorize(request, account_id)
    size = services.settings.list_page_size
    page = await services.db.read_async(services.conversions.list_page, account, size, requested_after(request))
    link = next_page_link(services.settings.public_base, request, page.next_after)
    # ARR sent an explicit null on the last page.
    return ArrJSONResponse({"conversions": [conversion_json(v) for v in page.items], "@nextLink": link})
