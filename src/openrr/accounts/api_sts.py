"""The STS: `GET /accounts/{id}/token` swaps `Bearer accountId:accountKey` for a signed JWT."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from openrr.accounts.api_deps import sts_services
from openrr.accounts.keys import key_id_of
from openrr.accounts.service import normalize_account_id
from openrr.http.openapi import empty, error, json_body, operation
from openrr.http.responses import ArrJSONResponse

router = APIRouter()
logger = logging.getLogger(__name__)


class StsTokenResponseMessage(BaseModel):
    AccessToken: str


_STS_DOC = operation(
    status=200,
    summary="Exchange 'Authorization: Bearer <accountId>:<accountKey>' for an access token (24 h)",
    # The SDKs send 2019-02-28-preview, docs and scripts none; the STS accepts any.
    query=[{"name": "api-version", "in": "query", "required": False, "schema": {"type": "string"}}],
    responses={
        200: json_body(StsTokenResponseMessage, "A signed JWT for the account."),
        400: empty("The account ID in the path is not a GUID (no body, as ARR)."),
        401: empty("Missing or malformed credential, unknown account or wrong key (no body, as ARR)."),
        404: error("No operation matches the path."),
        429: error(
            "Too many requests for this account; retry after Retry-After seconds.",
            {
                "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}},
                "WWW-Authenticate": {"required": True, "schema": {"type": "string"}},
            },
        ),
        500: error("Internal error; retrying may succeed."),
    },
)


def _rejected(status: int, why: str) -> Response:
    # ARR's STS answered a bad key with an empty body and no WWW-Authenticate header (observed live). Saying
    # why (unknown account, wrong key, malformed credential) would help a key guesser; the log keeps it.
    logger.debug("STS %d: %s", status, why)
    return Response(status_code=status)


@router.get("/accounts/{account_id}/token", **_STS_DOC)
async def get_token(request: Request, account_id: str) -> Response:
    services = sts_services(request)
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return _rejected(401, "an 'Authorization: Bearer <accountId>:<accountKey>' header is required")
    given_id, sep, key = credential.strip().partition(":")
    if not sep or not key:
        return _rejected(401, "the bearer credential must be '<accountId>:<accountKey>'")
    path_id = normalize_account_id(account_id)
    if path_id is None:
        return _rejected(400, f"the account ID '{account_id[:64]}' is not a GUID")
    if normalize_account_id(given_id) != path_id:
        return _rejected(401, "the credential's account ID does not match the account in the path")
    account = await services.db.read_async(services.accounts.authenticate, path_id, key)
    if account is None:
        return _rejected(401, "unknown account or wrong account key")
    return ArrJSONResponse({"AccessToken": services.tokens.token_for(account.account_id, key_id_of(key))})
