"""WebRTC, the third transport: a real render server started through the API, signalling over its WebSocket,
H.264 over a real (loopback) peer connection, frames decoded and checked by the Python client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import av
import httpx
import numpy as np
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket, unpack_header_extensions

from openrr.client.render_session import RenderSessionClient
from openrr.client.webrtc import WebRTCVideo, open_webrtc
from openrr.protocol.stamp import STAMP_BLOCK_H, STAMP_WIDTH, read_stamp, write_stamp
from openrr.render.stamp import write_stamp_i420
from openrr.render.webrtc import PLAYOUT_DELAY_URI, REPEAT_AFTER_S, RenderTrack, _ZeroPlayoutDelayMap
from openrr.render.yuv import to_i420
from tests.harness import Service

API = {"api-version": "2021-01-01"}
BACKGROUND = np.array([0.12, 0.12, 0.14]) * 255
TOLERANCE = 16  # H.264 at 6 Mbit/s


async def _connect(service: Service, doc: dict[str, Any], role: str = "controller") -> RenderSessionClient:
    return await RenderSessionClient.connect(
        doc["hostname"], doc["handshakePort"], service.token(), role=role, ca=service.cert
    )


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll `check` until it holds, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _assert_sphere(image: np.ndarray) -> None:
    """A unit sphere 5 away, 60° field of view, in the middle of a 1280×720 picture."""
    assert image.shape == (720, 1280, 3)
    diff = np.abs(image.astype(float) - BACKGROUND).max(axis=-1)
    assert (diff[330:390, 610:670] > 3 * TOLERANCE).mean() > 0.98, "the sphere should fill the centre"
    edges = np.concatenate([diff[:, -100:].ravel(), diff[-100:, :].ravel(), diff[STAMP_BLOCK_H + 8 :, :100].ravel()])
    assert (edges <= TOLERANCE).mean() > 0.99, "far from the sphere the background should show"


def test_stamp_round_trip() -> None:
    image = np.full((32, 300, 3), 30, dtype=np.uint8)
    for value in (0, 1, 77, 2**31 + 12345, 2**32 - 1):
        write_stamp(image, value)
        assert read_stamp(image) == value
    assert read_stamp(np.zeros((8, STAMP_WIDTH - 1, 3), dtype=np.uint8)) is None


def test_stamp_written_into_i420_reads_back_from_rgb() -> None:
    """WebRTC pictures are stamped after their conversion to I420; receivers read the stamp from decoded RGB."""
    rgba = np.full((64, 320, 4), 200, dtype=np.uint8)
    rgba[..., 0] = 20  # a coloured background: the stamp's chroma must be neutral, or its blocks turn colour
    for value in (0, 1, 77, 2**31 + 12345, 2**32 - 1):
        i420 = to_i420(rgba)
        write_stamp_i420(i420, value)
        rgb = av.VideoFrame.from_ndarray(i420, format="yuv420p").to_ndarray(format="rgb24")
        assert read_stamp(rgb) == value
        corner = rgb[:STAMP_BLOCK_H, :STAMP_WIDTH].astype(int)
        assert np.all((corner <= 8) | (corner >= 247)), "black and white blocks"
        assert np.array_equal(
            rgb[STAMP_BLOCK_H:],
            av.VideoFrame.from_ndarray(to_i420(rgba), format="yuv420p").to_ndarray(format="rgb24")[STAMP_BLOCK_H:],
        ), "nothing below the stamp changes"


@pytest.mark.parametrize("flush", [True, False])
def test_the_last_picture_is_repeated_soon_only_for_receivers_that_ask(flush: bool) -> None:
    """A receiver that decodes a picture only when the next one starts (aiortc: `flush`) gets the last picture again
    about FLUSH_AFTER_S after it; any other receiver (browsers) only after REPEAT_AFTER_S."""

    async def scenario() -> None:
        track = RenderTrack(flush=flush)
        track.push(to_i420(np.zeros((64, 64, 4), dtype=np.uint8)))  # I420, as the server's encoder thread makes them
        first_pts = (await asyncio.wait_for(track.recv(), 5)).pts  # a repeat is the same frame, re-timed
        started = time.monotonic()
        try:
            repeat = await asyncio.wait_for(track.recv(), REPEAT_AFTER_S / 2)
        except TimeoutError:
            repeat = None
        if flush:
            assert repeat is not None and repeat.pts is not None and first_pts is not None and repeat.pts > first_pts
            assert time.monotonic() - started < REPEAT_AFTER_S / 2
        else:
            assert repeat is None, "a browser needs no repeat right after each picture"
        track.stop()

    asyncio.run(scenario())


def test_packets_carry_a_zero_playout_delay_when_it_was_negotiated() -> None:
    """The extension writer the server puts into its RTP sender: aiortc's own packet serializer and parser (no
    network needed; Chromium's side of the negotiation is checked in test_viewer.py)."""
    negotiated = RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=9, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(id=5, uri=PLAYOUT_DELAY_URI),
        ]
    )
    writer = _ZeroPlayoutDelayMap()
    writer.configure(negotiated)
    packet = RtpPacket(payload_type=102, sequence_number=7, timestamp=90_000, payload=b"\x65" * 100)
    packet.extensions.mid = "0"
    data = packet.serialize(writer)
    reader = _RawExtensions()
    reader.configure(negotiated)
    parsed = RtpPacket.parse(data, reader)
    assert parsed.payload == packet.payload and parsed.extensions.mid == "0"
    assert reader.raw == [
        (9, b"0"),
        (5, b"\x00\x00\x00"),  # 12-bit minimum and maximum delay, both 0
    ]
    # Not negotiated (a client that did not offer it): packets are aiortc's, unchanged.
    plain = _ZeroPlayoutDelayMap()
    plain.configure(RTCRtpParameters(headerExtensions=negotiated.headerExtensions[:1]))
    assert packet.serialize(plain) == packet.serialize(_aiortc_map(negotiated))


