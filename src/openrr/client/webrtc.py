"""Receive a render session's frames over WebRTC (aiortc), signalled over an existing session connection.

    async with await RenderSessionClient.connect_session(endpoint, account_id, key, session_id, ca=cert) as s:
        async with await open_webrtc(s) as video:  # s's frames now come over WebRTC, H.264 preferred
            await s.load_model(model_url)
            await s.set_camera(position=(0, 0, 5), target=(0, 0, 0))
            command_id, image = await video.next_frame()  # the first picture that shows the model and the camera

Each picture carries the id of the last command applied before it was rendered, stamped into its top-left
corner (openrr.protocol.stamp); `next_frame` reads it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from openrr.client.render_session import RenderSessionClient, SessionError
from openrr.protocol.sdp import negotiated_video_codec, preferred_video_codecs
from openrr.protocol.stamp import read_stamp


class WebRTCVideo:
    """The video of one WebRTC peer connection to a render server."""

    def __init__(self, client: RenderSessionClient, pc: RTCPeerConnection, track: MediaStreamTrack, answer: str):
        self.client = client
        self.pc = pc
        self.track = track
        self.answer_sdp = answer
        self.codec = negotiated_video_codec(answer)
        """"H264" (preferred by both sides) or "VP8"."""
        self.frames_received = 0
        self.receive_times: list[float] = []
        """perf_counter() of every decoded picture (the last 1000), to measure frame rates."""
        self._frames: asyncio.Queue[tuple[int, np.ndarray]] = asyncio.Queue(maxsize=8)
        self._ended = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def next_frame(self, after_command: int | None = None, timeout: float = 30.0) -> tuple[int, np.ndarray]:
        """(command id, (height, width, 3) uint8 RGB) of the next picture that shows at least `after_command`; by
        default every command of the client's so far (RenderSessionClient.next_frame), 0: whatever comes next."""
        after = self.client.shown_command if after_command is None else after_command
        async with asyncio.timeout(timeout):
            while True:
                if self._frames.empty() and self._ended.is_set():
                    raise SessionError("Disconnected", "the WebRTC video ended")
                get = asyncio.ensure_future(self._frames.get())
                ended = asyncio.ensure_future(self._ended.wait())
                try:
                    await asyncio.wait({get, ended}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ended.cancel()
                    if not get.done():
                        get.cancel()
                if get.cancelled():
                    continue
                command_id, image = get.result()
                if command_id >= after:
                    return command_id, image

    async def close(self) -> None:
        """Close the peer connection, and tell the server (the session connection then gets frames again)."""
        with contextlib.suppress(SessionError):
            await self.client.command("webrtcClose")
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.pc.close()

    async def __aenter__(self) -> WebRTCVideo:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                if not isinstance(frame, av.VideoFrame):
                    continue
                image: np.ndarray = await asyncio.to_thread(frame.to_ndarray, format="rgb24")
                command_id = read_stamp(image)
                self.frames_received += 1
                self.receive_times.append(time.perf_counter())
                del self.receive_times[:-1000]
                if self._frames.full():
                    self._frames.get_nowait()  # keep the newest pictures
                self._frames.put_nowait((command_id if command_id is not None else 0, image))
        except MediaStreamError:
            pass
        finally:
            self._ended.set()


async def open_webrtc(
    client: RenderSessionClient, timeout: float = 20.0, codecs: tuple[str, ...] = ("H264", "VP8")
) -> WebRTCVideo:
    """Offer a receive-only video connection over `client`'s session connection (no ICE servers: host candidates
    only, nothing contacts a STUN server) and return once the server answered. From then on the server sends this
    connection's frames over WebRTC instead of the WebSocket. `codecs`: the ones to offer, preferred first."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        transceiver.setCodecPreferences(preferred_video_codecs(RTCRtpSender.getCapabilities("video").codecs, codecs))
        await pc.setLocalDescription(await pc.createOffer())  # returns once ICE gathering is complete
        offer = pc.localDescription
        async with asyncio.timeout(timeout):
            # flush: aiortc's receiver decodes a picture only once the next one starts arriving (render/webrtc.py)
            reply = await client.command("webrtcOffer", sdp=offer.sdp, sdpType=offer.type, flush=True)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["sdpType"]))
    except BaseException:
        await pc.close()
        raise
    track = transceiver.receiver.track
    return WebRTCVideo(client, pc, track, reply["sdp"])
