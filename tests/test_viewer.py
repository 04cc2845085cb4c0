"""The browser viewer (`/viewer/`) in real headless Chromium, driven by Playwright: it gets a token from the
STS, finds the session, connects to its render server over WSS and shows the video; we check the pixels of
its canvas, drive it with the mouse, and read its meters from `window.openrrViewer`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium
from tests.harness import Service, ready_session

sync_api = pytest.importorskip("playwright.sync_api")

API = {"api-version": "2021-01-01"}
BACKGROUND = np.array([0.12, 0.12, 0.14]) * 255
TOLERANCE = 12  # JPEG
WAIT_MS = 30_000
CONSOLE: list[str] = []  # the pages' console messages, shown when a wait times out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(
        tmp_path_factory.mktemp("chromium-profile"), viewport={"width": 1280, "height": 800}, device_scale_factor=1
    ) as context:
        yield context


@pytest.fixture(scope="module")
def session_id(service: Service) -> Iterator[str]:
    with ready_session(service, "viewer") as doc:
        yield doc["id"]


def viewer_url(service: Service, session_id: str, **extra: str) -> str:
    """A link that connects at once: settings in the query, an STS token in the fragment (never a key)."""
    query = {"session": session_id, **extra}
    return f"{service.endpoint}/viewer/?{urlencode(query)}#{urlencode({'token': service.token()})}"


def open_viewer(browser: Any, url: str, errors: list[str], init_script: str | None = None) -> Any:
    page = browser.new_page()
    if init_script:
        page.add_init_script(init_script)  # runs before the page's own scripts
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: CONSOLE.append(f"{msg.type}: {msg.text}"))
    page.goto(url)
    return page


def close_viewer(page: Any) -> None:
    """Disconnect with the page's own button (a clean WebSocket close), then close the tab."""
    try:
        if page.evaluate("() => Boolean(window.openrrViewer?.connected)"):
            page.locator("#disconnect").click()
            page.wait_for_function("() => !window.openrrViewer.connected", timeout=5000)
            assert page.locator("#status").inner_text() == "Disconnected."
    finally:
        page.close()


def wait_js(page: Any, expression: str, timeout_ms: int = WAIT_MS) -> Any:
    """Poll a JavaScript expression in the page until it is truthy (bounded); returns its value."""
    try:
        return page.wait_for_function(f"() => {expression}", timeout=timeout_ms).json_value()
    except sync_api.TimeoutError:
        status = page.locator("#status").inner_text()
        error = page.locator("#error-text").inner_text()
        state = page.evaluate("() => window.openrrViewer && JSON.stringify(window.openrrViewer)")
        console = "\n".join(CONSOLE[-20:])
        lines = [f"timed out waiting for {expression}", f"status: {status}", f"error: {error}", f"state: {state}"]
        raise AssertionError("\n".join([*lines, "console:", console])) from None


def viewer_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        "() => { const v = window.openrrViewer; return {connected: v.connected, role: v.role, fps: v.fps,"
        " framesDisplayed: v.framesDisplayed, lastLatencyMs: v.lastLatencyMs, medianLatencyMs: v.medianLatencyMs,"
        " lastHit: v.lastHit, entities: v.entities, camera: v.camera, cutPlanes: v.cutPlanes,"
        " lastLoad: v.lastLoad, lastError: v.lastError, lastFrame: v.lastFrame, streamSize: v.streamSize}; }"
    )
    return state


def canvas_pixels(page: Any) -> np.ndarray:
    png = page.locator("#view").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def is_background(pixels: np.ndarray) -> np.ndarray:
    mask: np.ndarray = np.all(np.abs(pixels - BACKGROUND) <= TOLERANCE, axis=-1)
    return mask


def centroid_x(pixels: np.ndarray) -> float:
    _, xs = np.nonzero(~is_background(pixels))
    return float(xs.mean())


def camera_distance(state: dict[str, Any]) -> float:
    camera = state["camera"]
    return float(np.linalg.norm(np.subtract(camera["position"], camera["target"])))


