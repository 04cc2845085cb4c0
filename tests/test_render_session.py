"""Sessions that render: real render servers started through the API, real models over HTTP, frames checked
pixel by pixel through the Python client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from openrr.client.render_session import Frame, RenderSessionClient, SessionError
from tests.harness import Service, create_account, session_doc

API = {"api-version": "2021-01-01"}
BACKGROUND = np.array([0.12, 0.12, 0.14]) * 255
TOLERANCE = 12  # JPEG


async def _connect(
    service: Service, doc: dict[str, Any], role: str = "controller", token: str | None = None
) -> RenderSessionClient:
    return await RenderSessionClient.connect(
        doc["hostname"], doc["handshakePort"], token or service.token(), role=role, ca=service.cert
    )


def _is_background(pixels: np.ndarray) -> np.ndarray:
    return np.all(np.abs(pixels.astype(float) - BACKGROUND) <= TOLERANCE, axis=-1)


def _object_mask(frame: Frame) -> np.ndarray:
    return ~_is_background(frame.image)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_model_appears_moves_hides_and_is_cut(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    async def scenario() -> None:
        async with await _connect(service, session) as client:
            progress: list[float] = []
            loaded = await client.load_model(model_url["sphere"], progress=progress.append)
            assert loaded["triangles"] == 5120 and loaded["name"].endswith("sphere.glb")
            assert loaded["bounds"]["min"] == pytest.approx([-1, -1, -1], abs=1e-3)
            assert progress and progress[-1] == pytest.approx(1.0)
            cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0), fov_y=60)
            frame = await client.next_frame(after_command=cmd)
            h, w, _ = frame.image.shape
            assert (h, w) == (720, 1280)
            # Projected radius of a unit sphere 5 away with a 60° vertical field of view.
            r_px = (h / 2) / (5 * np.tan(np.radians(30))) * 1.0
            cy, cx = h / 2, w / 2
            yy, xx = np.mgrid[0:h, 0:w]
            dist = np.hypot(yy - cy, xx - cx)
            mask = _object_mask(frame)
            assert mask[dist < 0.8 * r_px].mean() > 0.98, "the sphere should cover its projected disc"
            assert mask[dist > 1.3 * r_px].mean() < 0.01, "nothing should be drawn far outside it"
            centre_x, _ = _centroid(mask)

            # Camera moves right: the sphere moves left in the picture.
            cmd = await client.set_camera(position=(1.5, 0, 5), target=(1.5, 0, 0))
            moved = _object_mask(await client.next_frame(after_command=cmd))
            assert _centroid(moved)[0] < centre_x - 0.5 * r_px

            cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0))
            await client.next_frame(after_command=cmd)
            entity = loaded["entityId"]

            # A cut plane keeping x >= 0 removes the left half.
            cmd = await client.set_cut_planes([((1, 0, 0), (0, 0, 0))])
            cut = _object_mask(await client.next_frame(after_command=cmd))
            left = (dist < 0.8 * r_px) & (xx < cx - 10)
            right = (dist < 0.8 * r_px) & (xx > cx + 10)
            assert cut[left].mean() < 0.02 and cut[right].mean() > 0.98
            cmd = await client.set_cut_planes([])

            cmd = await client.set_override(entity, hidden=True)
            hidden = await client.next_frame(after_command=cmd)
            assert _is_background(hidden.image).mean() > 0.999

            cmd = await client.set_override(entity, hidden=False, tint=(0.0, 0.0, 1.0, 1.0))
            tinted = await client.next_frame(after_command=cmd)
            centre = tinted.image[int(cy) - 5 : int(cy) + 5, int(cx) - 5 : int(cx) + 5].reshape(-1, 3).mean(axis=0)
            assert centre[2] > centre[0] + 40, f"the tint should make it blue, got {centre}"

            hit = await client.ray_cast((0, 0, 5), (0, 0, -1))
            assert hit is not None and hit["modelEntityId"] == entity  # entityId: the part hit (its node)
            assert hit["distance"] == pytest.approx(4.0, abs=0.02)
            assert hit["normal"] == pytest.approx([0, 0, 1], abs=0.05)
            assert await client.ray_cast((0, 5, 5), (0, 0, -1)) is None

            stats = await client.stats()
            assert stats["framesSent"] >= 6 and stats["connectedClients"] == 1
            assert stats["trianglesDrawn"] >= 5120 or stats["trianglesDrawn"] == 0
            assert "llvmpipe" in stats["renderer"] or stats["renderer"]

    run(scenario())


def test_textured_box_and_point_cloud(service: Service, session: dict[str, Any], model_url: dict[str, str]) -> None:
    async def scenario() -> None:
        async with await _connect(service, session) as client:
            box = await client.load_model(model_url["box"])
            cmd = await client.set_camera(position=(0.3, 0.4, 3), target=(0, 0, 0))
            frame = await client.next_frame(after_command=cmd)
            inside = frame.image[_object_mask(frame)].astype(float)
            assert inside[:, 0].mean() > inside[:, 1].mean() + 40, "the red texture should show"
            await client.unload_model(box["entityId"])
            cloud = await client.load_model(model_url["cloud"])
            assert cloud["points"] == 20_000 and cloud["triangles"] == 0
            cmd = await client.set_camera(position=(0, 0, 4), target=(0, 0, 0))
            frame = await client.next_frame(after_command=cmd)
            drawn = frame.image[_object_mask(frame)].astype(float)
            assert len(drawn) > 2000 and drawn[:, 1].mean() > drawn[:, 0].mean() + 40, "green points should show"

    run(scenario())


def test_bad_model_gives_a_clear_error_and_the_session_stays_ready(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    async def scenario() -> None:
        async with await _connect(service, session) as client:
            with pytest.raises(SessionError) as corrupt:
                await client.load_model(model_url["corrupt"])
            assert corrupt.value.code == "ModelLoadFailed" and "corrupt.glb" in corrupt.value.message
            with pytest.raises(SessionError) as missing:
                await client.load_model(model_url["sphere"].replace("sphere.glb", "nope.glb") + "?sig=SECRET")
            assert "404" in missing.value.message and "SECRET" not in missing.value.message
            with pytest.raises(SessionError) as unsupported:
                await client.load_model(model_url["sphere"].replace(".glb", ".fbx"))
            assert unsupported.value.code == "ModelLoadFailed"
            loaded = await client.load_model(model_url["sphere"])  # still works
            assert loaded["triangles"] == 5120

    run(scenario())
    with service.api() as api:
        assert session_doc(api, service.account_id, session["id"])["status"] == "Ready"


def test_access_rules_watchers_and_reconnect(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    other = create_account(service.data_dir)
    other_token = service.token(other["accountId"], other["primaryKey"])

    async def scenario() -> None:
        with pytest.raises(SessionError) as foreign:
            await _connect(service, session, token=other_token)
        assert foreign.value.code == "Forbidden"
        with pytest.raises(SessionError) as garbage:
            await _connect(service, session, token="not.a.token")
        assert garbage.value.code == "Unauthorized"

        controller = await _connect(service, session)
        loaded = await controller.load_model(model_url["sphere"])
        with pytest.raises(SessionError) as second:
            await _connect(service, session)
        assert second.value.code == "ControllerConnected"

        watcher = await _connect(service, session, role="watcher")
        assert [e["entityId"] for e in watcher.welcome["entities"]] == [loaded["entityId"]]
        cmd = await controller.set_camera(position=(0, 1, 5), target=(0, 0, 0))
        seen = await watcher.next_frame(after_command=cmd)
        assert _object_mask(seen).any()
        with pytest.raises(SessionError) as read_only:
            await watcher.set_camera(position=(0, 0, 9))
        assert read_only.value.code == "Forbidden"

        # The controller drops and comes back within the grace period: the scene is still there.
        await controller.close()
        again = await _connect(service, session)
        assert [e["entityId"] for e in again.welcome["entities"]] == [loaded["entityId"]]
        assert again.welcome["camera"]["position"] == [0, 1, 5]
        await again.close()
        await watcher.close()

    run(scenario())


def test_inspector_shows_models_stats_and_log(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    inspector = f"https://{session['hostname']}:{session['arrInspectorPort']}"

    async def scenario() -> None:
        async with await _connect(service, session) as client:
            await client.load_model(model_url["sphere"])
            cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0))
            await client.next_frame(after_command=cmd)
            # The inspector's status wants a token of the session's account (tests/security/test_inspector.py).
            auth = {"Authorization": f"Bearer {service.token()}"}
            status = httpx.get(f"{inspector}/api/status", headers=auth, verify=service.tls, timeout=5).json()
            assert [m["name"] for m in status["models"]] == ["sphere.glb"]
            assert status["models"][0]["triangles"] == 5120
            stats = status["stats"]
            assert stats["framesSent"] >= 1 and stats["connectedClients"] == 1 and stats["renderer"]
            assert stats["renderTimeMs"] > 0 and stats["encodeTimeMs"] > 0
            assert any("loaded sphere.glb" in line for line in status["log"])
            page = httpx.get(inspector + "/", verify=service.tls, timeout=5)
            assert page.status_code == 200 and "graph-" in page.text and "api/status" in page.text

    run(scenario())


def test_h264_transport_beside_jpeg(service: Service, session: dict[str, Any], model_url: dict[str, str]) -> None:
    """An H.264 controller and a JPEG watcher at once: both see the model; H.264 frames are much smaller."""

    async def scenario() -> None:
        controller = await RenderSessionClient.connect(
            session["hostname"], session["handshakePort"], service.token(), codec="h264", ca=service.cert
        )
        watcher = await _connect(service, session, role="watcher")
        try:
            assert controller.welcome["codec"] == "h264" and watcher.welcome["codec"] == "jpeg"
            # websockets offers permessage-deflate; the render server declines it (frames are compressed already)
            assert controller.ws.protocol.extensions == [] and watcher.ws.protocol.extensions == []
            await controller.load_model(model_url["sphere"])
            h264_frames: list[Frame] = []
            for step in range(8):
                cmd = await controller.set_camera(position=(0.2 * step, 0, 5), target=(0.2 * step, 0, 0))
                h264_frames.append(await controller.next_frame(after_command=cmd))
                await watcher.next_frame(after_command=cmd)
            last = h264_frames[-1]
            assert last.image.shape == (720, 1280, 3)
            mask = _object_mask(last)
            assert mask[340:380, 500:560].mean() > 0.9, "the decoded H.264 frame shows the sphere"
            assert mask[:, :100].mean() < 0.01 and mask[:100, :].mean() < 0.01
            assert controller.bytes_received < watcher.bytes_received / 2, "H.264 should need far fewer bytes"
            assert not h264_frames[-1].keyframe, "frames after the first are predicted"
            await controller.command("requestKeyframe")
            assert (await controller.next_frame(after_command=controller.last_command)).keyframe
        finally:
            await controller.close()
            await watcher.close()

    run(scenario())


def test_unknown_codec_is_refused(service: Service, session: dict[str, Any]) -> None:
    async def scenario() -> None:
        with pytest.raises(SessionError) as refused:
            await RenderSessionClient.connect(
                session["hostname"], session["handshakePort"], service.token(), codec="vp9", ca=service.cert
            )
        assert refused.value.code == "BadRequest" and "vp9" in refused.value.message

    run(scenario())


def test_clients_vanishing_mid_stream_do_not_hurt_the_server(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    """Connections cut without a close handshake while frames are flowing (a crashed app, a closed laptop)."""

    async def scenario() -> None:
        for attempt in range(10):
            client = await _connect(service, session)
            if attempt == 0:
                await client.load_model(model_url["sphere"])
            for step in range(3):
                await client.set_camera(position=(step * 0.3, 0, 5), target=(0, 0, 0))
            client.ws.transport.abort()  # TCP reset, no WebSocket close
            await client.close()
        async with await _connect(service, session) as survivor:
            cmd = await survivor.set_camera(position=(0, 0, 5), target=(0, 0, 0))
            assert _object_mask(await survivor.next_frame(after_command=cmd)).any()

    run(scenario())
    with service.api() as api:
        assert session_doc(api, service.account_id, session["id"])["status"] == "Ready"


def test_malformed_messages_get_clear_errors_and_keep_the_connection(service: Service, session: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with await _connect(service, session) as client:
            for raw in ("{not json", "[1, 2]", b"\x00\x01"):
                await client.ws.send(raw)
            with pytest.raises(SessionError) as unknown:
                await client.command("explode")
            assert unknown.value.code == "BadRequest" and "explode" in unknown.value.message
            with pytest.raises(SessionError) as bad_vector:
                await client.command("setCamera", position=[0, "x", 5])
            assert "'position' must be an array of 3 numbers" in bad_vector.value.message
            assert (await client.stats())["connectedClients"] == 1  # still connected and answering

    run(scenario())
