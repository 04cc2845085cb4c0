"""The session protocol on the handshake port (documented in docs/render-protocol.md).

Text frames carry JSON commands and replies; binary frames carry video: a 16-byte header, then the payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

FRAME_MAGIC = b"ORRF"
_HEADER = struct.Struct("<4sIII")
HEADER_SIZE = _HEADER.size
CODEC_JPEG = 1
CODEC_H264 = 2
CODEC_PNG = 3
"""Lossless frames (PNG of the RGB picture): for tests that compare pixels exactly; large and slow to encode."""
KEYFRAME = 0x100
"""Set in the codec field of an H.264 frame that a decoder can start from."""
MAX_CUT_PLANES = 8
"""How many planes one setCutPlanes may give: what the command accepts, and what the renderer clips with."""


@dataclass(frozen=True)
class FrameHeader:
    frame: int
    """Frame number, counting from 1 for the server's life."""
    command_id: int
    """Id of the last camera/scene command applied before this frame was rendered (0 if none)."""
    codec: int
    keyframe: bool = True


STAMPED_COMMANDS = frozenset(
    {
        "loadModel",
        "unloadModel",
        "setTransform",
        "setOverride",
        "setCamera",
        "setCutPlanes",
        "setStream",
        "requestKeyframe",
        "setEntityTransform",
        "setMaterial",
        "setEnvironment",
        "setOutput",
        "addLight",
        "setLight",
        "removeLight",
    }
)
"""Commands whose id the server stamps into the frames rendered after them (`FrameHeader.command_id`, the WebRTC
stamp): a frame with command_id >= such a command's id shows its effect. The others (rayCast, getStats, getScene,
getEntity, getChildren, getBounds, getMetadata, listMaterials, listLights, webrtcOffer, webrtcClose) change no
picture and stamp nothing."""


def pack_frame(header: FrameHeader, payload: bytes) -> bytes:
    flags = header.codec | (KEYFRAME if header.keyframe else 0)
    return _HEADER.pack(FRAME_MAGIC, header.frame, header.command_id, flags) + payload


def unpack_frame(data: bytes) -> tuple[FrameHeader, bytes]:
    magic, frame, command_id, flags = _HEADER.unpack_from(data)
    if magic != FRAME_MAGIC:
        raise ValueError("not an openrr video frame")
    return FrameHeader(frame, command_id, flags & 0xFF, bool(flags & KEYFRAME)), data[HEADER_SIZE:]


# WebSocket close codes (4000-4999 are the application's).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_CONTROLLER_TAKEN = 4409
CLOSE_BAD_REQUEST = 4400
CLOSE_CODES = {
    CLOSE_BAD_REQUEST: "BadRequest",
    CLOSE_UNAUTHORIZED: "Unauthorized",
    CLOSE_FORBIDDEN: "Forbidden",
    CLOSE_CONTROLLER_TAKEN: "ControllerConnected",
}
"""Each close code's error code, as in the `{"type": "error", "code"}` message sent before the close."""