DISTANCE_JS = (
    "(({position: p, target: t}) => Math.hypot(p[0] - t[0], p[1] - t[1], p[2] - t[2]))(window.openrrViewer.camera)"
)

# Two touch pointers on the canvas's centre line, 100 px apart, spread to 200 px in 10 steps each.
PINCH_OUT_JS = """() => {
  const canvas = document.getElementById("view");
  const r = canvas.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const send = (type, id, clientX) => canvas.dispatchEvent(new PointerEvent(type, {
    pointerId: id, pointerType: "touch", isPrimary: id === 11, clientX, clientY: y, button: 0,
    buttons: type === "pointerup" ? 0 : 1, bubbles: true, cancelable: true,
  }));
  send("pointerdown", 11, x - 50);
  send("pointerdown", 12, x + 50);
  for (let i = 1; i <= 10; i++) {
    send("pointermove", 12, x + 50 + 5 * i);
    send("pointermove", 11, x - 50 - 5 * i);
  }
  send("pointerup", 11, x - 100);
  send("pointerup", 12, x + 100);
}"""


def canvas_centre(page: Any) -> tuple[float, float]:
    box = page.locator("#view").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


# The viewer's ES modules (viewer.js puts them together), every one served from the page's own origin.
VIEWER_MODULES = (
    "viewer.js", "connection.js", "display.js", "meters.js", "input.js", "scene-panel.js", "address.js", "errors.js",
    "dom.js", "protocol.js", "camera.js", "api.js", "video.js", "scene-tree.js", "render-controls.js",
    "material-panel.js",
)  # fmt: skip


def test_viewer_root_serves_the_page(service: Service) -> None:
    with service.http() as http:
        r = http.get("/viewer/", follow_redirects=True)
    assert r.status_code == 200 and "openrr viewer" in r.text


def test_viewer_static_files(service: Service) -> None:
    with service.http() as http:
        page = http.get("/viewer/index.html")
        assert page.status_code == 200 and "openrr viewer" in page.text
        for name in VIEWER_MODULES:
            r = http.get(f"/viewer/{name}")
            assert r.status_code == 200 and "javascript" in r.headers["content-type"], name
            assert "http://" not in r.text and "https://" not in r.text, f"{name} must not load anything remote"
        assert http.get("/viewer/viewer.css").headers["content-type"].startswith("text/css")


