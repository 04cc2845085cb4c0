"""ARR's error body, `{"error": {"code", "message", "target"?}}`, and the exception that carries it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from openrr.http.responses import ArrJSONResponse

logger = logging.getLogger(__name__)


class ArrError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            err["target"] = self.target
        return {"error": err}


def bad_request(message: str, target: str | None = None) -> ArrError:
    return ArrError(400, "BadRequest", message, target)


def not_found(kind: str, ident: str) -> ArrError:
    return ArrError(404, "NotFound", f"No {kind} with the ID '{ident}' exists in this account.", f"{kind}Id")


# RFC 6750's challenge, the one ARR sent. The same whatever went wrong: naming the reason (expired, revoked, bad
# signature, unknown account) tells a token thief which of them to work on.
BEARER_CHALLENGE = 'Bearer error="invalid_token"'


def unauthorized(reason: str) -> ArrError:
    """A data-plane 401: empty body and the bare Bearer challenge, as ARR answered. `reason` goes to the log only."""
    return ArrError(401, "Unauthorized", reason, headers={"WWW-Authenticate": BEARER_CHALLENGE})


def account_gone() -> ArrError:
    return unauthorized("The account of this access token no longer exists.")


def forbidden(message: str) -> ArrError:
    return ArrError(403, "Forbidden", message)


async def arr_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ArrError)
    if exc.status == 401:
        logger.debug("401: %s", exc.message)
        return Response(status_code=401, headers=exc.headers)
    return ArrJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def internal_error_handler(_request: Request, _exc: Exception) -> Response:
    body = {"error": {"code": "InternalServerError", "message": "An internal server error occurred."}}
    return ArrJSONResponse(body, status_code=500)
