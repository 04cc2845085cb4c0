"""What each command does to the scene (the models are in commands.py): one handler per command, in one table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from openrr.model.mesh import ModelLoadError
from openrr.model.raycast import RayHit
from openrr.render.camera import Camera
from openrr.render.commands import (
    BAD_REQUEST,
    COMMANDS,
    MODEL_LOAD_FAILED,
    Command,
    CommandError,
    GetScene,
    GetStats,
    Handler,
    LoadModel,
    RayCast,
    Reply,
    RequestKeyframe,
    SetCamera,
    SetCutPlanes,
    SetOverride,
    SetStream,
    SetTransform,
    UnloadModel,
    WebrtcClose,
    WebrtcOffer,
)
from openrr.render.session import Client, SceneSession
from openrr.render.webrtc import WebRTCPeers


@dataclass
class Connection:
    """What a handler works on: one client's connection and the scene it shares with the others."""

    client: Client
    scene: SceneSession
    webrtc: WebRTCPeers
    send_json: Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


async def load_model(c: Connection, cmd: LoadModel) -> Reply:
    loop = asyncio.get_running_loop()

    def progress(fraction: float) -> None:  # called on the loading thread
        message = {"type": "loadProgress", "id": cmd.id, "progress": round(fraction, 3)}
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(c.send_json(message), loop)

    try:
        entity = await c.scene.load(cmd.url, progress)
    except ModelLoadError as e:
        raise CommandError(MODEL_LOAD_FAILED, str(e)) from e
    if cmd.transform is not None:
        await c.scene.set_transform(entity.entity_id, _matrix(cmd.transform))
    c.scene.mark_dirty(cmd.id)
    doc = entity.describe()
    if c.scene.warnings:
        doc["warnings"] = list(c.scene.warnings)
    return doc


async def unload_model(c: Connection, cmd: UnloadModel) -> Reply:
    await c.scene.unload(cmd.entity_id)
    return _changed(c, cmd)


async def set_transform(c: Connection, cmd: SetTransform) -> Reply:
    await c.scene.set_transform(cmd.entity_id, _matrix(cmd.matrix))
    return _changed(c, cmd)


async def set_override(c: Connection, cmd: SetOverride) -> Reply:
    tint = None if cmd.tint is None else (cmd.tint[0], cmd.tint[1], cmd.tint[2], cmd.tint[3])
    await c.scene.set_override(
        cmd.entity_id, hidden=cmd.hidden, tint=tint, see_through=cmd.see_through, selected=cmd.selected
    )
    return _changed(c, cmd)


async def set_camera(c: Connection, cmd: SetCamera) -> Reply:
    now = c.scene.camera
    position, target = cmd.position or now.position, cmd.target or now.target
    if np.allclose(position, target):  # depends on the camera as it is: not a check of the fields alone
        raise CommandError(BAD_REQUEST, "The camera position and target must differ.")
    fov = now.fov_y_deg if cmd.fov_y is None else cmd.fov_y
    c.scene.set_camera(Camera(position, target, cmd.up or now.up, fov, now.near, now.far))
    return _changed(c, cmd)


async def set_cut_planes(c: Connection, cmd: SetCutPlanes) -> Reply:
    await c.scene.set_cut_planes([(list(p.normal), list(p.point)) for p in cmd.planes])
    return _changed(c, cmd)


async def set_stream(c: Connection, cmd: SetStream) -> Reply:
    await c.scene.resize(cmd.width, cmd.height)
    if cmd.fps is not None:
        c.scene.max_fps = max(1.0, min(120.0, cmd.fps))
    return _changed(c, cmd)


async def ray_cast(c: Connection, cmd: RayCast) -> Reply:
    hit = c.scene.ray_cast(list(cmd.origin), list(cmd.direction), cmd.max_distance)
    return {"hit": None if hit is None else _hit_doc(hit)}


async def request_keyframe(c: Connection, cmd: RequestKeyframe) -> Reply:
    # A decoder that lost its place (e.g. after an error) cannot resume until the next keyframe.
    c.client.needs_keyframe = c.client.codec == "h264"
    return _changed(c, cmd)


async def get_stats(c: Connection, cmd: GetStats) -> Reply:
    return {"stats": {**c.scene.describe_stats(), "webrtcPeers": len(c.webrtc.peers)}}


async def get_scene(c: Connection, cmd: GetScene) -> Reply:
    return {"entities": [e.describe() for e in c.scene.entities.values()], "camera": camera_doc(c.scene.camera)}


async def webrtc_offer(c: Connection, cmd: WebrtcOffer) -> Reply:
    return await c.webrtc.offer(c.client, cmd.sdp, cmd.flush)


async def webrtc_close(c: Connection, cmd: WebrtcClose) -> Reply:
    await c.webrtc.close(c.client)
    return {}


HANDLERS: dict[type[Command], Handler[Connection]] = {
    LoadModel: load_model,
    UnloadModel: unload_model,
    SetTransform: set_transform,
    SetOverride: set_override,
    SetCamera: set_camera,
    SetCutPlanes: set_cut_planes,
    SetStream: set_stream,
    RayCast: ray_cast,
    RequestKeyframe: request_keyframe,
    GetStats: get_stats,
    GetScene: get_scene,
    WebrtcOffer: webrtc_offer,
    WebrtcClose: webrtc_close,
}
assert set(HANDLERS) == set(COMMANDS), "every command has a handler"


def received(scene: SceneSession) -> Callable[[Command], None]:
    """For `answer`: start a scene-changing command's latency clock when it arrives (commands.answer's `accepted`)."""

    def accepted(command: Command) -> None:
        if command.id and command.mutating:
            scene.command_received(command.id)

    return accepted


def _changed(c: Connection, cmd: Command) -> Reply:
    """Ask for a frame that shows the command (stamped with its id); no fields in the result."""
    c.scene.mark_dirty(cmd.id)
    return {}


def _matrix(numbers: tuple[float, ...]) -> np.ndarray:
    return np.asarray(numbers, dtype=np.float32).reshape(4, 4)


def _hit_doc(hit: RayHit) -> dict[str, Any]:
    return {
        "entityId": hit.entity_id,
        "position": list(hit.position),
        "normal": list(hit.normal),
        "distance": hit.distance,
    }


def camera_doc(c: Camera) -> dict[str, Any]:
    return {"position": list(c.position), "target": list(c.target), "up": list(c.up), "fovY": c.fov_y_deg}
