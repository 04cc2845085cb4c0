"""The published OpenAPI document: what each operation takes and every answer it really gives.

Routes read their bodies by hand (http/body.py) for ARR's precise error messages, so FastAPI sees neither request
nor response models. Each route therefore states its contract through `operation(...)`, which becomes the
decorator's documentation arguments only: nothing here changes how a request is parsed or answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from openrr.http.validation import SUPPORTED_API_VERSIONS

REF = "#/components/schemas/{model}"
# Request-body models (and response models referenced by hand), added to components.schemas when the document
# is built: FastAPI only adds the models it parses or names in `responses` itself.
_MODELS: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(title="error")
    code: str
    message: str
    target: str | None = None


class ErrorResponse(BaseModel):
    """ARR's error body, `{"error": {"code", "message", "target"?}}`."""

    model_config = ConfigDict(title="error_response")
    error: ErrorDetail


# Path parameters' published constraints, by name. FastAPI names them from the route (plain `str`, so it never
# checks them itself: the handlers do, with ARR's wording); the document states the rule the handlers apply.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "account_id": {"type": "string", "format": "uuid"},
    "session_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,256}$", "minLength": 1, "maxLength": 256},
    "conversion_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,256}$", "minLength": 1, "maxLength": 256},
}

API_VERSION: dict[str, Any] = {
    "name": "api-version",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "enum": list(SUPPORTED_API_VERSIONS)},
}
SKIPTOKEN: dict[str, Any] = {
    "name": "skiptoken",
    "in": "query",
    "required": False,
    "description": "Continuation token from a previous page's @nextLink.",
    "schema": {"type": "string"},
}

_RETRY_AFTER = {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}}
_CHALLENGE = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}
"""The header of a v1 create's 202, naming the new resource."""


def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": ErrorResponse, "description": description}
    if headers:
        out["headers"] = headers
    return out


def json_body(model: type[BaseModel], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "description": description}
    if headers:
        out["headers"] = headers
    return out


def empty(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if headers:
        out["headers"] = headers
    return out


def data_plane_errors(*, body: bool, not_found: bool) -> dict[int | str, dict[str, Any]]:
    """The refusals every data-plane operation shares."""
    out: dict[int | str, dict[str, Any]] = {
        400: error("Malformed request: an invalid account ID, resource ID, api-version or body field."),
        401: empty("Missing, invalid, expired or revoked access token (no body, as ARR).", _CHALLENGE),
        403: error("The access token was issued for another account."),
        404: error(
            "No such resource in this account, or no operation matches the path."
            if not_found
            else "No operation matches the path (a path parameter with characters outside its pattern)."
        ),
        429: error("Too many requests for this account; retry after Retry-After seconds.", _RETRY_AFTER),
        500: error("Internal error; retrying may succeed."),
    }
    if body:
        out[413] = error("The request body is larger than the service's limit.")
    return out


def operation(
    *,
    status: int,
    responses: dict[int | str, dict[str, Any]],
    body: type[BaseModel] | None = None,
    query: Iterable[dict[str, Any]] = (),
    summary: str | None = None,
    extra_models: Iterable[type[BaseModel]] = (),
) -> dict[str, Any]:
    """A route decorator's documentation arguments (`@router.get(path, **operation(...))`)."""
    extra: dict[str, Any] = {}
    if query:
        extra["parameters"] = list(query)
    if body is not None:
        _MODELS[body.__name__] = (body, "validation")
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}},
        }
    for model in extra_models:
        _MODELS[model.__name__] = (model, "serialization")
    kwargs: dict[str, Any] = {
        "status_code": status,
        # Handlers return Response objects; this only keeps FastAPI from documenting an untyped JSON default.
        "response_class": Response,
        "responses": responses,
        "openapi_extra": extra,
    }
    if summary:
        kwargs["summary"] = summary
    return kwargs


def _tidy(doc: dict[str, Any]) -> None:
    for path_item in doc.get("paths", {}).values():
        for op in path_item.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param["name"] in PATH_PARAMETERS:
                    param["schema"] = dict(PATH_PARAMETERS[param["name"]])
            responses = op.get("responses", {})
            # FastAPI adds a 422 for its own request validation, which never runs here (handlers validate).
            unprocessable = responses.get("422", {})
            ref = unprocessable.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
            if ref.endswith("/HTTPValidationError"):
                del responses["422"]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if _MODELS:
        _, defs = models_json_schema(list(_MODELS.values()), ref_template=REF)
        schemas.update(defs.get("$defs", {}))


def install(app: FastAPI) -> None:
    """Replaces app.openapi with one that also publishes the request bodies and the real path constraints."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _tidy(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    replace: Callable[[], dict[str, Any]] = build
    app.openapi = replace  # type: ignore[method-assign]
