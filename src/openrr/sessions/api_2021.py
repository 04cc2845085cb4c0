"""The 2021-01-01 (and 2021-01-01-preview) session API: HTTP in, SessionService calls, ARR's JSON out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.config import JsonDict
from starlette.concurrency import run_in_threadpool

from openrr.accounts.service import AccountGone
from openrr.http.body import parse_body
from openrr.http.errors import ArrError, account_gone, bad_request
from openrr.http.paging import next_page_link, requested_after
from openrr.http.responses import ArrJSONResponse
from openrr.http.validation import JsonString, WholeMinutes
from openrr.sessions import openapi as doc
from openrr.sessions.api_deps import SessionApiServices, session_services
from openrr.sessions.fast_start import after_create
from openrr.sessions.lease import MAX_LEASE_MINUTES, LeaseNotExtendable, create_refusal
from openrr.sessions.quotas import QuotaExceeded
from openrr.sessions.serialize import session_json
from openrr.sessions.service import SessionConflict
from openrr.sessions.state import SessionSize

router = APIRouter()
BASE = "/accounts/{account_id}/sessions"
# Published constraints only (the handlers check them, with ARR's wording): sizes are matched case-insensitively.
LEASE_RANGE: JsonDict = {"minimum": 0, "maximum": MAX_LEASE_MINUTES}
SizeName = Annotated[
    JsonString,
    WithJsonSchema({"type": "string", "enum": ["Standard", "Premium"], "description": "Case-insensitive."}),
]


class CreateSessionSettings(BaseModel):
    # Unknown keys are ignored: RenderingSession.ps1 merges -AdditionalParameters into this body.
    model_config = ConfigDict(extra="ignore", title="create_session_settings")
    maxLeaseTimeMinutes: WholeMinutes = Field(json_schema_extra=LEASE_RANGE)
    size: SizeName


class UpdateSessionSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", title="update_session_settings")
    maxLeaseTimeMinutes: WholeMinutes = Field(json_schema_extra=LEASE_RANGE)


def _authorize(request: Request, account_id: str, session_id: str | None = None) -> tuple[SessionApiServices, str]:
    services = session_services(request)
    return services, services.auth.authorize(request, account_id, "session", session_id)


def check_create_lease(minutes: int, field: str = "maxLeaseTimeMinutes") -> None:
    refusal = create_refusal(minutes)
    if refusal == "negative":
        raise bad_request(f"The {field} value cannot be negative.", field)
    if refusal == "too_large":
        limit = "1.00:00:00" if field == "maxLeaseTime" else f"{MAX_LEASE_MINUTES} (24 hours)"
        raise bad_request(f"The {field} value cannot exceed {limit}.", field)


def parse_size(value: str) -> SessionSize:
    try:
        return SessionSize.parse(value)
    except ValueError as e:
        raise bad_request(str(e), "size") from e


@router.put(BASE + "/{session_id}", **doc.create_2021(CreateSessionSettings))
async def create_session(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    body = await parse_body(request, CreateSessionSettings, services.settings.max_body_bytes)
    check_create_lease(body.maxLeaseTimeMinutes)
    size = parse_size(body.size)
    try:
        view, created = await run_in_threadpool(
            services.sessions.create, account, session_id, size, body.maxLeaseTimeMinutes
        )
    except SessionConflict as e:
        raise ArrError(409, "Conflict", "A resource already exists under the given ID.", "sessionId") from e
    except AccountGone as e:
        raise account_gone() from e
    except QuotaExceeded as e:
        raise quota_refusal(e) from e
    view = await after_create(view, created, services.settings, services.sessions, services.reconciler)
    return ArrJSONResponse(session_json(view), status_code=201 if created else 200)


def quota_refusal(e: QuotaExceeded) -> ArrError:
    """403: ARR lists it for CreateSession as "authenticated but not allowed", and clients do not retry it (a 429 is
    retried by the SDK, yet waiting does not lift a quota). The body is ARR's error shape, so the SDK shows it."""
    return ArrError(403, "QuotaExceeded", e.message, "size")


@router.get(BASE + "/{session_id}", **doc.GET_2021)
async def get_session(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    view = await services.db.read_async(services.sessions.get, account, session_id)
    return ArrJSONResponse(session_json(view))


@router.patch(BASE + "/{session_id}", **doc.update_2021(UpdateSessionSettings))
async def update_session(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    body = await parse_body(request, UpdateSessionSettings, services.settings.max_body_bytes)
    if body.maxLeaseTimeMinutes < 0:
        raise bad_request("The maxLeaseTimeMinutes value cannot be negative.", "maxLeaseTimeMinutes")
    try:
        view = await run_in_threadpool(services.sessions.extend, account, session_id, body.maxLeaseTimeMinutes)
    except LeaseNotExtendable as e:
        raise ArrError(422, "UnprocessableEntity", _lease_refusal(e), "maxLeaseTimeMinutes") from e
    return ArrJSONResponse(session_json(view))


def _lease_refusal(e: LeaseNotExtendable) -> str:
    if e.reason == "ended":
        return f"The session is {e.status.value}; only a Starting or Ready session can be updated."
    if e.reason == "not_larger":
        return f"The maxLeaseTimeMinutes value must be larger than the current value ({e.current_minutes})."
    return f"The maxLeaseTimeMinutes value cannot exceed {MAX_LEASE_MINUTES} (24 hours)."


@router.post(BASE + "/{session_id}/:stop", **doc.STOP_2021)
async def stop_session(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    await run_in_threadpool(services.sessions.stop, account, session_id)
    return Response(status_code=204)


@router.get(BASE, **doc.LIST_2021)
async def list_sessions(request: Request, account_id: str) -> Response:
    services, account = _authorize(request, account_id)
    size = services.settings.list_page_size
    page = await services.db.read_async(services.sessions.list_live, account, size, requested_after(request))
    doc: dict[str, object] = {"sessions": [session_json(v) for v in page.items]}
    link = next_page_link(services.settings.public_base, request, page.next_after)
    if link is not None:  # the session list leaves it out on the last page (the conversion list sends null)
        doc["@nextLink"] = link
    return ArrJSONResponse(doc)
