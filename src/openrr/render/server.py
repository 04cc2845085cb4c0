"""`openrr render-server`: serves the handshake port (health, control, later the stream) and the inspector.

One uvicorn server listens on both ports; requests are routed by the port they arrived on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import logging
import os
import re
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import TypeVar

import psutil
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from openrr.model.texture_guard import DEFAULT_MAX_DIMENSION, DEFAULT_MAX_PIXELS, TextureLimits
from openrr.render.access import Refused, TokenGate, bearer
from openrr.render.control import (
    CONTROL_HEADER,
    EXIT_OK,
    EXIT_ORPHANED,
    EXIT_PORT_IN_USE,
    EXIT_USAGE,
    HEALTH_PATH,
    AssignBody,
    HealthReport,
    IdentityReport,
    KeyIdsBody,
    RenderServerArgs,
    ServerPorts,
    StorageGrantsBody,
    from_control_plane,
    parse_body,
    read_secret,
    read_secret_file,
    write_ports,
)
from openrr.render.identity import ServerIdentity
from openrr.render.local_files import BrokeredFiles
from openrr.render.logbuffer import RingBufferHandler
from openrr.render.metrics import RenderMetrics
from openrr.render.orphan import OrphanWatch
from openrr.render.ports import bind_exact, bind_in_range
from openrr.render.session import STANDARD_PRIMITIVE_LIMIT, SceneSession
from openrr.render.stream import StreamEndpoint
from openrr.storage.fetch import HttpOptions
from openrr.storage.guard import FetchPolicy
from openrr.storage.session_access import SESSION_STORAGE, BlobGrant, SessionStorage
from openrr.tls import AEAD_CIPHERS
from openrr.util.child_process import CHILD_OOM_SCORE_ADJ, lower_standing
from openrr.util.http_server import GuardedServer, guarded_config

logger = logging.getLogger("openrr.render")
_Body = TypeVar("_Body", AssignBody, StorageGrantsBody, KeyIdsBody)
_AccountBody = TypeVar("_AccountBody", StorageGrantsBody, KeyIdsBody)
INSPECTOR_PAGE = Path(__file__).with_name("inspector.html")


class RenderServer:
    def __init__(
        self,
        identity: ServerIdentity,
        control_secret: str,
        log: RingBufferHandler,
        scene: SceneSession,
        stream: StreamEndpoint,
        storage: SessionStorage = SESSION_STORAGE,
    ) -> None:
        self.identity = identity
        self.gate = stream.gate
        self.storage = storage
        self.control_secret = control_secret
        self.log = log
        self.scene = scene
        self.started = time.monotonic()
        self.process = psutil.Process()
        self.requests = 0
        self.orphan_watch: OrphanWatch | None = None
        """Set with --orphan-timeout-s: every request with the control secret keeps the server alive."""
        self.handshake = Starlette(
            routes=[
                Route(HEALTH_PATH, self.health),
                Route(AssignBody.path, self.assign, methods=["POST"]),
                Route(StorageGrantsBody.path, self.grant_storage, methods=["POST"]),
                Route(KeyIdsBody.path, self.set_key_ids, methods=["POST"]),
                WebSocketRoute("/stream", stream.handle),
            ]
        )
        self.metrics = RenderMetrics(identity, scene)
        scene.on_frame = self.metrics.observe_frame
        self.inspector = Starlette(
            routes=[
                Route("/", self.inspector_page),
                Route("/api/status", self.status),
                Route("/metrics", self.prometheus),
            ]
        )
        self.inspector_port = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        port = scope.get("server", (None, None))[1]
        app = self.inspector if port == self.inspector_port else self.handshake
        await app(scope, receive, send)

    def _report(self) -> IdentityReport:
        ident = self.identity
        return IdentityReport(
            host_id=ident.host_id,
            size=ident.size,
            session_id=ident.session_id,
            account_id=ident.account_id,
            pid=os.getpid(),
            uptime_s=time.monotonic() - self.started,
        )

    def _from_control_plane(self, request: Request) -> bool:
        ok = from_control_plane(request.headers.get(CONTROL_HEADER), self.control_secret)
        if ok and self.orphan_watch is not None:
            self.orphan_watch.heard()
        return ok

    async def _control_body(self, request: Request, kind: type[_Body]) -> _Body | Response:
        """The body of a control request, or the answer to give: 403 without the control secret, 400 (naming
        the field) if the body is not a `kind`."""
        if not self._from_control_plane(request):
            return JSONResponse({"error": "bad control secret"}, status_code=403)
        try:
            return parse_body(kind, await request.body())
        except ValueError as e:
            return JSONResponse({"error": f"{request.url.path}: {e}"}, status_code=400)

    async def _account_body(self, request: Request, kind: type[_AccountBody], what: str) -> _AccountBody | Response:
        """As `_control_body`, and 409 if the body is for another account than the one this server serves."""
        body = await self._control_body(request, kind)
        if not isinstance(body, Response) and body.account_id != self.identity.account_id:
            return JSONResponse({"error": f"these {what} are for another account's session"}, status_code=409)
        return body

    async def health(self, request: Request) -> Response:
        # Anyone may learn that the server is up; which tenant it serves is for the control plane only.
        if not self._from_control_plane(request):
            return JSONResponse({"status": "ok"})
        return JSONResponse(HealthReport(self.scene.gl_renderer, self._report()).to_json())

    async def assign(self, request: Request) -> Response:
        body = await self._control_body(request, AssignBody)
        if isinstance(body, Response):
            return body
        if not self.identity.assign(body.session_id, body.account_id):
            return JSONResponse({"error": "already serving another session"}, status_code=409)
        logger.info("assigned to session %s", body.session_id)
        return JSONResponse(self._report().to_json())

    async def grant_storage(self, request: Request) -> Response:
        """The control plane's read tokens for the session account's linked storage (storage/session_access.py)."""
        body = await self._account_body(request, StorageGrantsBody, "grants")
        if isinstance(body, Response):
            return body
        grants: list[BlobGrant] = []
        for i, doc in enumerate(body.grants):
            try:
                grants.append(BlobGrant.from_json(doc))
            except KeyError as e:
                return JSONResponse({"error": f"{request.url.path}: grants[{i}].{e.args[0]}: missing"}, status_code=400)
            except ValueError as e:  # an expiresOn that is not ISO 8601
                return JSONResponse({"error": f"{request.url.path}: grants[{i}]: {e}"}, status_code=400)
        changed = sorted(g.storage_account for g in grants) != sorted(self.storage.storage_accounts)
        self.storage.replace(grants)
        if changed:
            # Names only: the tokens themselves never reach a log.
            names = ", ".join(sorted(g.storage_account for g in grants)) or "none"
            logger.info("linked storage accounts readable by this session: %s", names)
        return JSONResponse({"storageAccounts": self.storage.storage_accounts})

    async def set_key_ids(self, request: Request) -> Response:
        """The ids of the account's current keys: tokens of any other key are refused, their connections closed."""
        body = await self._account_body(request, KeyIdsBody, "key ids")
        if isinstance(body, Response):
            return body
        key_ids = frozenset(body.key_ids)
        if self.gate.key_ids is not None and key_ids != self.gate.key_ids:
            logger.info("the account's keys changed: tokens minted with other keys are refused from now on")
        self.gate.update(key_ids)
        return JSONResponse({"keyIds": len(key_ids)})

    async def inspector_page(self, _request: Request) -> Response:
        # The page itself holds nothing of the tenant's: it asks /api/status with the token from its URL fragment.
        page = INSPECTOR_PAGE.read_text()
        return HTMLResponse(page, headers=_page_headers(page))

    async def prometheus(self, _request: Request) -> Response:
        # No token, so that a cluster's Prometheus can scrape every render server: rates and counts only, the
        # session named by a hash of its id (render/metrics.py).
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def status(self, request: Request) -> Response:
        try:
            self.gate.admit(bearer(request.headers.get("authorization", "")))
        except Refused as e:
            return JSONResponse({"error": e.message}, status_code=e.status, headers={"Cache-Control": "no-store"})
        with self.process.oneshot():
            mem = self.process.memory_info().rss
            cpu = self.process.cpu_percent(interval=None)
        return JSONResponse(
            {
                **self._report().to_json(),
                "stats": {"rssBytes": mem, "cpuPercent": cpu, "requests": self.requests, **self.scene.describe_stats()},
                "models": [e.describe() for e in self.scene.entities.values()],
                "linkedStorage": self.storage.storage_accounts,
                "log": list(self.log.lines),
            }
        )


