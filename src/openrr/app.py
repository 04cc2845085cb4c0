"""Builds the control plane's ASGI app: STS, the 2021 API and the v1 API over one set of services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from openrr import __version__
from openrr.accounts import api_sts
from openrr.conversions import api_2021 as conversions_2021
from openrr.conversions import api_v1 as conversions_v1
from openrr.http.app_state import attach_services, services_in
from openrr.http.errors import ArrError, arr_error_handler, internal_error_handler, not_found
from openrr.http.middleware import ArrHeadersMiddleware, TokenBucketLimiter
from openrr.http.openapi import install as install_openapi
from openrr.http.responses import ArrJSONResponse
from openrr.http.security_headers import viewer_headers
from openrr.http.validation import ids_with_encoded_slash
from openrr.metrics.requests import METRICS_PATH, RequestCounter, RouteTemplate
from openrr.services import Services
from openrr.sessions import api_2021, api_v1
from openrr.store.rows import RecordNotFound

logger = logging.getLogger(__name__)
WEB_DIR = Path(__file__).parent / "web"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and (bad_id := _encoded_slash_id_error(request)) is not None:
        return await arr_error_handler(request, bad_id)
    if exc.status_code == 404:
        body = ArrError(404, "NotFound", "No API operation matches this path.").body()
    elif exc.status_code == 405:
        body = ArrError(405, "MethodNotAllowed", "This path does not support the method used.").body()
    else:
        body = ArrError(exc.status_code, "BadRequest", str(exc.detail)).body()
    return ArrJSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _encoded_slash_id_error(request: Request) -> ArrError | None:
    """Why a path with an encoded '/' in an id (`sessions/a%2Fb`) matched no operation: the id's 400, after the
    checks every operation makes first (token, then api-version), so that it answers like any other bad id."""
    ids = ids_with_encoded_slash(request.scope.get("raw_path", b"").decode("latin-1"))
    if ids is None:
        return None
    services: Services = services_in(request)
    try:
        services.auth.authorize(request, ids.account_id, ids.kind, ids.resource_id, api_version=not ids.v1)
    except ArrError as e:
        return e
    return None


async def _record_not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RecordNotFound)
    return await arr_error_handler(request, not_found(exc.kind, exc.ident))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return ArrJSONResponse(ArrError(400, "BadRequest", f"{where}: {first['msg']}").body(), status_code=400)


BLOCKING_THREADS = 32
"""Threads for blocking session work: they wait on I/O, not the CPU."""


def build_app(services: Services, *, manage_lifecycle: bool = True) -> Any:
    """The ASGI app. With manage_lifecycle the app starts and stops the reconciler and render servers."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runner = services.conversion_runner if manage_lifecycle else None
        if manage_lifecycle:
            # Session work blocks on I/O in threads (a cluster's API, health requests, the store): asyncio's default
            # executor (cores + 4 threads) queued a 50-session burst behind a few slow API calls (bench/RESULTS.md §9).
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(max_workers=BLOCKING_THREADS, thread_name_prefix="openrr-io")
            )
            await services.reconciler.start()
        if runner is not None:
            await runner.start()
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
            if manage_lifecycle:
                await services.reconciler.stop()
                await services.reconciler.shutdown_sessions(
                    "The openrr service was shut down while this session was running."
                )

    # The OpenAPI document is published at /openapi.json; FastAPI's /docs and /redoc pages are not served, because
    # they load their scripts from a CDN into the API's origin.
    app = FastAPI(title="openrr", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    attach_services(app, services)
    app.add_exception_handler(ArrError, arr_error_handler)
    app.add_exception_handler(RecordNotFound, _record_not_found)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, internal_error_handler)
    app.include_router(api_sts.router)
    app.include_router(api_2021.router)
    app.include_router(api_v1.router)
    app.include_router(conversions_2021.router)
    app.include_router(conversions_v1.router)

    @app.get("/", include_in_schema=False)
    async def index() -> dict[str, str]:
        return {"service": "openrr", "version": __version__, "viewer": "/viewer/"}

    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics() -> Response:
        # No authentication, so that a cluster's Prometheus can scrape every replica: the numbers are aggregates
        # (counts by size and status, route templates), with no account or session id (docs/metrics.md).
        body = await asyncio.to_thread(services.metrics.exposition)  # it queries the store
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # The browser viewer: static ES modules, no build step; it talks to the API and then to the render server.
    install_openapi(app)
    app.mount("/viewer", StaticFiles(directory=WEB_DIR, html=True, check_dir=False), name="viewer")

    limiter = TokenBucketLimiter(services.settings.rate_limit_per_s, services.settings.rate_limit_burst)
    confined = viewer_headers(RouteTemplate(app), services.settings.public_render_hostname)
    front = ArrHeadersMiddleware(confined, limiter if services.settings.rate_limit_per_s > 0 else None)
    return RequestCounter(front, services.metrics.requests)