def test_viewer_shows_orbits_picks_and_cuts_the_model(
    browser: Any, service: Service, session_id: str, model_url: dict[str, str], tmp_path: Path
) -> None:
    errors: list[str] = []
    page = open_viewer(browser, viewer_url(service, session_id, model=model_url["sphere"]), errors)
    try:
        wait_js(page, "window.openrrViewer?.connected && window.openrrViewer.lastLoad")
        state = viewer_state(page)
        assert state["lastLoad"]["ok"], state["lastLoad"]
        assert state["lastLoad"]["triangles"] == 5120 and state["role"] == "controller"
        assert "token=" not in page.url, "the access token should be removed from the address bar"
        wait_js(page, "window.openrrViewer.idle()")
        assert page.locator("#load-result").inner_text().startswith("Loaded sphere.glb")
        _check_inspector_link(page, service, session_id)

        # The stream has the canvas's size, and the model is framed: sphere in the middle, background around.
        state = viewer_state(page)
        box = page.locator("#view").bounding_box()
        assert box is not None
        assert state["streamSize"] == {"width": round(box["width"]), "height": round(box["height"])}
        assert state["lastFrame"]["width"] == state["streamSize"]["width"]
        assert state["camera"]["target"] == pytest.approx([0, 0, 0], abs=1e-3)
        before = canvas_pixels(page)
        h, w, _ = before.shape
        centre = before[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10]
        assert not is_background(centre).any(), f"the model should cover the centre, got {centre.mean((0, 1))}"
        for corner in (before[:12, :12], before[:12, -12:], before[-12:, :12], before[-12:, -12:]):
            assert is_background(corner).all(), f"corners should show the background, got {corner.mean((0, 1))}"
        assert 0.05 < (~is_background(before)).mean() < 0.6, "the framed sphere should fill part of the view"
        page.screenshot(path=str(tmp_path / "viewer.png"))

        # Left drag orbits: the camera moves around the target and the shading changes.
        cx, cy = canvas_centre(page)
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 180, cy + 90, steps=12)
        page.mouse.up()
        wait_js(page, "window.openrrViewer.idle()")
        orbited = viewer_state(page)
        assert orbited["camera"]["position"] != pytest.approx(state["camera"]["position"], abs=1e-3)
        assert orbited["camera"]["target"] == pytest.approx([0, 0, 0], abs=1e-3), "an orbit keeps the target"
        after = canvas_pixels(page)
        # The sphere's outline stays, its shading (the highlight of the world-fixed key light) moves.
        changed = np.abs(after - before).max(axis=-1) > 8
        assert changed.mean() > 0.02, f"the picture should change after an orbit ({changed.mean():.4f} changed)"

        # A click (no drag) on the middle picks the sphere's front: distance = camera distance - radius.
        page.mouse.click(cx, cy)
        wait_js(page, "window.openrrViewer.lastHit")
        hit = viewer_state(page)["lastHit"]
        # The hit names the part (the file's one node) and its path from the model's root (named after the file).
        assert hit["hit"] and hit["path"] == ["sphere.glb", "geometry_0"] and hit["name"] == "geometry_0", hit
        distance = float(np.linalg.norm(orbited["camera"]["position"]))
        assert hit["distance"] == pytest.approx(distance - 1.0, abs=0.03)
        assert np.linalg.norm(hit["position"]) == pytest.approx(1.0, abs=0.03)
        assert "sphere.glb" in page.locator("#hit").inner_text()
        wait_js(page, "window.openrrViewer.entities[0].selected && window.openrrViewer.idle()")
        assert page.locator("#entities li.selected").count() == 1
        page.screenshot(path=str(tmp_path / "picked.png"))

        # A cut plane through the centre with normal +X removes half of the sphere.
        uncut = canvas_pixels(page)
        page.locator("#cut-x").check()
        wait_js(page, "window.openrrViewer.cutPlanes.length === 1 && window.openrrViewer.idle()")
        cut = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / "cut.png"))
        assert (~is_background(cut)).sum() < 0.8 * (~is_background(uncut)).sum(), "the cut should remove a part"
        page.locator("#cut-x").uncheck()
        wait_js(page, "window.openrrViewer.cutPlanes.length === 0 && window.openrrViewer.idle()")

        # Right drag pans: the sphere follows the cursor (its centre sits at the target's depth).
        x0 = centroid_x(canvas_pixels(page))
        page.mouse.move(cx, cy)
        page.mouse.down(button="right")
        page.mouse.move(cx + 150, cy, steps=10)
        page.mouse.up(button="right")
        wait_js(page, "window.openrrViewer.idle()")
        panned = viewer_state(page)
        assert panned["camera"]["target"] != pytest.approx([0, 0, 0], abs=1e-3)
        # The centre moves 150 px; off-axis, perspective stretches the sphere's image outwards a little more.
        assert 140 < centroid_x(canvas_pixels(page)) - x0 < 185
        page.locator("#frame-all").click()
        wait_js(page, "window.openrrViewer.idle()")
        assert viewer_state(page)["camera"]["target"] == pytest.approx([0, 0, 0], abs=1e-3)

        # The wheel zooms out by 10% a notch (100 pixels: 200 are two); a two-finger pinch (touch pointers) zooms by
        # the ratio of the fingers' distances: 100 px apart -> 200 px halves the distance.
        d0 = camera_distance(viewer_state(page))
        page.mouse.move(cx, cy)
        page.mouse.wheel(0, 200)
        wait_js(page, f"{DISTANCE_JS} > {d0 * 1.1} && window.openrrViewer.idle()")
        d1 = camera_distance(viewer_state(page))
        assert d1 == pytest.approx(d0 * 1.1**2, rel=1e-3)
        page.evaluate(PINCH_OUT_JS)
        wait_js(page, "window.openrrViewer.idle()")
        pinched = viewer_state(page)
        assert camera_distance(pinched) == pytest.approx(d1 / 2, rel=1e-3)
        assert pinched["camera"]["target"] == pytest.approx([0, 0, 0], abs=1e-2)
        assert pinched["lastHit"] == hit, "a pinch is not a click"

        # Sustained motion (turntable): frames per second and command-to-display latency are measured.
        start = viewer_state(page)["framesDisplayed"]
        page.locator("#auto-rotate").check()
        wait_js(page, f"window.openrrViewer.framesDisplayed >= {start + 45} && window.openrrViewer.fps >= 5")
        meters = viewer_state(page)
        page.locator("#auto-rotate").uncheck()
        assert meters["fps"] > 0 and meters["lastLatencyMs"] is not None and meters["lastLatencyMs"] > 0
        assert meters["medianLatencyMs"] < 1000, meters
        assert page.locator("#latency").inner_text().endswith(")") and "ms" in page.locator("#latency").inner_text()
        assert int(page.locator("#fps").get_attribute("data-value") or 0) > 0
        print(f"viewer: {meters['fps']} fps, latency median {meters['medianLatencyMs']} ms")
        wait_js(page, "window.openrrViewer.idle()")
        assert errors == []
    finally:
        close_viewer(page)


