"""WebRTC, the third transport (docs/render-protocol.md, "WebRTC"), with aiortc tuned for interactive streaming.

Signalling runs over the session's WebSocket: a connected client sends `webrtcOffer`, the server answers with a
peer connection whose one video track carries the rendered pictures. While it is open, that client's frames go
over WebRTC instead of the WebSocket (its `Client.codec` is RAW_CODEC); `webrtcClose`, or closing the WebSocket,
closes the peer connection and returns the client to its WebSocket codec.

Tuning, from render-stack-notes.md:
- no ICE servers at all (aiortc's default configuration would contact a public STUN server): host candidates only;
- H.264 preferred (VP8 as fallback), encoded by LowLatencyH264Encoder: x264's `ultrafast` preset with `zerolatency`
  (aiortc's default preset is 3.5x slower) at a pinned bitrate: aiortc follows the receiver's bitrate estimates
  and restarts its encoder, with a keyframe burst, on every change over 10 %; that grows browsers' jitter buffers;
- a zero playout delay (RTP's playout-delay extension, min = max = 0) when the browser offers it: Chromium then shows
  each picture as soon as it is decoded. In Chromium on 2 cores this cut "last packet received -> presented" from
  ~20 to ~5 ms and its jitter buffer from ~9 to ~1.3 ms (bench/RESULTS.md, section 5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
    VideoStreamTrack,
    rtp,
)
from aiortc.codecs.h264 import H264Encoder as AiortcH264Encoder
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.sdp import SessionDescription
from av.video.frame import PictureType

from openrr.protocol.sdp import negotiated_video_codec, preferred_video_codecs
from openrr.render.commands import BAD_REQUEST, CommandError
from openrr.render.session import RAW_CODEC, Client, SceneSession
from openrr.render.yuv import I420

logger = logging.getLogger(__name__)

H264_BITRATE = 6_000_000
"""Pinned H.264 bitrate: sharp at 720p (aiortc caps H.264 at 3 Mbit/s, which looks soft) and well under level 3.1."""
MAX_FPS = 30
REPEAT_AFTER_S = 1.0
"""With nothing new to show, the track repeats its last picture this often: a keyframe the receiver asked for
(after a loss, or when it starts late) then still arrives on a still scene."""
FLUSH_AFTER_S = 0.012
"""...and, for a receiver that asked for it (`webrtcOffer` with `flush: true`), once this soon after a new picture:
aiortc's receiver (the Python client) hands a frame to its decoder only when the first packet of the next frame
arrives (it ignores RTP's marker bit), so without this repeat the last picture of a camera move would show up a whole
REPEAT_AFTER_S late. The repeat is a P-frame of skipped macroblocks (a few hundred bytes). Browsers use the marker bit
and are not sent it: there it cost an encode, a decode and a redraw of the same picture, and delayed the next new
picture that arrived while it was being encoded."""


class LowLatencyH264Encoder(AiortcH264Encoder):
    """aiortc's H.264 encoder with x264 set up for latency: `ultrafast` + `zerolatency`, Baseline, a bitrate pinned
    at H264_BITRATE (receiver estimates are ignored, so the encoder is never restarted for them) with a VBV of half
    a second so that keyframes cannot burst far above it. Only `_encode_frame` (making the x264 context) differs;
    packetization is aiortc's."""

    def __init__(self, bitrate: int = H264_BITRATE) -> None:
        super().__init__()
        self._pinned_bitrate = bitrate

    @property
    def target_bitrate(self) -> int:
        return self._pinned_bitrate

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        """REMB estimates land here: ignored on purpose (see the class doc)."""

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Any:
        if self.codec is not None and (frame.width != self.codec.width or frame.height != self.codec.height):
            self.codec = None  # a resized stream needs a new encoder (which starts with a keyframe)
        frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        if self.codec is None:
            kbit = self._pinned_bitrate // 1000
            codec = av.CodecContext.create("libx264", "w")
            codec.width, codec.height, codec.pix_fmt = frame.width, frame.height, "yuv420p"
            codec.bit_rate = self._pinned_bitrate
            codec.framerate = Fraction(MAX_FPS, 1)
            codec.time_base = Fraction(1, VIDEO_CLOCK_RATE)  # frames carry 90 kHz RTP timestamps as pts
            codec.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "x264-params": f"vbv-maxrate={kbit}:vbv-bufsize={kbit // 2}:keyint={MAX_FPS * 10}",
                # One thread: x264's sliced threads wait on each other while llvmpipe holds the cores. Measured in
                # Chromium on 2 cores, command -> picture p50 98.3/101.7 ms against 105.6/105.5 ms (alternating).
                "threads": "1",
            }
            codec.profile = "Baseline"
            self.codec = codec
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        if data:
            yield from self._split_bitstream(data)


PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
ZERO_PLAYOUT_DELAY = b"\x00\x00\x00"
"""The extension's 12-bit minimum and maximum delay (10 ms units), both 0: "show each picture as soon as it is
decoded". Chromium then renders frames at once instead of holding each for its render time (WebRTC's ~10 ms render
delay plus smoothing), as cloud-gaming streams do."""


class _ZeroPlayoutDelayMap(rtp.HeaderExtensionsMap):
    """aiortc's header-extension writer, plus playout-delay (which aiortc does not know) on every packet."""

    def __init__(self) -> None:
        super().__init__()
        self.playout_delay_id = 0

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        for extension in parameters.headerExtensions:
            if extension.uri == PLAYOUT_DELAY_URI:
                self.playout_delay_id = extension.id

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = super().set(values)
        if not self.playout_delay_id:
            return profile, packed
        extensions = rtp.unpack_header_extensions(profile, packed) if packed else []
        return rtp.pack_header_extensions([*extensions, (self.playout_delay_id, ZERO_PLAYOUT_DELAY)])


def _ask_for_zero_playout_delay(transceiver: RTCRtpTransceiver, offer: str) -> bool:
    """If the offer has playout-delay (Chromium's does), answer with it and write it into every packet. aiortc
    answers only the extensions it knows and offers no way to add one: this reaches into the transceiver's
    negotiated extensions and the sender's extension writer. Returns False, and nothing changes, if aiortc no
    longer has them."""
    offered = (x for media in SessionDescription.parse(offer).media for x in media.rtp.headerExtensions)
    remote = next((x for x in offered if x.uri == PLAYOUT_DELAY_URI), None)
    attribute = "_RTCRtpSender__rtp_header_extensions_map"
    extensions = getattr(transceiver, "_headerExtensions", None)
    if remote is None or not isinstance(extensions, list) or not hasattr(transceiver.sender, attribute):
        return False
    extensions.append(RTCRtpHeaderExtensionParameters(id=remote.id, uri=PLAYOUT_DELAY_URI))
    setattr(transceiver.sender, attribute, _ZeroPlayoutDelayMap())
    return True


def _install_low_latency_encoder(sender: RTCRtpSender) -> bool:
    """One of the two places that reach into aiortc (the other is _ask_for_zero_playout_delay): RTCRtpSender makes
    its encoder lazily, on the first frame, only if it has none yet (`_next_encoded_frame`), and offers no public way
    to choose or configure it. We give this one sender (not aiortc process-wide) our encoder before its first frame.
    Returns False, and aiortc's defaults stay, if a later aiortc no longer has that attribute."""
    attribute = "_RTCRtpSender__encoder"
    if not hasattr(sender, attribute) or getattr(sender, attribute) is not None:
        logger.warning("aiortc's RTCRtpSender changed: WebRTC H.264 runs with aiortc's default encoder settings")
        return False
    setattr(sender, attribute, LowLatencyH264Encoder())
    return True


