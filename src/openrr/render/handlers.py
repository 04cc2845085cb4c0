"""What each command does to the scene (the models are in commands.py): one handler per command, in one table."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
    AddLight,
    Command,
    CommandError,
    GetBounds,
    GetChildren,
    GetEntity,
    GetMetadata,
    GetScene,
    GetStats,
    Handler,
    LightFields,
    ListLights,
    ListMaterials,
    LoadModel,
    RayCast,
    RemoveLight,
    Reply,
    RequestKeyframe,
    SetCamera,
    SetCutPlanes,
    SetEntityTransform,
    SetEnvironment,
    SetLight,
    SetMaterial,
    SetOutput,
    SetOverride,
    SetStream,
    SetTransform,
    UnloadModel,
    WebrtcClose,
    WebrtcOffer,
)
from openrr.render.lighting import Light
from openrr.render.session import Client, SceneSession, light_doc
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
        await c.scene.set_transform(entity.root_id, _matrix(cmd.transform))
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
    values = {"hidden": cmd.hidden, "tint": cmd.tint, "see_through": cmd.see_through, "selected": cmd.selected}
    await c.scene.set_override(cmd.entity_id, values)
    return _changed(c, cmd)


async def set_camera(c: Connection, cmd: SetCamera) -> Reply:
    now = c.scene.camera
    position, target = cmd.position or now.position, cmd.target or now.target
    if np.allclose(position, target):  # depends on the camera as it is: not a check of the fields alone
        raise CommandError(BAD_REQUEST, "The camera position and target must differ.")
    fov = now.fov_y_deg if cmd.fov_y is None else cmd.fov_y
    given = cmd.model_fields_set  # null is "follow the scene", left out is "as it is"
    near = cmd.near if "near" in given else c.scene.near
    far = cmd.far if "far" in given else c.scene.far
    if near is not None and far is not None and not near < far:
        raise CommandError(BAD_REQUEST, f"The near plane ({near:g}) must be nearer than the far plane ({far:g}).")
    c.scene.set_camera(Camera(position, target, cmd.up or now.up, fov), near, far)
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
    if not any(cmd.direction):
        raise CommandError(BAD_REQUEST, "'direction' must not be zero.")
    hit = c.scene.ray_cast(list(cmd.origin), list(cmd.direction), cmd.max_distance)
    return {"hit": None if hit is None else _hit_doc(c.scene, hit)}


async def request_keyframe(c: Connection, cmd: RequestKeyframe) -> Reply:
    # A decoder that lost its place (e.g. after an error) cannot resume until the next keyframe.
    c.client.needs_keyframe = c.client.codec == "h264"
    return _changed(c, cmd)


async def get_stats(c: Connection, cmd: GetStats) -> Reply:
    return {"stats": {**c.scene.describe_stats(), "webrtcPeers": len(c.webrtc.peers)}}


async def get_scene(c: Connection, cmd: GetScene) -> Reply:
    scene = c.scene
    return {
        "entities": [e.describe() for e in scene.entities.values()],
        "camera": camera_doc(scene.camera, scene),
        "environment": scene.environment.describe(),
        "output": scene.output.describe(),
        "lights": [light_doc(k, v) for k, v in scene.lights.items()],
    }


async def get_entity(c: Connection, cmd: GetEntity) -> Reply:
    entities, node = c.scene.find(cmd.entity_id)
    return entities.entity_doc(node)


async def get_children(c: Connection, cmd: GetChildren) -> Reply:
    entities, node = c.scene.find(cmd.entity_id)
    children = entities.children[node]
    page = children[cmd.offset : cmd.offset + cmd.limit]
    return {"children": [entities.child_doc(k) for k in page], "total": len(children)}


async def set_entity_transform(c: Connection, cmd: SetEntityTransform) -> Reply:
    if (cmd.local is None) == (cmd.world is None):
        raise CommandError(BAD_REQUEST, "Give exactly one of 'local' and 'world'.")
    local = None if cmd.local is None else _matrix(cmd.local).astype(np.float64)
    world = None if cmd.world is None else _matrix(cmd.world).astype(np.float64)
    await c.scene.set_entity_transform(cmd.entity_id, local, world)
    return _changed(c, cmd)


async def get_bounds(c: Connection, cmd: GetBounds) -> Reply:
    entities, node = c.scene.find(cmd.entity_id)
    box = entities.bounds(node, cmd.space)
    return {"bounds": None if box is None else {"min": box[0].tolist(), "max": box[1].tolist()}}


async def get_metadata(c: Connection, cmd: GetMetadata) -> Reply:
    entities, node = c.scene.find(cmd.entity_id)
    return {"metadata": entities.nodes[node].metadata}


async def list_materials(c: Connection, cmd: ListMaterials) -> Reply:
    entities = c.scene.model_of(cmd.entity_id)
    return {"materials": [entities.material_doc(k) for k in range(len(entities.materials))]}


_MATERIAL_FIELDS = ("base_color", "metallic", "roughness", "emissive", "emissive_strength", "alpha_mode",
                    "alpha_cutoff", "unlit", "double_sided")  # fmt: skip


async def set_material(c: Connection, cmd: SetMaterial) -> Reply:
    changes = {name: getattr(cmd, name) for name in _MATERIAL_FIELDS if getattr(cmd, name) is not None}
    await c.scene.set_material(cmd.entity_id, cmd.material, changes)
    return _changed(c, cmd)


async def set_environment(c: Connection, cmd: SetEnvironment) -> Reply:
    given = cmd.model_fields_set
    if cmd.url is not None and cmd.cube_urls is not None:
        raise CommandError(BAD_REQUEST, "Give either 'url' or 'cubeUrls', not both.")
    if cmd.url is None and cmd.cube_urls is None and "url" not in given and cmd.intensity is not None:
        await c.scene.set_environment_intensity(cmd.intensity)  # only the intensity changes
    else:
        urls = [cmd.url] if cmd.url is not None else None if cmd.cube_urls is None else list(cmd.cube_urls)
        await c.scene.set_environment(urls, cmd.intensity)
    return _changed(c, cmd)


async def set_output(c: Connection, cmd: SetOutput) -> Reply:
    await c.scene.set_output(cmd.exposure, cmd.tone_mapping, cmd.antialiasing)
    return _changed(c, cmd)


_LIGHT_FIELDS = ("color", "intensity", "range", "position", "direction", "inner_cone_angle", "outer_cone_angle")


def _light(cmd: LightFields, base: Light) -> Light:
    """`base` with the command's fields; BadRequest naming what is wrong (the command's model checks each field
    alone, this checks them together)."""
    fields: dict[str, Any] = dataclasses.asdict(base)
    fields.update({n: getattr(cmd, n) for n in _LIGHT_FIELDS if getattr(cmd, n) is not None})
    if "range" in cmd.model_fields_set and cmd.range is None:
        fields["range"] = None  # null: infinite
    if getattr(cmd, "kind", None) is not None:
        fields["kind"] = cmd.kind  # type: ignore[attr-defined]
    if fields["kind"] != "point" and not any(fields["direction"]):
        raise CommandError(BAD_REQUEST, "'direction' must not be zero.")
    inner, outer = fields["inner_cone_angle"], fields["outer_cone_angle"]
    if not inner < outer:
        raise CommandError(BAD_REQUEST, f"'innerConeAngle' ({inner:g}) must be less than 'outerConeAngle' ({outer:g}).")
    try:
        return Light(**fields)
    except ValueError as e:  # lighting.py's own checks, which the fields above already passed
        raise CommandError(BAD_REQUEST, f"{e}.") from None


async def add_light(c: Connection, cmd: AddLight) -> Reply:
    light_id = await c.scene.add_light(_light(cmd, Light(cmd.kind)))
    c.scene.mark_dirty(cmd.id)
    return {"lightId": light_id}


async def set_light(c: Connection, cmd: SetLight) -> Reply:
    await c.scene.set_light(cmd.light_id, _light(cmd, c.scene.light(cmd.light_id)))
    return _changed(c, cmd)


async def remove_light(c: Connection, cmd: RemoveLight) -> Reply:
    await c.scene.remove_light(cmd.light_id)
    return _changed(c, cmd)


async def list_lights(c: Connection, cmd: ListLights) -> Reply:
    return {"lights": [light_doc(k, v) for k, v in c.scene.lights.items()]}


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
    GetEntity: get_entity,
    GetChildren: get_children,
    SetEntityTransform: set_entity_transform,
    GetBounds: get_bounds,
    GetMetadata: get_metadata,
    ListMaterials: list_materials,
    SetMaterial: set_material,
    SetEnvironment: set_environment,
    SetOutput: set_output,
    AddLight: add_light,
    SetLight: set_light,
    RemoveLight: remove_light,
    ListLights: list_lights,
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


def _hit_doc(scene: SceneSession, hit: RayHit) -> dict[str, Any]:
    entities = scene.entities[hit.entity_id]
    return {
        "entityId": hit.entity_id + hit.node,
        "name": entities.nodes[hit.node].name,
        "path": entities.path(hit.node),
        "modelEntityId": hit.entity_id,
        "position": list(hit.position),
        "normal": list(hit.normal),
        "distance": hit.distance,
    }


def camera_doc(c: Camera, scene: SceneSession | None = None) -> dict[str, Any]:
    """With `scene`: also the planes, as set (`near`, `far`: null = the scene's) and as used (`planes`)."""
    doc: dict[str, Any] = {
        "position": list(c.position),
        "target": list(c.target),
        "up": list(c.up),
        "fovY": c.fov_y_deg,
    }
    if scene is not None:
        doc.update(near=scene.near, far=scene.far, planes=list(scene.planes()))
    return doc