def test_a_second_controller_is_refused_visibly_and_a_watcher_sees_the_scene(
    browser: Any, service: Service, session_id: str, model_url: dict[str, str], tmp_path: Path
) -> None:
    errors: list[str] = []
    controller = open_viewer(browser, viewer_url(service, session_id, model=model_url["sphere"]), errors)
    pages = [controller]
    try:
        wait_js(controller, "window.openrrViewer?.connected && window.openrrViewer.entities.length > 0")
        wait_js(controller, "window.openrrViewer.idle()")

        second = open_viewer(browser, viewer_url(service, session_id), errors)
        pages.append(second)
        code = wait_js(second, "window.openrrViewer?.lastError?.code")
        assert code == "ControllerConnected"
        banner = second.locator("#error")
        assert banner.is_visible() and "ControllerConnected" in banner.inner_text()
        assert "watcher" in banner.inner_text()
        second.screenshot(path=str(tmp_path / "refused.png"))
        assert not viewer_state(second)["connected"]

        watcher = open_viewer(browser, viewer_url(service, session_id, role="watcher"), errors)
        pages.append(watcher)
        wait_js(watcher, "window.openrrViewer?.connected && window.openrrViewer.framesDisplayed > 0")
        state = viewer_state(watcher)
        assert state["role"] == "watcher" and [e["name"] for e in state["entities"]] == ["sphere.glb"]
        assert watcher.locator("#load").is_disabled() and watcher.locator("#cut-x").is_disabled()
        assert not watcher.locator("#error").is_visible()
        watcher.screenshot(path=str(tmp_path / "watcher.png"))
        assert errors == []
    finally:
        for page in reversed(pages):
            close_viewer(page)


# Records every moment (after a task) at which Connect and Disconnect were both enabled, from the page's start.
BUTTON_WATCH_JS = """
window.bothEnabled = [];
new MutationObserver(() => {
  const connect = document.getElementById("connect");
  const disconnect = document.getElementById("disconnect");
  if (connect && disconnect && !connect.disabled && !disconnect.disabled) {
    window.bothEnabled.push(document.getElementById("status")?.textContent);
  }
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ["disabled"]});
"""

# A wheel event over the canvas's centre: [deltaY, deltaMode] (0 pixels, 1 lines, 2 pages).
WHEEL_JS = """([deltaY, deltaMode]) => {
  const canvas = document.getElementById("view");
  const r = canvas.getBoundingClientRect();
  canvas.dispatchEvent(new WheelEvent("wheel", {deltaY, deltaMode, clientX: r.left + r.width / 2,
    clientY: r.top + r.height / 2, bubbles: true, cancelable: true}));
}"""


def buttons(page: Any) -> tuple[bool, bool]:
    """Whether Connect and Disconnect are enabled."""
    return page.locator("#connect").is_enabled(), page.locator("#disconnect").is_enabled()


def is_session_lookup(url: str) -> bool:
    return "/sessions/" in url


