"""Published shapes of the session APIs (2021-01-01 and v1): documentation only, serialisation is by hand."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openrr.http.openapi import (
    API_VERSION,
    LOCATION,
    SKIPTOKEN,
    data_plane_errors,
    empty,
    error,
    json_body,
    operation,
)

SessionSizeName = Literal["Standard", "Premium"]
SessionStatusName = Literal["Starting", "Ready", "Stopped", "Expired", "Error"]


class SessionError(BaseModel):
    code: str
    message: str


class SessionProperties(BaseModel):
    """`session_properties`: connection details only while Ready; `error` only on an Error session."""

    model_config = ConfigDict(title="session_properties")
    id: str
    creationTime: str = Field(json_schema_extra={"format": "date-time"})
    elapsedTimeMinutes: int
    maxLeaseTimeMinutes: int
    size: SessionSizeName
    status: SessionStatusName
    hostname: str | None = None
    handshakePort: int | None = None
    arrInspectorPort: int | None = None
    teraflops: float | None = None
    error: SessionError | None = None


class SessionList(BaseModel):
    model_config = ConfigDict(title="sessions_list")
    sessions: list[SessionProperties]
    nextLink: str | None = Field(default=None, alias="@nextLink")


class V1SessionProperties(BaseModel):
    model_config = ConfigDict(title="v1_session_properties")
    message: str | None
    sessionElapsedTime: str
    sessionHostname: str | None
    sessionId: str
    sessionMaxLeaseTime: str
    sessionSize: SessionSizeName
    sessionStatus: SessionStatusName
    teraflops: float | None
    handshakePort: int | None
    arrInspectorPort: int | None


class V1SessionList(BaseModel):
    model_config = ConfigDict(title="v1_sessions_list")
    sessions: list[V1SessionProperties]


class V1SessionCreated(BaseModel):
    sessionId: str


_QUOTA = "The token was issued for another account, or the account's quota for live sessions of this size is reached"


# --- 2021-01-01 -----------------------------------------------------------------------------------------------


def create_2021(body: type[BaseModel]) -> dict[str, Any]:
    return operation(
        status=201,
        body=body,
        query=[API_VERSION],
        summary="Create a session (idempotent for the same settings)",
        responses={
            **data_plane_errors(body=True, not_found=False),
            200: json_body(SessionProperties, "A session with this ID and the same settings exists already."),
            201: json_body(SessionProperties, "Session created."),
            403: error(_QUOTA + " (code QuotaExceeded)."),
            409: error("A session with this ID exists with other settings."),
        },
    )


GET_2021 = operation(
    status=200,
    query=[API_VERSION],
    summary="Get a session",
    responses={**data_plane_errors(body=False, not_found=True), 200: json_body(SessionProperties, "The session.")},
)


def update_2021(body: type[BaseModel]) -> dict[str, Any]:
    return operation(
        status=200,
        body=body,
        query=[API_VERSION],
        summary="Extend a session's lease",
        responses={
            **data_plane_errors(body=True, not_found=True),
            200: json_body(SessionProperties, "The updated session."),
            422: error("The lease cannot be set: not larger than the current one, over 24 h, or the session ended."),
        },
    )


STOP_2021 = operation(
    status=204,
    query=[API_VERSION],
    summary="Stop a session",
    responses={**data_plane_errors(body=False, not_found=True), 204: empty("Stopped (or already ended).")},
)
LIST_2021 = operation(
    status=200,
    query=[API_VERSION, SKIPTOKEN],
    summary="List the live (Starting or Ready) sessions",
    responses={**data_plane_errors(body=False, not_found=False), 200: json_body(SessionList, "One page of sessions.")},
)

# --- v1 -------------------------------------------------------------------------------------------------------


def create_v1(body: type[BaseModel]) -> dict[str, Any]:
    return operation(
        status=202,
        body=body,
        summary="Create a session (v1)",
        responses={
            **data_plane_errors(body=True, not_found=False),
            202: json_body(V1SessionCreated, "Session created; Location names its properties.", LOCATION),
            403: error(_QUOTA + " (code QuotaExceeded)."),
        },
    )


GET_V1 = operation(
    status=200,
    summary="Get a session's properties (v1)",
    responses={**data_plane_errors(body=False, not_found=True), 200: json_body(V1SessionProperties, "The session.")},
)


def update_v1(body: type[BaseModel]) -> dict[str, Any]:
    return operation(
        status=200,
        body=body,
        summary="Set a session's total lease (v1)",
        responses={**data_plane_errors(body=True, not_found=True), 200: empty("Updated (no body).")},
    )


DELETE_V1 = operation(
    status=204,
    summary="Stop a session (v1)",
    responses={**data_plane_errors(body=False, not_found=True), 204: empty("Stopped (or already ended).")},
)
LIST_V1 = operation(
    status=200,
    summary="List the live sessions (v1, all in one page)",
    responses={**data_plane_errors(body=False, not_found=False), 200: json_body(V1SessionList, "The sessions.")},
)
