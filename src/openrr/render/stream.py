"""The WebSocket on the handshake port: authenticates a client with an STS token of the session's account,
enforces one controller at a time (watchers are unlimited), and maps JSON commands onto the scene."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, TypeGuard

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from openrr.model.mesh import ModelLoadError
from openrr.protocol.render import CLOSE_BAD_REQUEST, CLOSE_CONTROLLER_TAKEN, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED
from openrr.render.access import Refused, TokenGate, bearer
from openrr.render.camera import Camera
from openrr.render.identity import ServerIdentity
from openrr.render.session import CODECS, Client, SceneSession
from openrr.render.webrtc import WEBRTC_COMMANDS, WebRTCPeers
from openrr.tokens import TokenClaims

logger = logging.getLogger(__name__)
MUTATING = {"loadModel", "unloadModel", "setTransform", "setOverride", "setCamera", "setCutPlanes", "setStream"}


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
            code, error, message = refusal
            await ws.send_json({"type": "error", "code": error, "message": message})
            await ws.close(code=code, reason=message[:120])
            return
        client = Client(role, ws.send_bytes, ws.query_params.get("codec", "jpeg"))
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
                    "camera": _camera_doc(self.scene.camera),
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
                    await ws.send_json({"type": "error", "code": "BadRequest", "message": why})
                    continue
                await self._dispatch(ws, client, doc)
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
            await ws.send_json({"type": "error", "code": "Unauthorized", "message": message})
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_UNAUTHORIZED, reason="token revoked")
        logger.info("closed a connection whose token was revoked")

    def _refusal(self, ws: WebSocket, role: str) -> tuple[int, str, str] | TokenClaims:
        if role not in ("controller", "watcher"):
            return CLOSE_BAD_REQUEST, "BadRequest", f"Unknown role '{role[:40]}'; use controller or watcher."
        codec = ws.query_params.get("codec", "jpeg")
        if codec not in CODECS:
            return CLOSE_BAD_REQUEST, "BadRequest", f"Unknown codec '{codec[:40]}'; use jpeg or h264."
        token = ws.query_params.get("access_token", "") or bearer(ws.headers.get("authorization", ""))
        if not token:
            return CLOSE_UNAUTHORIZED, "Unauthorized", "An STS access token is required (access_token=...)."
        try:
            claims = self.gate.admit(token)
        except Refused as e:
            if e.status == 401:
                return CLOSE_UNAUTHORIZED, "Unauthorized", e.message
            return CLOSE_FORBIDDEN, "Forbidden", e.message
        if role == "controller" and self.scene.controller is not None:
            return (
                CLOSE_CONTROLLER_TAKEN,
                "ControllerConnected",
                "Another client controls this session; only one controller at a time. Connect with role=watcher "
                "to watch.",
            )
        return claims

    async def _clear_after_grace(self) -> None:
        await asyncio.sleep(self.grace_s)  # the reconnect grace period itself, not a wait for a state
        if self.scene.controller is None:
            logger.info("no controller came back within %.0f s: clearing the scene", self.grace_s)
            for entity_id in list(self.scene.entities):
                await self.scene.unload(entity_id)

    async def _dispatch(self, ws: WebSocket, client: Client, message: dict[str, Any]) -> None:
        mid = message.get("id", 0)
        kind = message.get("type")
        try:
            if not isinstance(mid, int) or isinstance(mid, bool) or mid < 0:
                raise CommandError("BadRequest", "'id' must be a non-negative integer.")
            if kind in MUTATING and client.role != "controller":
                raise CommandError("Forbidden", "Watchers cannot change the scene.")
            if kind in WEBRTC_COMMANDS:  # controllers and watchers alike
                result = await self.webrtc.command(client, str(kind), message)
            else:
                if mid and kind in MUTATING:  # only commands that lead to a frame
                    self.scene.command_received(mid)
                result = await self._run(ws, client, mid, str(kind), message)
        except CommandError as e:
            await ws.send_json(
                {"type": "result", "id": mid, "ok": False, "error": {"code": e.code, "message": e.message}}
            )
            return
        except (KeyError, ValueError, TypeError) as e:
            msg = str(e.args[0]) if e.args else str(e)
            await ws.send_json(
                {"type": "result", "id": mid, "ok": False, "error": {"code": "BadRequest", "message": msg}}
            )
            return
        await ws.send_json({"type": "result", "id": mid, "ok": True, **result})

    async def _run(self, ws: WebSocket, client: Client, mid: int, kind: str, m: dict[str, Any]) -> dict[str, Any]:
        scene = self.scene
        if kind == "loadModel":
            url = _str(m, "url")

            def progress(fraction: float) -> None:
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(
                        ws.send_json({"type": "loadProgress", "id": mid, "progress": round(fraction, 3)}), loop
                    )

            loop = asyncio.get_running_loop()
            try:
                entity = await scene.load(url, progress)
            except ModelLoadError as e:
                raise CommandError("ModelLoadFailed", str(e)) from e
            if "transform" in m:
                await scene.set_transform(entity.entity_id, _matrix(m["transform"]))
            scene.mark_dirty(mid)
            doc = entity.describe()
            if scene.warnings:
                doc["warnings"] = list(scene.warnings)
            return doc
        if kind == "unloadModel":
            await scene.unload(_int(m, "entityId"))
        elif kind == "setTransform":
            await scene.set_transform(_int(m, "entityId"), _matrix(m.get("matrix")))
        elif kind == "setOverride":
            await scene.set_override(
                _int(m, "entityId"),
                hidden=_opt_bool(m, "hidden"),
                tint=_opt_color(m, "tint"),
                see_through=_opt_bool(m, "seeThrough"),
                selected=_opt_bool(m, "selected"),
            )
        elif kind == "setCamera":
            scene.set_camera(_camera(m, scene.camera))
        elif kind == "setCutPlanes":
            planes = m.get("planes")
            if not isinstance(planes, list):
                raise CommandError("BadRequest", "'planes' must be an array of {normal, point}.")
            await scene.set_cut_planes([(_vec(p, "normal"), _vec(p, "point")) for p in planes])
        elif kind == "setStream":
            width, height = _int(m, "width"), _int(m, "height")
            if not (16 <= width <= 3840 and 16 <= height <= 2160):
                raise CommandError("BadRequest", "width and height must be within 16x16 .. 3840x2160.")
            await scene.resize(width, height)
            if "fps" in m:
                scene.max_fps = max(1.0, min(120.0, float(m["fps"])))
        elif kind == "rayCast":
            hit = scene.ray_cast(_vec(m, "origin"), _vec(m, "direction"), float(m.get("maxDistance", float("inf"))))
            return {"hit": None if hit is None else _hit_doc(hit)}
        elif kind == "requestKeyframe":
            # A decoder that lost its place (e.g. after an error) cannot resume until the next keyframe.
            client.needs_keyframe = client.codec == "h264"
        elif kind == "getStats":
            return {"stats": {**scene.describe_stats(), "webrtcPeers": len(self.webrtc.peers)}}
        elif kind == "getScene":
            return {"entities": [e.describe() for e in scene.entities.values()], "camera": _camera_doc(scene.camera)}
        else:
            raise CommandError("BadRequest", f"Unknown command type '{str(kind)[:40]}'.")
        scene.mark_dirty(mid)
        return {}


def _hit_doc(hit: Any) -> dict[str, Any]:
    return {
        "entityId": hit.entity_id,
        "position": list(hit.position),
        "normal": list(hit.normal),
        "distance": hit.distance,
    }


def _camera_doc(c: Camera) -> dict[str, Any]:
    return {"position": list(c.position), "target": list(c.target), "up": list(c.up), "fovY": c.fov_y_deg}


def _camera(m: dict[str, Any], current: Camera) -> Camera:
    fov = float(m.get("fovY", current.fov_y_deg))
    if not 1.0 <= fov <= 170.0:
        raise CommandError("BadRequest", "fovY must be between 1 and 170 degrees.")
    position = tuple(_vec(m, "position")) if "position" in m else current.position
    target = tuple(_vec(m, "target")) if "target" in m else current.target
    up = tuple(_vec(m, "up")) if "up" in m else current.up
    if np.allclose(position, target):
        raise CommandError("BadRequest", "The camera position and target must differ.")
    return Camera(position=position, target=target, up=up, fov_y_deg=fov, near=current.near, far=current.far)  # type: ignore[arg-type]


def _str(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    if not isinstance(v, str) or not v:
        raise CommandError("BadRequest", f"'{key}' must be a non-empty string.")
    return v


def _int(m: dict[str, Any], key: str) -> int:
    v = m.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise CommandError("BadRequest", f"'{key}' must be an integer.")
    return v


def _numbers(v: Any, n: int) -> TypeGuard[list[float]]:
    """Whether `v` is a JSON array of `n` finite numbers."""
    return (
        isinstance(v, list)
        and len(v) == n
        and all(isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x) for x in v)
    )


def _vec(m: Any, key: str) -> list[float]:
    v = m.get(key) if isinstance(m, dict) else None
    if not _numbers(v, 3):
        raise CommandError("BadRequest", f"'{key}' must be an array of 3 numbers.")
    return [float(x) for x in v]


def _matrix(v: Any) -> np.ndarray:
    if not _numbers(v, 16):
        raise CommandError("BadRequest", "A transform is an array of 16 numbers (4x4, row-major).")
    return np.asarray(v, dtype=np.float32).reshape(4, 4)


def _opt_bool(m: dict[str, Any], key: str) -> bool | None:
    v = m.get(key)
    if v is not None and not isinstance(v, bool):
        raise CommandError("BadRequest", f"'{key}' must be true or false.")
    return v


def _opt_color(m: dict[str, Any], key: str) -> tuple[float, float, float, float] | None:
    v = m.get(key)
    if v is None:
        return None
    if not _numbers(v, 4) or not all(0 <= x <= 1 for x in v):
        raise CommandError("BadRequest", f"'{key}' must be an array of 4 numbers between 0 and 1 (RGBA).")
    return (float(v[0]), float(v[1]), float(v[2]), float(v[3]))
