"""Video codec choice shared by the WebRTC server (render/webrtc.py) and client (client/webrtc.py): H.264 first,
VP8 as fallback, and reading back what an SDP answer settled on. Plain text work: no aiortc here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

VIDEO_CODECS = ("H264", "VP8")
"""The codecs both sides offer, preferred first."""


class _Codec(Protocol):
    @property
    def mimeType(self) -> str: ...  # aiortc's RTCRtpCodecCapability spells it so


C = TypeVar("C", bound=_Codec)


def preferred_video_codecs(capabilities: Iterable[C], names: tuple[str, ...] = VIDEO_CODECS) -> list[C]:
    """The video codecs among `capabilities` (aiortc's `RTCRtpSender.getCapabilities("video").codecs`) named in
    `names`, in that order, and RTX for retransmissions: for setCodecPreferences."""
    rank = {f"video/{name.lower()}": i for i, name in enumerate(names)} | {"video/rtx": len(names)}
    return sorted((c for c in capabilities if c.mimeType.lower() in rank), key=lambda c: rank[c.mimeType.lower()])


def negotiated_video_codec(sdp: str) -> str | None:
    """The codec an answer settled on ("H264", "VP8"): the first payload type of its video m-line, which is the one
    aiortc sends with."""
    lines = sdp.splitlines()
    formats = next((line.split()[3:] for line in lines if line.startswith("m=video ")), [])
    if not formats:
        return None
    rtpmap = next((line for line in lines if line.startswith(f"a=rtpmap:{formats[0]} ")), None)
    return rtpmap.split(" ", 1)[1].split("/", 1)[0] if rtpmap else None
