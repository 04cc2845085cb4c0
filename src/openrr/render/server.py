"""`openrr render-server`: serves the handshake port (health, control, later the stream) and the inspector.

One uvicorn server listens on both ports; requests are routed by the port they arrived on.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from openrr.render.identity import ServerIdentity
from openrr.render.logbuffer import RingBufferHandler
from openrr.render.ports import bind_in_range
from openrr.render.session import STANDARD_PRIMITIVE_LIMIT, SceneSession
from openrr.render.stream import StreamEndpoint
from openrr.storage.session_access import SESSION_STORAGE, BlobGrant, SessionStorage

logger = logging.getLogger("openrr.render")
CONTROL_SECRET_ENV = "OPENRR_RENDER_CONTROL_SECRET"
CONTROL_HEADER = "x-openrr-control"
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
        self.storage = storage
        self.control_secret = control_secret
        self.log = log
        self.scene = scene
        self.started = time.monotonic()
        self.process = psutil.Process()
        self.requests = 0
        self.handshake = Starlette(
            routes=[
                Route("/health", self.health),
                Route("/control/assign", self.assign, methods=["POST"]),
                Route("/control/storage", self.grant_storage, methods=["POST"]),
                WebSocketRoute("/stream", stream.handle),
            ]
        )
        self.inspector = Starlette(routes=[Route("/", self.inspector_page), Route("/api/status", self.status)])
        self.inspector_port = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        port = scope.get("server", (None, None))[1]
        app = self.inspector if port == self.inspector_port else self.handshake
        await app(scope, receive, send)

    def _identity_doc(self) -> dict[str, Any]:
        ident = self.identity
        return {
            "hostId": ident.host_id,
            "size": ident.size,
            "sessionId": ident.session_id,
            "accountId": ident.account_id,
            "pid": os.getpid(),
            "uptimeS": round(time.monotonic() - self.started, 3),
        }

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "renderer": self.scene.gl_renderer, **self._identity_doc()})

    async def assign(self, request: Request) -> Response:
        given = request.headers.get(CONTROL_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.control_secret.encode()):
            return JSONResponse({"error": "bad control secret"}, status_code=403)
        body = await request.json()
        if not self.identity.assign(str(body["sessionId"]), str(body["accountId"])):
            return JSONResponse({"error": "already serving another session"}, status_code=409)
        logger.info("assigned to session %s", body["sessionId"])
        return JSONResponse(self._identity_doc())

    async def grant_storage(self, request: Request) -> Response:
        """The control plane's read tokens for the session account's linked storage (storage/session_access.py)."""
        given = request.headers.get(CONTROL_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.control_secret.encode()):
            return JSONResponse({"error": "bad control secret"}, status_code=403)
        body = await request.json()
        if self.identity.account_id is None or str(body.get("accountId")) != self.identity.account_id:
            return JSONResponse({"error": "these grants are for another account's session"}, status_code=409)
        grants = [BlobGrant.from_json(g) for g in body.get("grants") or []]
        changed = sorted(g.storage_account for g in grants) != sorted(self.storage.storage_accounts)
        self.storage.replace(grants)
        if changed:
            # Names only: the tokens themselves never reach a log.
            names = ", ".join(sorted(g.storage_account for g in grants)) or "none"
            logger.info("linked storage accounts readable by this session: %s", names)
        return JSONResponse({"storageAccounts": self.storage.storage_accounts})

    async def inspector_page(self, _request: Request) -> Response:
        return HTMLResponse(INSPECTOR_PAGE.read_text())

    async def status(self, _request: Request) -> Response:
        with self.process.oneshot():
            mem = self.process.memory_info().rss
            cpu = self.process.cpu_percent(interval=None)
        return JSONResponse(
            {
                **self._identity_doc(),
                "stats": {"rssBytes": mem, "cpuPercent": cpu, "requests": self.requests, **self.scene.describe_stats()},
                "models": [e.describe() for e in self.scene.entities.values()],
                "linkedStorage": self.storage.storage_accounts,
                "log": list(self.log.lines),
            }
        )


def _write_state(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host-id", required=True)
    p.add_argument("--size", default="Standard")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--state-file", type=Path, required=True, help="where to write the chosen ports")
    p.add_argument("--session-id")
    p.add_argument("--account-id")
    p.add_argument("--certfile", type=Path)
    p.add_argument("--keyfile", type=Path)
    p.add_argument("--sts-public-key", type=Path, help="PEM public key that signs clients' STS tokens")
    p.add_argument(
        "--standard-primitive-limit", type=int, default=STANDARD_PRIMITIVE_LIMIT, help="a Standard session's limit"
    )
    p.add_argument(
        "--reconnect-grace-s", type=float, default=60.0, help="how long a dropped controller's scene is kept"
    )


def run(args: argparse.Namespace) -> int:
    ring = RingBufferHandler()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().addHandler(ring)
    # httpx logs every request's full URL at INFO: a model's SAS URL (sig= included) would land in the log.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    secret = os.environ.pop(CONTROL_SECRET_ENV, "")
    if not secret:
        print(f"{CONTROL_SECRET_ENV} must be set", file=sys.stderr)
        return 2
    identity = ServerIdentity(host_id=args.host_id, size=args.size)
    if args.session_id and args.account_id:
        identity.assign(args.session_id, args.account_id)
    scene = SceneSession(args.size, label=f"--for={args.state_file}", primitive_limit=args.standard_primitive_limit)
    stream = StreamEndpoint(identity, scene, args.sts_public_key, args.reconnect_grace_s)
    server_app = RenderServer(identity, secret, ring, scene, stream)

    handshake_sock = bind_in_range(args.bind)
    inspector_sock = bind_in_range(args.bind)
    server_app.inspector_port = inspector_sock.getsockname()[1]
    config = uvicorn.Config(
        server_app,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(args.certfile) if args.certfile else None,
        ssl_keyfile=str(args.keyfile) if args.keyfile else None,
        ssl_cert_reqs=ssl.CERT_NONE,
        # Idle kept-alive clients (the service's health probes) must not hold a stop for uvicorn's 30 s default.
        timeout_graceful_shutdown=1,
        # No permessage-deflate: frames are JPEG or H.264 already. Deflate still shrank JPEG frames of a flat
        # background by a third, but cost ~1 ms per frame and per client on this event loop plus the client's
        # inflate; on 2 cores that was 10-15 % of the end-to-end frame rate at 100k triangles (bench/RESULTS.md).
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    _write_state(
        args.state_file,
        {
            "pid": os.getpid(),
            "hostId": args.host_id,
            "handshakePort": handshake_sock.getsockname()[1],
            "inspectorPort": server_app.inspector_port,
        },
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
        try:
            await server.serve(sockets=sockets)
        finally:
            await scene.close()

    asyncio.run(main())
    logger.info("render server %s stopped", args.host_id)
    return 0