def _page_headers(page: str) -> dict[str, str]:
    """CSP that admits the page's own inline style and script (by hash) and nothing else; no framing, no Referer
    (the token lives in the URL's fragment, which a Referer never carries, but no-referrer costs nothing)."""
    hashes = {
        kind: " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for body in re.findall(rf"<{kind}[^>]*>(.*?)</{kind}>", page, re.S)
        )
        for kind in ("script", "style")
    }
    csp = (
        f"default-src 'self'; script-src {hashes['script']}; style-src {hashes['style']}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return {"Content-Security-Policy": csp, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`openrr render-server`'s flags: render/control.py's RenderServerArgs, which the control plane fills in."""
    RenderServerArgs.add_arguments(p)


def _here(path: Path | None) -> Path | None:
    """`path`, relative if it lies in the working directory. The control plane starts a render server in its home
    (inside the data directory, whose directories this user may not traverse): it reaches its files only
    relative to the directory it was started in."""
    if path is None or path.parent != Path(os.getcwd()):
        return path
    return Path(path.name)


def _listen(args: RenderServerArgs) -> tuple[socket.socket, socket.socket]:
    """The handshake and inspector sockets: the ports given (pod mode: the pod's hostPorts), else free ones."""
    if args.handshake_port is None or args.inspector_port is None:
        return bind_in_range(args.bind), bind_in_range(args.bind)
    handshake = bind_exact(args.bind, args.handshake_port)
    try:
        return handshake, bind_exact(args.bind, args.inspector_port)
    except OSError:
        handshake.close()
        raise


def run(ns: argparse.Namespace) -> int:
    """Run the render server until SIGTERM; `ns` from a parser given `add_arguments`."""
    args = RenderServerArgs.from_namespace(ns)
    secret = read_secret_file(args.secret_file) if args.secret_file else read_secret()
    # First thing after the secret: this process and its render process are the first the kernel kills when
    # memory runs short, and neither grows past its limit.
    oom_score_adj = CHILD_OOM_SCORE_ADJ if args.oom_score_adj is None else args.oom_score_adj
    lower_standing(oom_score_adj, args.memory_limit)
    ring = RingBufferHandler()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().addHandler(ring)
    # httpx logs every request's full URL at INFO: a model's SAS URL (sig= included) would land in the log.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not secret:
        where = f"in {args.secret_file}" if args.secret_file else "as the first line on stdin"
        print(f"the control secret must come {where}", file=sys.stderr)
        return EXIT_USAGE
    identity = ServerIdentity(host_id=args.host_id, size=args.size)
    if args.session_id and args.account_id:
        identity.assign(args.session_id, args.account_id)
    scene = SceneSession(
        args.size,
        label=f"--for={args.ports_file}",
        primitive_limit=args.standard_primitive_limit or STANDARD_PRIMITIVE_LIMIT,
        http=HttpOptions(FetchPolicy.parse(args.fetch_allow), args.model_max_compression_ratio),
        model_max_bytes=args.model_max_bytes,
        textures=TextureLimits(
            args.texture_max_dimension or DEFAULT_MAX_DIMENSION, args.texture_max_pixels or DEFAULT_MAX_PIXELS
        ),
    )
    if args.files_fd is not None:
        scene.local_files = BrokeredFiles(args.files_fd)
    gate = TokenGate.from_file(identity, _here(args.sts_public_key))
    stream = StreamEndpoint(identity, scene, gate, args.reconnect_grace_s)
    server_app = RenderServer(identity, secret, ring, scene, stream)
    certfile, keyfile, ports_file = _here(args.certfile), _here(args.keyfile), _here(args.ports_file)
    assert ports_file is not None

    try:
        handshake_sock, inspector_sock = _listen(args)
    except OSError as e:
        print(f"cannot listen on {args.bind}: {e}", file=sys.stderr)
        return EXIT_PORT_IN_USE
    server_app.inspector_port = inspector_sock.getsockname()[1]
    config = guarded_config(
        server_app,
        keep_alive_s=args.keep_alive_timeout_s,
        max_connections=None,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        ssl_cert_reqs=ssl.CERT_NONE,
        ssl_ciphers=AEAD_CIPHERS,
        # Idle kept-alive clients (the service's health probes) must not hold a stop for uvicorn's 30 s default.
        timeout_graceful_shutdown=1,
        # No permessage-deflate: frames are JPEG or H.264 already. Deflate still shrank JPEG frames of a flat
        # background by a third, but cost ~1 ms per frame and per client on this event loop plus the client's
        # inflate; on 2 cores that was 10-15 % of the end-to-end frame rate at 100k triangles (bench/RESULTS.md).
        ws_per_message_deflate=False,
    )
    # Connections that never complete TLS or never send a request are dropped after the handshake timeout.
    server = GuardedServer(config, args.handshake_timeout_s)
    write_ports(
        ports_file, ServerPorts(os.getpid(), args.host_id, handshake_sock.getsockname()[1], server_app.inspector_port)
    )
    logger.info(
        "render server %s (%s) on %s: handshake %d, inspector %d",
        args.host_id,
        args.size,
        args.bind,
        handshake_sock.getsockname()[1],
        server_app.inspector_port,
    )
    # SIGTERM is the control plane's polite stop; uvicorn turns it into a graceful exit. SIGPIPE stays ignored
    # (Python's default): a client vanishing mid-send must be an exception, not the end of the session.
    sockets: list[socket.socket] = [handshake_sock, inspector_sock]

    async def main() -> None:
        # The GL context comes up before the server answers /health: Ready means it can render.
        await scene.start()
        logger.info("rendering with %s", scene.gl_renderer)
        watchdog = None
        if args.orphan_timeout_s:
            # Counted from now: a control plane cannot reach the server before it serves.
            server_app.orphan_watch = OrphanWatch(args.orphan_timeout_s)
            watchdog = asyncio.create_task(server_app.orphan_watch.watch(lambda: setattr(server, "should_exit", True)))
        try:
            await server.serve(sockets=sockets)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            await scene.close()

    asyncio.run(main())
    if server_app.orphan_watch is not None and server_app.orphan_watch.orphaned:
        logger.info("render server %s stopped itself, orphaned (exit code %d)", args.host_id, EXIT_ORPHANED)
        return EXIT_ORPHANED
    logger.info("render server %s stopped", args.host_id)
    return EXIT_OK
