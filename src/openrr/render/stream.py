"""The WebSocket on the handshake port: authenticates a client with an STS token of the session's account,
enforces one controller at a time (watchers are unlimited), and maps JSON commands onto the scene."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from openrr.protocol.render import (
    CLOSE_BAD_REQUEST,
    CLOSE_CODES,
    CLOSE_CONTROLLER_TAKEN,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
)
from openrr.render.access import Refused, TokenGate, bearer
from openrr.render.commands import BAD_REQUEST, answer
from openrr.render.handlers import HANDLERS, Connection, camera_doc, received
from openrr.render.identity import ServerIdentity
from openrr.render.session import CODECS, Client, SceneSession
from openrr.render.webrtc import WebRTCPeers
from openrr.tokens import TokenClaims

logger = logging.getLogger(__name__)


class StreamEndpoint:
    def __init__(self, identity: ServerIdentity, scene: SceneSession, gate: TokenGate, grace_s: float) -> None:
        self.identity = identity
        self.scene = scene
        self.grace_s = grace_s
        self.gate = gate
        self._grace_task: asyncio.Task[None] | None = None
        self.webrtc = WebRTCPeers(scene)
        self._connections: dict[WebSocket, tuple[Client, str]] = {}
        """Every admitted client, with the id of the account key its token was minted with."""
        self._closing: set[asyncio.Task[None]] = set()
        gate.on_revoke.append(self._revoke)

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        role = ws.query_params.get("role", "controller")
        refusal = self._refusal(ws, role)
        if isinstance(refusal, tuple):
            code, message = refusal
            await ws.send_json({"type": "error", "code": CLOSE_CODES[code], "message": message})
            await ws.close(code=code, reason=message[:120])
            return
        client = Client(role, ws.send_bytes, ws.query_params.get("codec", "jpeg"))
        connection = Connection(client, self.scene, self.webrtc, ws.send_json)
        accepted = received(self.scene)
        self._connections[ws] = (client, refusal.key_id)
        if role == "controller" and self._grace_task is not None:
            self._grace_task.cancel()
            self._grace_task = None
        self.scene.attach(client)
        logger.info("%s connected (%d clients)", role, len(self.scene.clients))
        try:
            await ws.send_json(
                {
                    "type": "welcome",
                    "role": role,
                    "codec": client.codec,
                    "sessionId": self.identity.session_id,
                    "renderer": self.scene.gl_renderer,
                    "width": self.scene.width,
                    "height": self.scene.height,
                    "entities": [e.describe() for e in self.scene.entities.values()],
                    "camera": camera_doc(self.scene.camera),
                    "cutPlanes": [{"normal": n, "point": p} for n, p in self.scene.cut_planes],
                }
            )
            while True:
                event = await ws.receive()
                if event["type"] == "websocket.disconnect":
                    break
                text = event.get("text")
                try:
                    doc = json.loads(text) if text is not None else None
                except ValueError as e:
                    doc = None
                    why = f"Messages must be JSON: {e}."
                else:
                    why = "Messages are JSON objects sent as text frames."
                if not isinstance(doc, dict):
                    await ws.send_json({"type": "error", "code": BAD_REQUEST, "message": why})
                    continue
                await ws.send_json(await answer(connection, role, doc, HANDLERS, accepted))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._connections.pop(ws, None)
            self.scene.detach(client)
            await self.webrtc.close(client)
            logger.info("%s disconnected (%d clients)", role, len(self.scene.clients))
            if role == "controller" and self.scene.controller is None:
                self._grace_task = asyncio.create_task(self._clear_after_grace())

    def _revoke(self, key_ids: frozenset[str]) -> None:
        """Close the connections whose token was minted with a key that is no longer the account's."""
        for ws, (client, key_id) in list(self._connections.items()):
            if key_id in key_ids:
                continue
            del self._connections[ws]
            self.scene.detach(client)  # no more frames for it, at once
            task = asyncio.get_running_loop().create_task(self._close_revoked(ws))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_revoked(self, ws: WebSocket) -> None:
        message = "The access token was revoked (its account key was rotated, or the account deleted)."
        with contextlib.suppress(Exception):
            await ws.send_json({"type": "error", "code": CLOSE_CODES[CLOSE_UNAUTHORIZED], "message": message})
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_UNAUTHORIZED, reason="token revoked")
        logger.info("closed a connection whose token was revoked")

    def _refusal(self, ws: WebSocket, role: str) -> tuple[int, str] | TokenClaims:
        """The claims of the client's token, or why it is refused: a close code (its error code is CLOSE_CODES')
        and a message."""
        if role not in ("controller", "watcher"):
            return CLOSE_BAD_REQUEST, f"Unknown role '{role[:40]}'; use controller or watcher."
        codec = ws.query_params.get("codec", "jpeg")
        if codec not in CODECS:
            return CLOSE_BAD_REQUEST, f"Unknown codec '{codec[:40]}'; use jpeg, h264 or png."
        token = ws.query_params.get("access_token", "") or bearer(ws.headers.get("authorization", ""))
        if not token:
            return CLOSE_UNAUTHORIZED, "An STS access token is required (access_token=...)."
        try:
            claims = self.gate.admit(token)
        except Refused as e:
            if e.status == 401:
                return CLOSE_UNAUTHORIZED, e.message
            return CLOSE_FORBIDDEN, e.message
        if role == "controller" and self.scene.controller is not None:
            return (
                CLOSE_CONTROLLER_TAKEN,
                "Another client controls this session; only one controller at a time. Connect with role=watcher "
                "to watch.",
            )
        return claims

    async def _clear_after_grace(self) -> None:
        await asyncio.sleep(self.grace_s)  # the reconnect grace period itself, not a wait for a state
        if self.scene.controller is None:
            logger.info("no controller came back within %.0f s: clearing the scene", self.grace_s)
            await self.scene.clear()
