"""The legacy v1 session API: another window onto the same sessions as the 2021 API."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from openrr.accounts.service import AccountGone
from openrr.http.body import parse_body
from openrr.http.errors import account_gone, bad_request
from openrr.http.links import route_link
from openrr.http.responses import ArrJSONResponse
from openrr.http.validation import JsonString
from openrr.protocol.timespan import format_timespan, parse_timespan
from openrr.sessions import openapi as doc
from openrr.sessions.api_2021 import check_create_lease, parse_size, quota_refusal
from openrr.sessions.api_deps import SessionApiServices, session_services
from openrr.sessions.fast_start import after_create
from openrr.sessions.lease import MAX_LEASE_MINUTES, LeaseNotExtendable, whole_minutes
from openrr.sessions.model import SessionView
from openrr.sessions.quotas import QuotaExceeded
from openrr.sessions.state import SessionStatus

router = APIRouter()
BASE = "/v1/accounts/{account_id}/sessions"
# Sizes of the 2019 preview, which old scripts may still send.
_LEGACY_SIZES = {"small": "Standard", "big": "Premium"}


# Published constraints (OpenAPI) that the handlers check themselves, with ARR's wording.
_TIMESPAN = Field(json_schema_extra={"pattern": "^([0-9]{1,2}\\.)?[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}$"})


class CreateSessionV1(BaseModel):
    model_config = ConfigDict(extra="ignore")
    maxLeaseTime: JsonString = _TIMESPAN
    size: JsonString = Field(
        json_schema_extra={"enum": ["Standard", "Premium", "small", "big"], "description": "Case-insensitive."}
    )
    models: list[Any] | None = None


class UpdateSessionV1(BaseModel):
    model_config = ConfigDict(extra="ignore")
    maxLeaseTime: JsonString = _TIMESPAN


def _lease_minutes(text: str) -> int:
    try:
        seconds = parse_timespan(text)
    except ValueError as e:
        raise bad_request(f"Invalid value for 'maxLeaseTime': {e}", "maxLeaseTime") from e
    return whole_minutes(seconds)


def _authorize(request: Request, account_id: str, session_id: str | None = None) -> tuple[SessionApiServices, str]:
    services = session_services(request)
    return services, services.auth.authorize(request, account_id, "session", session_id, api_version=False)


def v1_properties(v: SessionView) -> dict[str, Any]:
    message = v.error_message if v.status in (SessionStatus.ERROR, SessionStatus.EXPIRED) else None
    return {
        "message": message,
        "sessionElapsedTime": format_timespan(v.elapsed_s),
        "sessionHostname": v.hostname,
        "sessionId": v.id,
        "sessionMaxLeaseTime": format_timespan(v.max_lease_minutes * 60),
        "sessionSize": v.size.value,
        "sessionStatus": v.status.value,
        "teraflops": v.teraflops,
        "handshakePort": v.handshake_port,
        "arrInspectorPort": v.inspector_port,
    }


@router.post(BASE + "/create", **doc.create_v1(CreateSessionV1))
async def create_session(request: Request, account_id: str) -> Response:
    services, account = _authorize(request, account_id)
    body = await parse_body(request, CreateSessionV1, services.settings.max_body_bytes)
    minutes = _lease_minutes(body.maxLeaseTime)
    check_create_lease(minutes, "maxLeaseTime")
    size = parse_size(_LEGACY_SIZES.get(body.size.strip().lower(), body.size))
    if body.models:
        raise bad_request("Preloading models at creation is not supported; load them after connecting.", "models")
    session_id = str(uuid.uuid4())
    try:
        view, created = await run_in_threadpool(services.sessions.create, account, session_id, size, minutes)
    except AccountGone as e:
        raise account_gone() from e
    except QuotaExceeded as e:
        raise quota_refusal(e) from e
    # v1's create answers only the id; with a warm server the client's first properties poll then reads Ready.
    await after_create(view, created, services.settings, services.sessions, services.reconciler)
    base = services.settings.public_base
    location = route_link(base, request, "get_session_properties_v1", account_id=account_id, session_id=session_id)
    return ArrJSONResponse({"sessionId": session_id}, status_code=202, headers={"Location": location})


@router.get(BASE + "/{session_id}/properties", name="get_session_properties_v1", **doc.GET_V1)
async def get_properties(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    view = await services.db.read_async(services.sessions.get, account, session_id)
    return ArrJSONResponse(v1_properties(view))


@router.patch(BASE + "/{session_id}", **doc.update_v1(UpdateSessionV1))
async def update_session(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    body = await parse_body(request, UpdateSessionV1, services.settings.max_body_bytes)
    minutes = _lease_minutes(body.maxLeaseTime)
    if minutes < 0:
        raise bad_request("The maxLeaseTime value cannot be negative.", "maxLeaseTime")
    try:
        await run_in_threadpool(services.sessions.extend, account, session_id, minutes)
    except LeaseNotExtendable as e:
        raise bad_request(_lease_refusal(e), "maxLeaseTime") from e
    return Response(status_code=200)


def _lease_refusal(e: LeaseNotExtendable) -> str:
    if e.reason == "ended":
        return f"The session is {e.status.value}; only a Starting or Ready session can be updated."
    if e.reason == "not_larger":
        current = format_timespan(e.current_minutes * 60)
        return f"The maxLeaseTime value must be longer than the current lease ({current}); it is the total since start."
    return f"The maxLeaseTime value cannot exceed {format_timespan(MAX_LEASE_MINUTES * 60)}."


@router.delete(BASE + "/{session_id}", **doc.DELETE_V1)
async def delete_session(request: Request, account_id: str, session_id: str) -> Response:
    services, account = _authorize(request, account_id, session_id)
    await run_in_threadpool(services.sessions.stop, account, session_id)
    return Response(status_code=204)


@router.get(BASE, **doc.LIST_V1)
async def list_sessions(request: Request, account_id: str) -> Response:
    services, account = _authorize(request, account_id)
    sessions: list[dict[str, Any]] = []
    after = None
    while True:
        page = await services.db.read_async(
            services.sessions.list_live, account, services.settings.list_page_size, after
        )
        sessions += [v1_properties(v) for v in page.items]
        if page.next_after is None:
            break
        after = page.next_after
    return ArrJSONResponse({"sessions": sessions})