class RenderTrack(VideoStreamTrack):
    """The video track of one peer connection: each `recv()` returns the newest picture (I420, stamped with its
    command id on the server's encoder thread), waiting for one when none is new (repeating the last every
    REPEAT_AFTER_S); pictures the sender had no time for are skipped."""

    kind = "video"

    def __init__(self, flush: bool = False) -> None:
        super().__init__()
        self.flush = flush
        """Repeat the last picture FLUSH_AFTER_S after each new one (see FLUSH_AFTER_S)."""
        self._latest: I420 | None = None
        self._new = asyncio.Event()
        self._last_frame: av.VideoFrame | None = None
        self._flushed = True
        self._t0: float | None = None
        self._last_pts = -1
        self.frames_sent = 0

    def push(self, i420: I420) -> None:
        """From the render loop (Client.send_raw): replaces any picture not yet taken."""
        self._latest = i420
        self._new.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = self._last_frame
        if frame is None:
            await self._new.wait()
        elif not self._new.is_set():
            try:
                async with asyncio.timeout(FLUSH_AFTER_S if self.flush and not self._flushed else REPEAT_AFTER_S):
                    await self._new.wait()
            except TimeoutError:
                self._flushed = True  # nothing new: send the last picture again
        if self._new.is_set() or frame is None:
            self._new.clear()
            assert self._latest is not None
            frame = av.VideoFrame.from_ndarray(self._latest, format="yuv420p")  # a copy of 1.4 MB at 720p: ~0.2 ms
            self._last_frame, self._flushed = frame, False
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        pts = max(int((now - self._t0) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


@dataclass
class Peer:
    pc: RTCPeerConnection
    track: RenderTrack
    codec: str
    previous_codec: str
    """The client's WebSocket codec, restored when the peer connection closes."""


class WebRTCPeers:
    """The peer connections of one render server, at most one per WebSocket client."""

    def __init__(self, scene: SceneSession) -> None:
        self.scene = scene
        self.peers: dict[Client, Peer] = {}

    async def offer(self, client: Client, sdp: str, flush: bool = False) -> dict[str, Any]:
        """Answer the client's offer (commands.WebrtcOffer); a replacement for any peer connection it had."""
        await self.close(client)  # a new offer starts over
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN server: host candidates only
        track = RenderTrack(flush)
        transceiver: RTCRtpTransceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(preferred_video_codecs(RTCRtpSender.getCapabilities("video").codecs))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            zero_delay = _ask_for_zero_playout_delay(transceiver, sdp)
            await pc.setLocalDescription(await pc.createAnswer())  # returns once ICE gathering is complete
        except Exception as e:
            await pc.close()
            raise CommandError(BAD_REQUEST, f"Cannot answer this WebRTC offer: {e}") from e
        answer = pc.localDescription
        codec = negotiated_video_codec(answer.sdp) or "?"
        tuned = codec == "H264" and _install_low_latency_encoder(transceiver.sender)
        peer = Peer(pc, track, codec, client.codec)
        self.peers[client] = peer

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.info("WebRTC peer of a %s: %s", client.role, pc.connectionState)
            if pc.connectionState in ("failed", "closed") and self.peers.get(client) is peer:
                await self.close(client)

        client.codec, client.send_raw, client.needs_keyframe = RAW_CODEC, track.push, False
        self.scene.mark_dirty(0)  # a first picture for the new track
        logger.info(
            "WebRTC peer opened for a %s: %s%s%s (%d peers)",
            client.role,
            codec,
            f", x264 ultrafast/zerolatency at {H264_BITRATE // 1_000_000} Mbit/s" if tuned else "",
            ", zero playout delay" if zero_delay else "",
            len(self.peers),
        )
        return {"sdp": answer.sdp, "sdpType": answer.type, "codec": codec}

    async def close(self, client: Client) -> None:
        peer = self.peers.pop(client, None)
        if peer is None:
            return
        if client.codec == RAW_CODEC:
            client.codec, client.send_raw = peer.previous_codec, None
            client.needs_keyframe = client.codec == "h264"
            self.scene.mark_dirty(0)
        peer.track.stop()
        await peer.pc.close()
        logger.info(
            "WebRTC peer of a %s closed after %d frames (%d peers)",
            client.role,
            peer.track.frames_sent,
            len(self.peers),
        )
