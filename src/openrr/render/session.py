"""One render server's scene, the clients watching it, and the frames sent to them.

The GL work happens in the render process (frame_process.py), which renders on its own whenever it is told the
scene changed, into memory shared with this process; frames are encoded here on a worker thread, and downloads and
parsing run on worker threads too; the asyncio loop only routes messages and frames.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import simplejpeg

from openrr.model.mesh import Material
from openrr.model.raycast import PartPoses, RayCaster, RayHit
from openrr.model.scene_graph import apply_scene_graph_mode
from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits
from openrr.protocol.redaction import display_url
from openrr.protocol.render import CODEC_H264, CODEC_JPEG, CODEC_PNG, FrameHeader, pack_frame
from openrr.render.camera import Camera
from openrr.render.commands import BAD_REQUEST, ENVIRONMENT_LOAD_FAILED, CommandError
from openrr.render.entities import EntityRefused, ModelEntities, OverrideValue
from openrr.render.environment import (
    Environment,
    decode_environment_image,
    default_environment,
    environment_from_cube,
    environment_from_equirect,
)
from openrr.render.frame_process import FrameState, RenderedFrame, RenderProcess
from openrr.render.h264 import H264Encoder
from openrr.render.lighting import MAX_LIGHTS, Light
from openrr.render.model_loader import load_model
from openrr.render.source_fetch import SourceFetchFailed, fetch_source
from openrr.render.stamp import write_stamp_i420
from openrr.render.yuv import I420, even_size, to_i420
from openrr.storage.area_files import LocalFiles
from openrr.storage.fetch import DEFAULT_HTTP, HttpOptions

logger = logging.getLogger(__name__)

STANDARD_PRIMITIVE_LIMIT = 20_000_000
DEFAULT_FPS = 60.0
"""The frame cap while the scene changes: frames are only rendered when something changed, so an idle session
costs nothing whatever the cap; a moving camera gets as many frames as the renderer can make, up to this."""
CODECS = {"jpeg": CODEC_JPEG, "h264": CODEC_H264, "png": CODEC_PNG}
RAW_CODEC = "webrtc"
"""A client whose own transport encodes (WebRTC, see webrtc.py): it is handed each picture as I420 (yuv.py), with
its command id stamped into it (stamp.py)."""


DEFAULT_NEAR, DEFAULT_FAR = Camera.near, Camera.far
"""The planes of an empty scene."""
AUTO_NEAR_RATIO = 1e-4
"""Auto planes with the camera inside the scene's bounds: near = far * this (a 24-bit depth buffer keeps ~4
significant digits over such a range)."""


@dataclass
class Output:
    exposure: float = 1.0
    tone_mapping: str = "none"
    antialiasing: str | None = None
    """None: the renderer's default, chosen by measurement."""

    def describe(self) -> dict[str, Any]:
        return {"exposure": self.exposure, "toneMapping": self.tone_mapping, "antialiasing": self.antialiasing}


@dataclass
class EnvironmentState:
    source: str | None = None
    """None: the built-in environment; otherwise the URL, or the six cube URLs joined."""
    cube: bool = False
    intensity: float = 1.0

    def describe(self) -> dict[str, Any]:
        shown = None if self.source is None else [display_url(u) for u in self.source.split("\n")]
        return {
            "builtIn": self.source is None,
            "url": None if shown is None or self.cube else shown[0],
            "cubeUrls": shown if self.cube else None,
            "intensity": self.intensity,
        }


def light_doc(light_id: int, light: Light) -> dict[str, Any]:
    return {
        "lightId": light_id,
        "kind": light.kind,
        "color": list(light.color),
        "intensity": light.intensity,
        "range": light.range,
        "position": list(light.position),
        "direction": list(light.direction),
        "innerConeAngle": light.inner_cone_angle,
        "outerConeAngle": light.outer_cone_angle,
    }


class Client:
    """A connected WebSocket client: where frames go, and in which codec."""

    def __init__(self, role: str, send_bytes: Callable[[bytes], Awaitable[None]], codec: str = "jpeg") -> None:
        self.role = role
        self.send_bytes = send_bytes
        self.codec = codec
        self.busy = False  # a frame is still being sent: drop rather than queue (latency over completeness)
        self.needs_keyframe = codec == "h264"
        """An H.264 client can only start, or resume after a dropped frame, at a keyframe."""
        self.send_raw: Callable[[I420], None] | None = None
        """Set while codec is RAW_CODEC: takes each picture, as I420 stamped with the last applied command id."""


