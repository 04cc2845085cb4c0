"""Python client of a render session: connect, load models, drive the camera, receive frames as numpy arrays.

A whole program is examples/render_frame.py; tests/test_client_examples.py runs both it and this example:

    async with await RenderSessionClient.connect_session(endpoint, account_id, key, session_id, ca=cert) as s:
        model = await s.load_model(model_url)
        await s.set_camera(position=(0, 0, 5), target=(0, 0, 0))
        frame = await s.next_frame()  # the first frame that shows the model and the camera
        print(model["name"], frame.image.shape)  # Frame.image: (height, width, 3) uint8 RGB
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import itertools
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
import numpy as np
import simplejpeg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from openrr.client.errors import ClientError
from openrr.client.rest import ArrConnectionError, describe_transport_error, error_of
from openrr.protocol.render import CODEC_H264, CODEC_JPEG, CODEC_PNG, STAMPED_COMMANDS, unpack_frame

Inherit = Literal["inherit"]


class Auto(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED = Auto.UNCHANGED
"""For `set_camera`'s planes: leave them as they are (None: follow the scene)."""


def _fields(reply: dict[str, Any]) -> dict[str, Any]:
    """A result's own fields, without the envelope."""
    return {k: v for k, v in reply.items() if k not in ("type", "id", "ok")}


def _lists(fields: dict[str, Any]) -> dict[str, Any]:
    """Tuples and arrays as JSON arrays."""
    return {k: np.asarray(v, dtype=float).tolist() if isinstance(v, tuple | list | np.ndarray) else v
            for k, v in fields.items()}  # fmt: skip


class SessionError(ClientError):
    """A command the render server refused; `code` is its error code (e.g. ModelLoadFailed)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Frame:
    number: int
    """Counts from 1 for the render server's life."""
    command_id: int
    """The last command applied before this frame was rendered: a frame with command_id >= n shows command n."""
    image: np.ndarray
    received_at: float
    keyframe: bool = True
    """Always True for JPEG; for H.264, whether a decoder could start at this frame."""