class _RawExtensions(HeaderExtensionsMap):
    """aiortc's reader, also keeping every extension as (id, bytes): it drops those it does not know."""

    raw: list[tuple[int, bytes]] | None = None

    def get(self, extension_profile: int, extension_value: bytes) -> HeaderExtensions:
        self.raw = unpack_header_extensions(extension_profile, extension_value)
        return super().get(extension_profile, extension_value)


def _aiortc_map(parameters: RTCRtpParameters) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(parameters)
    return extensions


def test_webrtc_h264_controller_and_watcher(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    inspector = f"https://{session['hostname']}:{session['arrInspectorPort']}"

    async def peers(client: RenderSessionClient) -> int:
        count: int = (await client.stats())["webrtcPeers"]
        return count

    async def scenario() -> None:
        controller = await _connect(service, session)
        watcher = await _connect(service, session, role="watcher")
        video: WebRTCVideo | None = None
        try:
            await controller.load_model(model_url["sphere"])
            video = await open_webrtc(controller)
            assert video.codec == "H264", video.answer_sdp
            assert "H264" in video.answer_sdp.split("m=video", 1)[1].split("a=rtpmap:", 2)[1]
            assert "typ srflx" not in video.answer_sdp and "typ relay" not in video.answer_sdp  # host candidates only

            cmd = await controller.set_camera(position=(0, 0, 5), target=(0, 0, 0), fov_y=60)
            command_id, image = await video.next_frame(after_command=cmd, timeout=20)
            assert command_id >= cmd
            _assert_sphere(image)

            # Camera moves right: the sphere moves left in the picture, in the frame stamped with that command.
            cmd = await controller.set_camera(position=(1.5, 0, 5), target=(1.5, 0, 0))
            command_id, moved = await video.next_frame(after_command=cmd, timeout=10)
            diff = np.abs(moved.astype(float) - BACKGROUND).max(axis=-1) > 3 * TOLERANCE
            assert command_id == cmd and np.nonzero(diff[STAMP_BLOCK_H + 8 :])[1].mean() < 640 - 100

            # A watcher may use WebRTC too (it only receives).
            seen = await open_webrtc(watcher)
            assert seen.codec == "H264"
            cmd = await controller.set_camera(position=(0, 0, 5), target=(0, 0, 0))
            command_id, image = await seen.next_frame(after_command=cmd, timeout=20)
            assert command_id >= cmd
            _assert_sphere(image)
            assert await peers(controller) == 2

            # webrtcClose closes the controller's peer connection: its frames come over the WebSocket again.
            await video.close()
            video = None
            assert await peers(controller) == 1
            cmd = await controller.set_camera(position=(0, 0.1, 5), target=(0, 0, 0))
            frame = await controller.next_frame(after_command=cmd, timeout=10)
            assert frame.image.shape == (720, 1280, 3)

            # Closing the watcher's WebSocket closes its peer connection on the server.
            await watcher.close()
            await _until(lambda: _no_peers(controller), 10, "the watcher's peer connection to close")
            await seen.pc.close()

            def log() -> list[str]:
                auth = {"Authorization": f"Bearer {service.token()}"}
                status = httpx.get(f"{inspector}/api/status", headers=auth, verify=service.tls, timeout=5)
                lines: list[str] = status.json()["log"]
                return lines

            async def watcher_closed_logged() -> bool:
                # The peer leaves the count before its connection has finished closing and says so.
                return any("WebRTC peer of a watcher closed" in line for line in await asyncio.to_thread(log))

            await _until(watcher_closed_logged, 10, "the server to log the watcher's closed peer")
            lines = log()
            assert any("WebRTC peer opened for a controller: H264, x264 ultrafast" in line for line in lines)
            assert sum("WebRTC peer of a watcher closed" in line for line in lines) == 1
        finally:
            if video is not None:
                await video.close()
            await watcher.close()
            await controller.close()

    async def _no_peers(client: RenderSessionClient) -> bool:
        return await peers(client) == 0

    asyncio.run(scenario())


def test_webrtc_offer_is_validated(service: Service, session: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with await _connect(service, session) as client:
            with pytest.raises(Exception, match="BadRequest"):
                await client.command("webrtcOffer", sdp="", sdpType="offer")
            with pytest.raises(Exception, match="BadRequest"):
                await client.command("webrtcOffer", sdp="v=0\r\nnot sdp", sdpType="offer")
            with pytest.raises(Exception, match="'flush' must be true or false, not 'yes'"):
                await client.command("webrtcOffer", sdp="v=0\r\n", sdpType="offer", flush="yes")
            assert (await client.stats())["webrtcPeers"] == 0
            await client.command("webrtcClose")  # nothing open: a no-op

    asyncio.run(scenario())


def test_webrtc_falls_back_to_vp8(service: Service, session: dict[str, Any], model_url: dict[str, str]) -> None:
    async def scenario() -> None:
        async with await _connect(service, session) as client:
            await client.load_model(model_url["sphere"])
            async with await open_webrtc(client, codecs=("VP8",)) as video:
                assert video.codec == "VP8"
                cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0), fov_y=60)
                command_id, image = await video.next_frame(after_command=cmd, timeout=20)
                assert command_id >= cmd
                _assert_sphere(image)

    asyncio.run(scenario())