def test_viewer_names_the_refused_key_keeps_one_button_enabled_says_still_and_zooms_gently(
    browser: Any, service: Service, session_id: str
) -> None:
    """Issue 10's newcomer findings: a wrong key read "Unauthorized: Unauthorized"; Connect and Disconnect were both
    enabled once connected; a still picture read "0 fps" (the server sends pictures only when the view changes);
    the wheel zoomed 16% a notch, with no bound on one event."""
    errors: list[str] = []
    url = f"{service.endpoint}/viewer/?{urlencode({'session': session_id, 'autoconnect': '0'})}"
    page = open_viewer(browser, url, errors, init_script=BUTTON_WATCH_JS)
    held: list[Any] = []
    try:
        wait_js(page, "window.openrrViewer !== undefined")
        assert buttons(page) == (True, False)
        page.locator("#account").fill(service.account_id)
        page.locator("#key").fill("A" * 43 + "=")
        page.locator("#connect").click()
        wait_js(page, "window.openrrViewer.lastError")
        assert page.locator("#error-text").inner_text() == (
            "Unauthorized: the account key was refused (HTTP 401). Check the account id and the key."
        )
        assert page.locator("#status").inner_text() == "Not connected."
        assert buttons(page) == (True, False)

        # While connecting, Disconnect reads Cancel and cancels (the session lookup is held back until then).
        page.locator("#key").fill(service.key)
        page.route(is_session_lookup, lambda route: held.append(route))
        with page.expect_request(lambda request: is_session_lookup(request.url)):
            page.locator("#connect").click()
        assert buttons(page) == (False, True) and page.locator("#disconnect").inner_text() == "Cancel"
        page.locator("#disconnect").click()
        assert page.locator("#status").inner_text() == "Not connected."
        assert buttons(page) == (True, False)
        held[0].continue_()  # the cancelled attempt gets its answer and stops there
        page.unroute(is_session_lookup)

        page.locator("#connect").click()
        wait_js(page, "window.openrrViewer.connected && window.openrrViewer.idle()")
        assert buttons(page) == (False, True) and page.locator("#disconnect").inner_text() == "Disconnect"
        assert not page.locator("#error").is_visible()

        # Nothing changes, so no pictures come: the meter says the picture is still rather than "0 fps".
        wait_js(page, "window.openrrViewer.fps > 0")  # the connection's first pictures, measured
        wait_js(page, "window.openrrViewer.fps === 0")
        assert page.locator("#fps").inner_text() == "still"

        # The wheel: 10% a notch, whether it counts in lines (3 a notch) or pixels (100), at most 3 notches an event.
        d0 = camera_distance(viewer_state(page))
        page.evaluate(WHEEL_JS, [-5000, 0])
        wait_js(page, f"{DISTANCE_JS} < {d0 * 0.9} && window.openrrViewer.idle()")
        d1 = camera_distance(viewer_state(page))
        assert d1 == pytest.approx(d0 / 1.1**3, rel=1e-3)
        page.evaluate(WHEEL_JS, [3, 1])
        wait_js(page, f"{DISTANCE_JS} > {d1 * 1.05} && window.openrrViewer.idle()")
        assert camera_distance(viewer_state(page)) == pytest.approx(d1 * 1.1, rel=1e-3)
        wait_js(page, "document.getElementById('fps').textContent.endsWith(' fps')")  # pictures came for the zoom

        page.locator("#disconnect").click()
        wait_js(page, "!window.openrrViewer.connected")
        assert buttons(page) == (True, False)
        assert page.evaluate("() => window.bothEnabled") == []
        assert errors == []
    finally:
        close_viewer(page)


def test_viewer_names_a_refused_token(browser: Any, service: Service, session_id: str) -> None:
    """A link whose token the service refuses (here: signed by no one) says so, not "Unauthorized: Unauthorized"."""
    errors: list[str] = []
    query = urlencode({"session": session_id, "account": service.account_id})
    forged = "e30.eyJhY2NvdW50SWQiOiAieCJ9.c2ln"  # {} . {"accountId": "x"} . "sig"
    page = open_viewer(browser, f"{service.endpoint}/viewer/?{query}#token={forged}", errors)
    try:
        assert wait_js(page, "window.openrrViewer?.lastError?.code") == "Unauthorized"
        text = page.locator("#error-text").inner_text()
        assert text.startswith("Unauthorized: the access token was refused (HTTP 401)."), text
        assert buttons(page) == (True, False)
        assert errors == []
    finally:
        close_viewer(page)