@dataclass
class Stats:
    frames_sent: int = 0
    bytes_sent: int = 0
    last_render_ms: float = 0.0
    last_encode_ms: float = 0.0
    last_frame_ms: float = 0.0
    triangles_drawn: int = 0
    frame_times: deque[float] = field(default_factory=lambda: deque(maxlen=120))
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=120))

    def fps(self) -> float:
        if len(self.frame_times) < 2:
            return 0.0
        span = self.frame_times[-1] - self.frame_times[0]
        return (len(self.frame_times) - 1) / span if span > 0 else 0.0


class SceneSession:
    def __init__(
        self,
        size: str,
        width: int = 1280,
        height: int = 720,
        fps: float = DEFAULT_FPS,
        quality: int = 80,
        label: str = "",
        primitive_limit: int = STANDARD_PRIMITIVE_LIMIT,
        http: HttpOptions = DEFAULT_HTTP,
        model_max_bytes: int = 2 * 1024**3,
        textures: TextureLimits = DEFAULT_TEXTURES,
        local_files: LocalFiles | None = None,
    ) -> None:
        self.size = size
        self.label = label
        self.primitive_limit = primitive_limit
        """For Standard sessions; Premium has no fixed cap, as in ARR."""
        self.http = http
        """What http(s) model loads may reach (--fetch-allow) and how far their downloads may expand."""
        self.model_max_bytes = model_max_bytes
        self.textures = textures
        """Texture width/height and pixel limits, checked before a texture is decoded."""
        self.local_files = local_files
        """How local paths are read (the session account's area, through the control plane's file broker);
        None: local models are refused."""
        self.width, self.height = width, height
        self.max_fps = fps
        self.quality = quality
        self._process: RenderProcess | None = None
        self.gl_renderer = ""
        self.raycaster = RayCaster()
        self.entities: dict[int, ModelEntities] = {}
        """The loaded models by their root's entity id; their parts' ids follow it (entities.py)."""
        self._roots: list[int] = []
        """Sorted root ids, to find the model of any entity id."""
        self._next_id = 1
        self.camera = Camera()
        """As the client set it; its planes are the ones in use (the scene's when `near`/`far` are None)."""
        self.near: float | None = None
        self.far: float | None = None
        self.lights: dict[int, Light] = {}
        self._next_light = 1
        self.output = Output()
        self.environment = EnvironmentState()
        self._box: tuple[np.ndarray, np.ndarray] | None = None
        self._box_stale = True
        self.cut_planes: list[tuple[list[float], list[float]]] = []
        self.clients: set[Client] = set()
        self.controller: Client | None = None
        self.stats = Stats()
        self.on_frame: Callable[[float], None] | None = None
        """Told each sent frame's time from render start, in seconds (the server's metrics)."""
        self._command_times: dict[int, float] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self.warnings: list[str] = []
        """About the scene as the last load left it (e.g. past the primitive limit); answered with that load."""
        self._rendered: asyncio.Queue[RenderedFrame] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        # One thread, so that H.264 frames go through their encoder in order.
        self._encoder = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._h264: H264Encoder | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._process = await RenderProcess.start(self.width, self.height, self._rendered.put_nowait, self.label)
        self.gl_renderer = self._process.gl_renderer
        self._sender = asyncio.create_task(self._send_frames(), name="frame-sender")

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._process is not None:
            await self._process.close()
        self._encoder.shutdown(wait=False)

    @property
    def process(self) -> RenderProcess:
        assert self._process is not None, "start() first"
        return self._process

    # --- clients -------------------------------------------------------------------------------------

    def attach(self, client: Client) -> None:
        self.clients.add(client)
        if client.role == "controller":
            self.controller = client
            # Command ids count per connection: frames must not carry the previous controller's ids.
            self.process.new_controller()
            self._command_times.clear()
        self.mark_dirty(0)

    def detach(self, client: Client) -> None:
        self.clients.discard(client)
        if self.controller is client:
            self.controller = None

    def command_received(self, command_id: int) -> None:
        """Start the command's latency clock on arrival: waiting for the frame being rendered counts too."""
        self._command_times[command_id] = time.perf_counter()

    def mark_dirty(self, command_id: int) -> None:
        """Ask for a new frame, stamped with `command_id` (0: no command of the controller's)."""
        if command_id:
            self._command_times.setdefault(command_id, time.perf_counter())
        if self._process is None:
            return
        self._process.request_frame(FrameState(command_id, bool(self.clients), self.max_fps))

    # --- models ------------------------------------------------------------------------------------------

    async def load(self, source: str, progress: Callable[[float], None]) -> ModelEntities:
        model = await asyncio.to_thread(
            functools.partial(
                load_model,
                source,
                progress,
                max_bytes=self.model_max_bytes,
                http=self.http,
                local_files=self.local_files,
                textures=self.textures,
            )
        )
        if model.scene_graph_mode == "none" and len(model.nodes) > 1:
            model = apply_scene_graph_mode(model, "none")  # one entity, whatever the source kept
        total = sum(e.model.primitives for e in self.entities.values()) + model.primitives
        entities = ModelEntities(self._next_id, source, model)
        root = entities.root_id
        # The ray-cast structure stays here, with the RayCaster: the render process only draws.
        await self.process.call("add_model", root, dataclasses.replace(model, collision=None))
        await asyncio.to_thread(self.raycaster.add, root, model)  # ~0.25 s per million triangles
        self._next_id += entities.count
        self.entities[root] = entities
        self._roots.append(root)  # ids only grow: stays sorted
        over = self.size == "Standard" and total > self.primitive_limit
        await self.process.call("set_over_limit", over)
        self.warnings = []
        if over:
            self.warnings.append(
                f"The scene has {total:,} primitives, more than a Standard session renders "
                f"({self.primitive_limit:,}): a checkerboard is shown instead. Use a Premium session."
            )
        logger.info(
            "loaded %s as entity %d: %d triangles, %d points, %d entities",
            model.name,
            root,
            model.triangles,
            model.points,
            entities.count,
        )
        self._camera_follows_scene()
        return entities

    async def unload(self, entity_id: int) -> None:
        entities = self.model_of(entity_id, root_only="unloadModel")
        root = entities.root_id
        await self.process.call("remove", root)
        self.raycaster.remove(root)
        del self.entities[root]
        self._roots.remove(root)
        total = sum(e.model.primitives for e in self.entities.values())
        await self.process.call("set_over_limit", self.size == "Standard" and total > self.primitive_limit)
        self._camera_follows_scene()

    def find(self, entity_id: int) -> tuple[ModelEntities, int]:
        """The model holding entity `entity_id`, and the entity's node in it."""
        at = bisect_right(self._roots, entity_id) - 1
        if at >= 0:
            entities = self.entities[self._roots[at]]
            if entities.contains(entity_id):
                return entities, entities.node(entity_id)
        raise CommandError(BAD_REQUEST, f"no entity {entity_id} is loaded")

    def model_of(self, entity_id: int, root_only: str = "") -> ModelEntities:
        """The model of `entity_id`; with `root_only` (the command's name), refused unless it is the model's root."""
        entities, node = self.find(entity_id)
        if root_only and node:
            raise CommandError(
                BAD_REQUEST,
                f"{root_only} takes a model's entity (the id loadModel answered); entity {entity_id} is "
                f"'{entities.nodes[node].name}', a part of model {entities.root_id}"
                + (": move parts with setEntityTransform" if root_only == "setTransform" else ""),
            )
        return entities

    async def set_transform(self, entity_id: int, matrix: np.ndarray) -> None:
        entities = self.model_of(entity_id, root_only="setTransform")
        await self.process.call("set_transform", entities.root_id, np.asarray(matrix, dtype=np.float32))
        entities.set_placement(matrix)
        self._camera_follows_scene()

    async def set_entity_transform(self, entity_id: int, local: np.ndarray | None, world: np.ndarray | None) -> None:
        entities, node = self.find(entity_id)
        before = entities.snapshot()
        try:
            nodes, deltas = entities.move(node, local, world)
        except EntityRefused as e:
            raise CommandError(BAD_REQUEST, str(e)) from None
        try:
            if node == 0:
                await self.process.call("set_transform", entities.root_id, entities.placement.astype(np.float32))
            else:
                await self.process.call("set_node_matrices", entities.root_id, nodes, deltas.astype(np.float32))
        except Exception:
            entities.restore(before)  # the scene stays as it was
            raise
        self._camera_follows_scene()

    async def set_override(self, entity_id: int, values: dict[str, OverrideValue]) -> None:
        entities, node = self.find(entity_id)
        before = entities.snapshot()
        nodes, rows = entities.set_overrides(node, values)
        if not nodes:
            return
        try:
            await self.process.call("set_node_states", entities.root_id, nodes, rows)
        except Exception:
            entities.restore(before)
            raise
        if values.get("hidden") is not None:
            self._camera_follows_scene()

    async def set_material(self, entity_id: int, index: int, changes: dict[str, Any]) -> Material:
        entities = self.model_of(entity_id)
        if not 0 <= index < len(entities.materials):
            count = len(entities.materials)
            raise CommandError(
                BAD_REQUEST, f"material {index} does not exist: model {entities.root_id} has {count} (0 to {count - 1})"
            )
        material = dataclasses.replace(entities.materials[index], **changes)
        await self.process.call("set_material", entities.root_id, index, material)
        entities.materials[index] = material
        return material

    # --- camera --------------------------------------------------------------------------------------------

    def set_camera(self, camera: Camera, near: float | None = None, far: float | None = None) -> None:
        """Never waits: the render process applies the latest camera before its next frame. `near`/`far` None:
        the scene's bounds decide (`planes`)."""
        self.camera, self.near, self.far = camera, near, far
        self._camera_follows_scene(scene_changed=False)

    def planes(self, camera: Camera | None = None) -> tuple[float, float]:
        """The near and far planes in use: the client's, or where it left them to the scene, what fits the world
        bounds of every shown model as seen from the camera (so a millimetre part and a factory both show whole)."""
        camera = camera or self.camera
        near, far = self.near, self.far
        if near is not None and far is not None:
            return near, far
        auto_near, auto_far = self._scene_planes(camera)
        if far is None:
            far = max(auto_far, 2.0 * near) if near is not None else auto_far
        if near is None:
            near = min(auto_near, far * 0.5)
        return near, far

    def _scene_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The world box of every shown part of every model; kept until the scene changes (a camera drag only
        moves the camera)."""
        if self._box_stale:
            boxes = [b for e in self.entities.values() if (b := e.bounds(0, "world", visible_only=True)) is not None]
            self._box = None
            if boxes:
                self._box = np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)
            self._box_stale = False
        return self._box

    def _scene_planes(self, camera: Camera) -> tuple[float, float]:
        box = self._scene_box()
        if box is None:
            return DEFAULT_NEAR, DEFAULT_FAR
        low, high = box
        centre, radius = (low + high) / 2, float(np.linalg.norm(high - low)) / 2
        distance = float(np.linalg.norm(np.asarray(camera.position) - centre))
        far = (distance + radius) * 1.01
        if not math.isfinite(far) or far <= 0:
            return DEFAULT_NEAR, DEFAULT_FAR
        far = max(far, 1e-6)
        near = max((distance - radius) * 0.99, far * AUTO_NEAR_RATIO)
        return near, far

    def _camera_follows_scene(self, scene_changed: bool = True) -> None:
        self._box_stale = self._box_stale or scene_changed
        near, far = self.planes()
        if self._process is not None:
            self._process.set_camera(dataclasses.replace(self.camera, near=near, far=far))

    async def set_cut_planes(self, planes: list[tuple[list[float], list[float]]]) -> None:
        await self.process.call("set_cut_planes", planes)
        self.cut_planes = planes

    # --- light and output ----------------------------------------------------------------------------------

    async def set_environment(self, urls: Sequence[str] | None, intensity: float | None) -> None:
        """`urls`: one equirectangular image, six cube faces, or None for the built-in environment."""
        intensity = self.environment.intensity if intensity is None else intensity
        if urls is None:
            env = await asyncio.to_thread(default_environment)
        else:
            env = await asyncio.to_thread(self._environment_from, list(urls))
        await self.process.call("set_environment", env, intensity)
        self.environment = EnvironmentState(
            None if urls is None else "\n".join(urls), urls is not None and len(urls) == 6, intensity
        )

    async def set_environment_intensity(self, intensity: float) -> None:
        await self.process.call("set_environment_intensity", intensity)
        self.environment = dataclasses.replace(self.environment, intensity=intensity)

    def _environment_from(self, urls: list[str]) -> Environment:
        """Fetch (as model files are fetched: same guard, area, SAS rules, size limit) and prefilter. Worker thread."""
        images = []
        for url in urls:
            try:
                data, display = fetch_source(
                    url, max_bytes=self.model_max_bytes, http=self.http, local_files=self.local_files
                )
            except SourceFetchFailed as e:
                raise CommandError(ENVIRONMENT_LOAD_FAILED, str(e)) from None
            try:
                images.append(decode_environment_image(data, display, cube_face=len(urls) == 6))
            except ValueError as e:
                raise CommandError(
                    ENVIRONMENT_LOAD_FAILED, f"cannot use {display} as an environment map: {e}"
                ) from None
        name = display_url(urls[0])
        if len(images) == 6:
            return environment_from_cube(images, name)
        return environment_from_equirect(images[0], name)

    async def set_output(self, exposure: float | None, tone_mapping: str | None, antialiasing: str | None) -> None:
        now = self.output
        if exposure is not None or tone_mapping is not None:
            exposure = now.exposure if exposure is None else exposure
            tone_mapping = now.tone_mapping if tone_mapping is None else tone_mapping
            await self.process.call("set_output", exposure, tone_mapping)
            self.output = dataclasses.replace(self.output, exposure=exposure, tone_mapping=tone_mapping)
        if antialiasing is not None:
            await self.process.call("set_antialiasing", antialiasing)
            self.output = dataclasses.replace(self.output, antialiasing=antialiasing)

    async def add_light(self, light: Light) -> int:
        if len(self.lights) >= MAX_LIGHTS:
            raise CommandError(
                BAD_REQUEST, f"a session has at most {MAX_LIGHTS} lights; remove one (removeLight) to add another"
            )
        light_id = self._next_light
        await self._set_lights({**self.lights, light_id: light})
        self._next_light += 1
        return light_id

    def light(self, light_id: int) -> Light:
        try:
            return self.lights[light_id]
        except KeyError:
            raise CommandError(BAD_REQUEST, f"no light {light_id} exists") from None

    async def set_light(self, light_id: int, light: Light) -> None:
        self.light(light_id)
        await self._set_lights({**self.lights, light_id: light})

    async def remove_light(self, light_id: int) -> None:
        self.light(light_id)
        await self._set_lights({k: v for k, v in self.lights.items() if k != light_id})

    async def _set_lights(self, lights: dict[int, Light]) -> None:
        await self.process.call("set_lights", list(lights.values()))
        self.lights = lights

    async def clear(self) -> None:
        """Back to a new session's scene: no models, and the view a new client expects (the default camera, no cut
        planes, the built-in environment, no lights, the default output), so that a client arriving later does not
        look at its models from where the last one left off, or through its cut planes. The stream size and frame
        cap stay: they are the client's, and it sets them."""
        for entity_id in list(self.entities):
            await self.unload(entity_id)  # its overrides go with it
        await self.set_cut_planes([])
        if self.lights:
            await self._set_lights({})
        if self.environment != EnvironmentState():
            await self.set_environment(None, 1.0)
        if self.output != Output():
            await self.set_output(1.0, "none", None)
            self.output = Output()
        self.set_camera(Camera())
        self.mark_dirty(0)

    async def resize(self, width: int, height: int) -> None:
        await self.process.call("resize", width, height)
        self.width, self.height = width, height

    def ray_cast(self, origin: list[float], direction: list[float], max_distance: float) -> RayHit | None:
        transforms = {root: e.placement for root, e in self.entities.items()}
        parts: dict[int, PartPoses] = {}
        hidden = set()
        for root, entities in self.entities.items():
            poses = entities.poses()
            if poses is not None and poses.hidden.all():
                hidden.add(root)
            elif poses is not None:
                parts[root] = poses
            elif entities.hidden()[0]:
                hidden.add(root)
        return self.raycaster.cast(origin, direction, transforms, hidden, max_distance, parts)

    def describe_stats(self) -> dict[str, Any]:
        s = self.stats
        lat = sorted(s.latencies_ms)
        return {
            "fps": round(s.fps(), 2),
            "frameTimeMs": round(s.last_frame_ms, 3),
            "renderTimeMs": round(s.last_render_ms, 3),
            "encodeTimeMs": round(s.last_encode_ms, 3),
            "trianglesDrawn": s.triangles_drawn,
            "framesSent": s.frames_sent,
            "bytesSent": s.bytes_sent,
            "connectedClients": len(self.clients),
            "latencyMs": {
                "p50": round(lat[len(lat) // 2], 2) if lat else None,
                "p90": round(lat[int(len(lat) * 0.9)], 2) if lat else None,
            },
            "renderer": self.gl_renderer,
            "width": self.width,
            "height": self.height,
        }

    # --- frames --------------------------------------------------------------------------------------

    async def _send_frames(self) -> None:
        """Encode each frame the render process makes, give its slot back, and send it."""
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._rendered.get()
            clients = list(self.clients)
            codecs = {c.codec for c in clients}
            keyframe = any(c.needs_keyframe for c in clients)
            try:
                encoded, raw, encode_ms = await loop.run_in_executor(
                    self._encoder, self._encode, self.process.picture(frame), frame.command_id, codecs, keyframe
                )
            finally:
                self.process.release(frame)
            self._send_frame(frame, clients, encoded, raw, encode_ms)

    def _encode(
        self, picture: np.ndarray, command_id: int, codecs: set[str], keyframe: bool
    ) -> tuple[dict[str, tuple[bytes, bool]], I420 | None, float]:
        """Once per codec in use, and for WebRTC tracks a stamped I420 picture of their own (the slot is reused).
        Runs on the encoder thread."""
        t0 = time.perf_counter()
        out: dict[str, tuple[bytes, bool]] = {}
        if "jpeg" in codecs:
            # 4:2:0, as video codecs do: measured at 720p, a third of 4:4:4's encode time and 0.65x its size.
            colorspace = "RGBX" if picture.shape[2] == 4 else "RGB"
            jpeg = simplejpeg.encode_jpeg(picture, quality=self.quality, colorspace=colorspace, colorsubsampling="420")
            out["jpeg"] = (jpeg, True)
        if "png" in codecs:
            # RGB, fast compression: lossless frames are for tests comparing pixels, not for bandwidth
            rgb = np.ascontiguousarray(picture[..., :3])
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok
            out["png"] = (png.tobytes(), True)
        i420 = to_i420(picture) if "h264" in codecs or RAW_CODEC in codecs else None
        if "h264" in codecs:
            assert i420 is not None
            height, width = even_size(*picture.shape[:2])
            if self._h264 is None or (self._h264.width, self._h264.height) != (width, height):
                self._h264 = H264Encoder(width, height, self.max_fps)
                keyframe = True
            out["h264"] = self._h264.encode(i420, keyframe)
        raw = None
        if RAW_CODEC in codecs:
            assert i420 is not None
            write_stamp_i420(i420, command_id)  # after the WebSocket's H.264, whose frame headers carry the id
            raw = i420
        return out, raw, (time.perf_counter() - t0) * 1000

    def _send_frame(
        self,
        frame: RenderedFrame,
        clients: list[Client],
        encoded: dict[str, tuple[bytes, bool]],
        raw: I420 | None,
        encode_ms: float,
    ) -> None:
        """To each client in its codec, the stamped I420 picture to WebRTC tracks."""
        if raw is not None:
            for client in clients:
                if client.codec == RAW_CODEC and client.send_raw is not None:
                    client.send_raw(raw)
        for codec, (payload, is_key) in encoded.items():
            header = FrameHeader(frame.frame_no, frame.command_id, CODECS[codec], is_key)
            self._broadcast(pack_frame(header, payload), [c for c in clients if c.codec == codec], is_key)
        done = time.perf_counter()
        s = self.stats
        s.frames_sent += 1
        s.last_render_ms, s.last_encode_ms, s.triangles_drawn = frame.render_ms, encode_ms, frame.triangles
        s.last_frame_ms = (done - frame.started) * 1000
        s.frame_times.append(done)
        if self.on_frame is not None:
            self.on_frame(done - frame.started)
        sent_at = self._command_times.pop(frame.command_id, None)
        if sent_at is not None:
            s.latencies_ms.append((done - sent_at) * 1000)
        self._command_times = {k: v for k, v in self._command_times.items() if k > frame.command_id}

    def _broadcast(self, data: bytes, clients: list[Client], keyframe: bool) -> None:
        """Hand the frame to every client not still busy with the previous one; a slow client skips frames
        instead of delaying the others (an H.264 client then waits for the next keyframe, which it asks for)."""

        async def send(client: Client) -> None:
            try:
                await client.send_bytes(data)
            except Exception:
                logger.info("dropping a client whose connection failed")
                self.detach(client)
            finally:
                client.busy = False

        for client in clients:
            if client.codec == "h264":
                if client.busy:
                    client.needs_keyframe = True
                    self.mark_dirty(0)  # come back soon with the keyframe it now needs
                    continue
                if client.needs_keyframe and not keyframe:
                    continue
                client.needs_keyframe = False
            if not client.busy:
                client.busy = True
                self.stats.bytes_sent += len(data)
                task = asyncio.create_task(send(client))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
