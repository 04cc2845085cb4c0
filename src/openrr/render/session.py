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
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simplejpeg

from openrr.model.mesh import ModelData
from openrr.model.raycast import RayCaster, RayHit
from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits
from openrr.protocol.redaction import display_url
from openrr.protocol.render import CODEC_H264, CODEC_JPEG, FrameHeader, pack_frame
from openrr.render.camera import Camera
from openrr.render.commands import BAD_REQUEST, CommandError
from openrr.render.frame_process import FrameState, RenderedFrame, RenderProcess
from openrr.render.h264 import H264Encoder
from openrr.render.model_loader import load_model
from openrr.render.stamp import write_stamp_i420
from openrr.render.yuv import I420, even_size, to_i420
from openrr.storage.area_files import LocalFiles
from openrr.storage.fetch import DEFAULT_HTTP, HttpOptions

logger = logging.getLogger(__name__)

STANDARD_PRIMITIVE_LIMIT = 20_000_000
DEFAULT_FPS = 60.0
"""The frame cap while the scene changes: frames are only rendered when something changed, so an idle session
costs nothing whatever the cap; a moving camera gets as many frames as the renderer can make, up to this."""
CODECS = {"jpeg": CODEC_JPEG, "h264": CODEC_H264}
RAW_CODEC = "webrtc"
"""A client whose own transport encodes (WebRTC, see webrtc.py): it is handed each picture as I420 (yuv.py), with
its command id stamped into it (stamp.py)."""


@dataclass
class Entity:
    entity_id: int
    source: str
    model: ModelData
    transform: np.ndarray = field(default_factory=lambda: np.eye(4, dtype=np.float32))
    hidden: bool = False
    tint: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    see_through: bool = False
    selected: bool = False

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {
            "entityId": self.entity_id,
            "name": m.name,
            "source": display_url(self.source),  # never a SAS token or user:password@
            "bounds": {"min": m.bounds_min.tolist(), "max": m.bounds_max.tolist()},
            "triangles": m.triangles,
            "points": m.points,
            "meshes": len(m.meshes),
            "transform": self.transform.reshape(-1).tolist(),
            "hidden": self.hidden,
            "tint": list(self.tint),
            "seeThrough": self.see_through,
            "selected": self.selected,
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
        self.entities: dict[int, Entity] = {}
        self._ids = itertools.count(1)
        self.camera = Camera()
        self.cut_planes: list[tuple[list[float], list[float]]] = []
        self.clients: set[Client] = set()
        self.controller: Client | None = None
        self.stats = Stats()
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

    # --- scene commands --------------------------------------------------------------------------------

    async def load(self, source: str, progress: Callable[[float], None]) -> Entity:
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
        total = sum(e.model.primitives for e in self.entities.values()) + model.primitives
        entity = Entity(next(self._ids), source, model)
        # The ray-cast structure stays here, with the RayCaster: the render process only draws.
        await self.process.call("add_model", entity.entity_id, dataclasses.replace(model, collision=None))
        await asyncio.to_thread(self.raycaster.add, entity.entity_id, model)  # ~0.25 s per million triangles
        self.entities[entity.entity_id] = entity
        over = self.size == "Standard" and total > self.primitive_limit
        await self.process.call("set_over_limit", over)
        self.warnings = []
        if over:
            self.warnings.append(
                f"The scene has {total:,} primitives, more than a Standard session renders "
                f"({self.primitive_limit:,}): a checkerboard is shown instead. Use a Premium session."
            )
        logger.info(
            "loaded %s as entity %d: %d triangles, %d points",
            model.name,
            entity.entity_id,
            model.triangles,
            model.points,
        )
        return entity

    async def unload(self, entity_id: int) -> None:
        entity = self.entity(entity_id)
        await self.process.call("remove", entity_id)
        self.raycaster.remove(entity_id)
        del self.entities[entity.entity_id]
        total = sum(e.model.primitives for e in self.entities.values())
        await self.process.call("set_over_limit", self.size == "Standard" and total > self.primitive_limit)

    def entity(self, entity_id: int) -> Entity:
        try:
            return self.entities[entity_id]
        except KeyError:
            raise CommandError(BAD_REQUEST, f"no entity {entity_id} is loaded") from None

    async def set_transform(self, entity_id: int, matrix: np.ndarray) -> None:
        entity = self.entity(entity_id)
        await self.process.call("set_transform", entity_id, matrix)
        entity.transform = matrix

    async def set_override(self, entity_id: int, **changes: Any) -> None:
        entity = self.entity(entity_id)
        await self.process.call("set_override", entity_id, **changes)
        for name, value in changes.items():
            if value is not None:
                setattr(entity, name, value)

    def set_camera(self, camera: Camera) -> None:
        """Never waits: the render process applies the latest camera before its next frame."""
        self.camera = camera
        self.process.set_camera(camera)

    async def set_cut_planes(self, planes: list[tuple[list[float], list[float]]]) -> None:
        await self.process.call("set_cut_planes", planes)
        self.cut_planes = planes

    async def clear(self) -> None:
        """Back to a new session's scene: no models, and the view a new client expects (the default camera, no cut
        planes), so that a client arriving later does not look at its models from where the last one left off, or
        through its cut planes. The stream size and frame cap stay: they are the client's, and it sets them."""
        for entity_id in list(self.entities):
            await self.unload(entity_id)  # its overrides go with it
        await self.set_cut_planes([])
        self.set_camera(Camera())
        self.mark_dirty(0)

    async def resize(self, width: int, height: int) -> None:
        await self.process.call("resize", width, height)
        self.width, self.height = width, height

    def ray_cast(self, origin: list[float], direction: list[float], max_distance: float) -> RayHit | None:
        transforms = {eid: e.transform for eid, e in self.entities.items()}
        hidden = {eid for eid, e in self.entities.items() if e.hidden}
        return self.raycaster.cast(origin, direction, transforms, hidden, max_distance)

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