# What each transport needs from the browser; the test skips, saying why, where this Chromium lacks it.
TRANSPORT_SUPPORT_JS = {
    "h264": """async () => {
      if (typeof VideoDecoder === "undefined") return `no WebCodecs VideoDecoder (secure context: ${isSecureContext})`;
      const config = {codec: "avc1.42E01F", optimizeForLatency: true};
      const {supported} = await VideoDecoder.isConfigSupported(config);
      return supported ? "" : "VideoDecoder.isConfigSupported({codec: 'avc1.42E01F'}) is false in this Chromium";
    }""",
    "webrtc": """async () => {
      if (typeof RTCPeerConnection === "undefined") return "no RTCPeerConnection";
      if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return "no requestVideoFrameCallback";
      const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs || [];
      return codecs.some((c) => c.mimeType === "video/H264") ? "" : "this Chromium's WebRTC cannot receive H.264";
    }""",
}
VIDEO_TOLERANCE = 20  # H.264 at 6 Mbit/s (WebRTC) or x264's defaults (WebSocket): a little softer than JPEG


@pytest.mark.parametrize("transport", ["h264", "webrtc"])
def test_viewer_shows_the_model_over_h264_and_webrtc(
    browser: Any, service: Service, session_id: str, model_url: dict[str, str], tmp_path: Path, transport: str
) -> None:
    errors: list[str] = []
    page = open_viewer(browser, viewer_url(service, session_id, model=model_url["sphere"], transport=transport), errors)
    try:
        missing = page.evaluate(TRANSPORT_SUPPORT_JS[transport])
        if missing:
            pytest.skip(f"{transport} in headless Chromium here: {missing}")
        assert page.locator("#transport").input_value() == transport
        wait_js(page, "window.openrrViewer?.connected && window.openrrViewer.entities.length > 0")
        state = page.evaluate("() => ({t: window.openrrViewer.transport, e: window.openrrViewer.transportError})")
        assert state == {"t": transport, "e": None}
        if transport == "webrtc":
            # Pictures over the peer connection (the WebSocket shows JPEG until it is up), with readable stamps.
            wait_js(page, "window.openrrViewer.lastFrame?.webrtc && window.openrrViewer.lastFrame.commandId > 0")
            # Chromium lets the page read the decoded picture's corner: the <video> is shown itself, not redrawn
            # into the canvas, and a small canvas hides the stamp (checked with the corners below).
            assert page.evaluate("() => document.getElementById('viewport').classList.contains('direct-video')")
            assert page.locator("#stamp-cover").is_visible()
        wait_js(page, "window.openrrViewer.idle() && window.openrrViewer.framesDisplayed > 0")
        # The HUD refreshes four times a second: wait for it rather than read it once.
        wait_js(page, f"document.querySelector('#transport-label').dataset.value === '{transport}'")

        # The sphere fills the middle; the corners show the background (WebRTC's stamp, top left, is hidden).
        pixels = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / f"viewer-{transport}.png"))
        h, w, _ = pixels.shape
        background = np.all(np.abs(pixels - BACKGROUND) <= VIDEO_TOLERANCE, axis=-1)
        centre = background[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10]
        assert not centre.any(), f"the model should cover the centre, got {pixels[h // 2, w // 2]}"
        for corner in (background[:20, :300], background[:12, -12:], background[-12:, :12], background[-12:, -12:]):
            assert corner.mean() > 0.995, f"corners should show the background ({corner.mean():.4f})"
        assert 0.05 < (~background).mean() < 0.6, "the framed sphere should fill part of the view"

        # Turntable: frames keep coming and command-to-display latency is measured from them.
        start = page.evaluate("() => window.openrrViewer.framesDisplayed")
        page.locator("#auto-rotate").check()
        wait_js(page, f"window.openrrViewer.framesDisplayed >= {start + 30} && window.openrrViewer.fps >= 5")
        page.locator("#auto-rotate").uncheck()
        stats = page.evaluate("() => window.openrrViewer.refreshTransportStats()")
        meters = viewer_state(page)
        assert meters["lastLatencyMs"] is not None and 0 < meters["medianLatencyMs"] < 1000, meters
        assert stats["bytesReceived"] > 10_000, stats
        if transport == "webrtc":
            assert stats["webrtc"]["codec"] == "video/H264", stats
            # Chromium offers RTP's playout-delay extension and the server answers it (set to 0 in every packet).
            detail = page.evaluate("() => window.openrrViewer.transportDetail")
            assert "jitter buffer target 0" in detail and "playout delay 0" in detail, detail
        print(f"viewer {transport}: {meters['fps']} fps, latency median {meters['medianLatencyMs']} ms")
        wait_js(page, "window.openrrViewer.idle()")

        # Choosing another transport reconnects with it; the session keeps its scene.
        page.locator("#transport").select_option("jpeg")
        wait_js(page, "window.openrrViewer.connected && window.openrrViewer.transport === 'jpeg'")
        wait_js(page, "window.openrrViewer.idle() && window.openrrViewer.entities.length > 0")
        assert not page.locator("#error").is_visible()
        assert errors == []
    finally:
        close_viewer(page)