def _tls(ca: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


class RenderSessionClient:
    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.role: str = welcome["role"]
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._progress: dict[int, Callable[[float], None]] = {}
        self._frames: asyncio.Queue[Frame] = asyncio.Queue(maxsize=8)
        self._h264: Any = None
        self.bytes_received = 0
        self._reader = asyncio.create_task(self._read())
        self.last_command = 0
        """Id of this connection's last command that succeeded."""
        self.shown_command = 0
        """Id of this connection's last command that changes the picture (protocol.render.STAMPED_COMMANDS): a
        frame with command_id >= it shows everything this client asked for."""

    # --- connecting ------------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, host: str, port: int, token: str, *, role: str = "controller", codec: str = "jpeg", ca: str | None = None
    ) -> RenderSessionClient:
        """`codec`: "jpeg" (default), "h264" (smaller frames; decoded here with PyAV) or "png" (lossless, for
        comparing pixels exactly; large frames)."""
        url = f"wss://{host}:{port}/stream?role={role}&codec={codec}"
        try:
            ws = await connect(
                url, ssl=_tls(ca), additional_headers={"Authorization": f"Bearer {token}"}, max_size=64 * 1024 * 1024
            )
        except (OSError, InvalidHandshake, TimeoutError) as e:
            raise ArrConnectionError(f"connecting to the render server failed: cannot reach {url}: {e}") from e
        try:
            first = await ws.recv()
        except ConnectionClosed as e:
            raise SessionError("Disconnected", f"the render server closed the connection at once ({e})") from e
        doc = json.loads(first)
        if doc.get("type") != "welcome":
            await ws.close()
            raise SessionError(doc.get("code", "Refused"), doc.get("message", "the render server refused"))
        return cls(ws, doc)

    @classmethod
    async def connect_session(
        cls,
        endpoint: str,
        account_id: str,
        account_key: str,
        session_id: str,
        *,
        role: str = "controller",
        codec: str = "jpeg",
        ca: str | None = None,
    ) -> RenderSessionClient:
        """Find the session through the service's API (it must be Ready), then connect to its server."""
        account, session = quote(account_id, safe=""), quote(session_id, safe="")

        async def get(http: httpx.AsyncClient, operation: str, url: str, **kwargs: Any) -> dict[str, Any]:
            try:
                r = await http.get(url, **kwargs)
            except httpx.HTTPError as e:
                raise ArrConnectionError(describe_transport_error(operation, f"{endpoint}{url}", e)) from e
            if r.status_code >= 400:
                raise error_of(operation, r)
            doc: dict[str, Any] = r.json()
            return doc

        async with httpx.AsyncClient(base_url=endpoint, verify=_tls(ca), timeout=30) as http:
            auth = {"Authorization": f"Bearer {account_id}:{account_key}"}
            token = (await get(http, "getting an access token", f"/accounts/{account}/token", headers=auth))[
                "AccessToken"
            ]
            doc = await get(
                http,
                f"getting session '{session_id}'",
                f"/accounts/{account}/sessions/{session}",
                params={"api-version": "2021-01-01"},
                headers={"Authorization": f"Bearer {token}"},
            )
        if doc["status"] != "Ready":
            raise SessionError("NotReady", f"session {session_id} is {doc['status']}, not Ready")
        return await cls.connect(doc["hostname"], doc["handshakePort"], token, role=role, codec=codec, ca=ca)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> RenderSessionClient:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    # --- commands --------------------------------------------------------------------------------------

    async def command(
        self, kind: str, progress: Callable[[float], None] | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        """Send command `kind` with `fields` (the protocol's names) and wait for its result; SessionError if
        refused."""
        mid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[mid] = future
        if progress is not None:
            self._progress[mid] = progress
        await self.ws.send(json.dumps({"id": mid, "type": kind, **fields}))
        try:
            reply = await future
        finally:
            self._pending.pop(mid, None)
            self._progress.pop(mid, None)
        if not reply.get("ok"):
            err = reply.get("error", {})
            raise SessionError(err.get("code", "Error"), err.get("message", ""))
        self.last_command = mid
        if kind in STAMPED_COMMANDS:
            self.shown_command = mid
        return reply

    async def load_model(
        self, url: str, transform: np.ndarray | None = None, progress: Callable[[float], None] | None = None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"url": url}
        if transform is not None:
            fields["transform"] = np.asarray(transform, dtype=float).reshape(-1).tolist()
        return await self.command("loadModel", progress, **fields)

    async def unload_model(self, entity_id: int) -> None:
        await self.command("unloadModel", entityId=entity_id)

    async def set_transform(self, entity_id: int, matrix: np.ndarray) -> None:
        await self.command("setTransform", entityId=entity_id, matrix=np.asarray(matrix, float).reshape(-1).tolist())

    async def set_camera(
        self,
        position: Sequence[float],
        target: Sequence[float] = (0.0, 0.0, 0.0),
        up: Sequence[float] = (0.0, 1.0, 0.0),
        fov_y: float = 60.0,
        *,
        near: float | Auto | None = UNCHANGED,
        far: float | Auto | None = UNCHANGED,
    ) -> int:
        """Returns the command id: frames with command_id >= it show the new view. `near`/`far`: a number, None
        (follow the scene's bounds, the default) or left as they are."""
        fields: dict[str, Any] = {"position": list(position), "target": list(target), "up": list(up), "fovY": fov_y}
        fields.update({k: v for k, v in (("near", near), ("far", far)) if v is not UNCHANGED})
        await self.command("setCamera", **fields)
        return self.last_command

    async def set_override(
        self,
        entity_id: int,
        *,
        hidden: bool | Inherit | None = None,
        tint: Sequence[float] | Inherit | None = None,
        see_through: bool | Inherit | None = None,
        selected: bool | Inherit | None = None,
    ) -> int:
        """Each override: a value of the entity's own, "inherit" (drop its own: the nearest ancestor's applies),
        or None to leave it."""
        fields: dict[str, Any] = {"entityId": entity_id}
        for key, value in (("hidden", hidden), ("seeThrough", see_through), ("selected", selected)):
            if value is not None:
                fields[key] = value
        if tint is not None:
            fields["tint"] = tint if isinstance(tint, str) else list(tint)
        await self.command("setOverride", **fields)
        return self.last_command

    # --- entities (every node of a model) ---

    async def get_entity(self, entity_id: int) -> dict[str, Any]:
        return _fields(await self.command("getEntity", entityId=entity_id))

    async def get_children(self, entity_id: int, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """`{"children": [{entityId, name, childCount}], "total"}`."""
        return _fields(await self.command("getChildren", entityId=entity_id, offset=offset, limit=limit))

    async def set_entity_transform(
        self, entity_id: int, *, local: np.ndarray | None = None, world: np.ndarray | None = None
    ) -> int:
        fields: dict[str, Any] = {"entityId": entity_id}
        for key, matrix in (("local", local), ("world", world)):
            if matrix is not None:
                fields[key] = np.asarray(matrix, dtype=float).reshape(-1).tolist()
        await self.command("setEntityTransform", **fields)
        return self.last_command

    async def get_bounds(self, entity_id: int, space: str = "world") -> dict[str, list[float]] | None:
        bounds: dict[str, list[float]] | None = (await self.command("getBounds", entityId=entity_id, space=space))[
            "bounds"
        ]
        return bounds

    async def get_metadata(self, entity_id: int) -> dict[str, Any]:
        metadata: dict[str, Any] = (await self.command("getMetadata", entityId=entity_id))["metadata"]
        return metadata

    # --- materials, light, output ---

    async def list_materials(self, entity_id: int) -> list[dict[str, Any]]:
        materials: list[dict[str, Any]] = (await self.command("listMaterials", entityId=entity_id))["materials"]
        return materials

    async def set_material(self, entity_id: int, material: int, **changes: Any) -> int:
        """`changes` in the protocol's names: baseColor, metallic, roughness, emissive, emissiveStrength,
        alphaMode, alphaCutoff, unlit, doubleSided."""
        await self.command("setMaterial", None, entityId=entity_id, material=material, **_lists(changes))
        return self.last_command

    async def set_environment(
        self, url: str | None = None, *, cube_urls: Sequence[str] | None = None, intensity: float | None = None
    ) -> int:
        """An equirectangular image, six cube faces, or neither for the built-in environment."""
        fields: dict[str, Any] = {"url": url} if cube_urls is None else {"cubeUrls": list(cube_urls)}
        if intensity is not None:
            fields["intensity"] = intensity
        await self.command("setEnvironment", **fields)
        return self.last_command

    async def set_output(
        self, *, exposure: float | None = None, tone_mapping: str | None = None, antialiasing: str | None = None
    ) -> int:
        fields = {"exposure": exposure, "toneMapping": tone_mapping, "antialiasing": antialiasing}
        await self.command("setOutput", **{k: v for k, v in fields.items() if v is not None})
        return self.last_command

    async def add_light(self, kind: str, **fields: Any) -> int:
        """`fields` in the protocol's names (color, intensity, range, position, direction, innerConeAngle,
        outerConeAngle); returns the light's id."""
        light_id: int = (await self.command("addLight", None, kind=kind, **_lists(fields)))["lightId"]
        return light_id

    async def set_light(self, light_id: int, **fields: Any) -> int:
        await self.command("setLight", None, lightId=light_id, **_lists(fields))
        return self.last_command

    async def remove_light(self, light_id: int) -> int:
        await self.command("removeLight", lightId=light_id)
        return self.last_command

    async def list_lights(self) -> list[dict[str, Any]]:
        lights: list[dict[str, Any]] = (await self.command("listLights"))["lights"]
        return lights

    async def get_scene(self) -> dict[str, Any]:
        return _fields(await self.command("getScene"))

    async def set_cut_planes(self, planes: Sequence[tuple[Sequence[float], Sequence[float]]]) -> int:
        await self.command("setCutPlanes", planes=[{"normal": list(n), "point": list(p)} for n, p in planes])
        return self.last_command

    async def set_stream(self, width: int, height: int, fps: float | None = None) -> int:
        fields: dict[str, Any] = {"width": width, "height": height}
        if fps is not None:
            fields["fps"] = fps
        await self.command("setStream", **fields)
        return self.last_command

    async def ray_cast(
        self, origin: Sequence[float], direction: Sequence[float], max_distance: float | None = None
    ) -> dict[str, Any] | None:
        fields: dict[str, Any] = {"origin": list(origin), "direction": list(direction)}
        if max_distance is not None:
            fields["maxDistance"] = max_distance
        hit: dict[str, Any] | None = (await self.command("rayCast", **fields))["hit"]
        return hit

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.command("getStats"))["stats"]
        return stats

    # --- frames ----------------------------------------------------------------------------------------

    async def next_frame(self, after_command: int | None = None, timeout: float = 30.0) -> Frame:
        """The next frame that shows at least command `after_command`; older frames are skipped. By default, the first
        that shows every command of this client's so far (`shown_command`): after `load_model` and `set_camera`,
        the model from that camera, never a frame from before. `after_command=0`: whatever frame comes next."""
        after = self.shown_command if after_command is None else after_command
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._frames.get()
                if frame.command_id >= after:
                    return frame

    async def frames(self) -> AsyncIterator[Frame]:
        while True:
            yield await self._frames.get()

    # --- internals -------------------------------------------------------------------------------------

    def _decode(self, codec: int, payload: bytes) -> np.ndarray | None:
        if codec == CODEC_JPEG:
            image: np.ndarray = simplejpeg.decode_jpeg(payload, colorspace="RGB")
            return image
        if codec == CODEC_PNG:
            from PIL import Image  # only lossless clients need Pillow

            with Image.open(io.BytesIO(payload)) as png:
                return np.asarray(png.convert("RGB"))
        if codec == CODEC_H264:
            import av  # only H.264 clients need PyAV

            if self._h264 is None:
                self._h264 = av.CodecContext.create("h264", "r")
            frames = self._h264.decode(av.Packet(payload))
            return frames[-1].to_ndarray(format="rgb24") if frames else None
        return None

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.bytes_received += len(message)
                    header, payload = unpack_frame(message)
                    image = self._decode(header.codec, payload)
                    if image is None:
                        continue
                    frame = Frame(header.frame, header.command_id, image, time.perf_counter(), header.keyframe)
                    if self._frames.full():
                        self._frames.get_nowait()  # keep the newest frames, not the oldest
                    self._frames.put_nowait(frame)
                    continue
                doc = json.loads(message)
                if doc.get("type") == "loadProgress" and doc.get("id") in self._progress:
                    self._progress[doc["id"]](float(doc["progress"]))
                elif doc.get("type") == "result" and doc.get("id") in self._pending:
                    future = self._pending[doc["id"]]
                    if not future.done():
                        future.set_result(doc)
        except ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(SessionError("Disconnected", "the render server closed the connection"))