def test_webrtc_without_videoframe_draws_into_the_canvas(
    browser: Any, service: Service, session_id: str, model_url: dict[str, str]
) -> None:
    """A browser without WebCodecs' VideoFrame cannot read the decoded picture's corner: each picture is drawn into
    the canvas, its stamp read from the canvas's pixels and covered there."""
    errors: list[str] = []
    url = viewer_url(service, session_id, model=model_url["sphere"], transport="webrtc")
    page = open_viewer(browser, url, errors, init_script="delete window.VideoFrame;")
    try:
        missing = page.evaluate(TRANSPORT_SUPPORT_JS["webrtc"])
        if missing:
            pytest.skip(f"webrtc in headless Chromium here: {missing}")
        assert page.evaluate("() => typeof VideoFrame") == "undefined"
        wait_js(page, "window.openrrViewer?.connected && window.openrrViewer.entities.length > 0")
        wait_js(page, "window.openrrViewer.lastFrame?.webrtc && window.openrrViewer.lastFrame.commandId > 0")
        wait_js(page, "window.openrrViewer.idle() && window.openrrViewer.framesDisplayed > 0")
        assert not page.evaluate("() => document.getElementById('viewport').classList.contains('direct-video')")
        assert not page.locator("#stamp-cover").is_visible()
        pixels = canvas_pixels(page)
        h, w, _ = pixels.shape
        background = np.all(np.abs(pixels - BACKGROUND) <= VIDEO_TOLERANCE, axis=-1)
        assert not background[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].any(), "the sphere in the middle"
        assert background[:20, :300].mean() > 0.995, "the stamp is covered"
        assert errors == []
    finally:
        close_viewer(page)


def _check_inspector_link(page: Any, service: Service, session_id: str) -> None:
    """The viewer links to the session's inspector with a token in the URL's fragment (issue 9, finding 5: the
    inspector answers only tokens of the session's account), and that token really opens the inspector's data."""
    href = page.locator("#inspector-link").get_attribute("href")
    assert href is not None and page.locator("#inspector-link").is_visible()
    parts = urlsplit(href)
    assert not parts.query, "the token must not travel in the query string"
    token = parse_qs(parts.fragment)["access_token"][0]
    with service.api() as api:
        doc = api.get(f"/accounts/{service.account_id}/sessions/{session_id}", params={"api-version": "2021-01-01"})
    assert parts.port == doc.json()["arrInspectorPort"]
    status = httpx.get(
        f"https://{parts.hostname}:{parts.port}/api/status",
        headers={"Authorization": f"Bearer {token}"},
        verify=service.tls,
        timeout=10,
    )
    assert status.status_code == 200, status.text
