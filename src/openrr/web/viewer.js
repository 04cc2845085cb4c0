// The openrr browser viewer: finds a session through the service's API, connects to its render server, shows
// its video on a canvas and drives the scene (models, orbit camera, picking, cut planes).
//
// Video transports (the select "Video transport", or ?transport=): "jpeg" (WebSocket + JPEG, the default),
// "h264" (WebSocket + H.264 decoded by WebCodecs) and "webrtc" (an RTCPeerConnection signalled over the
// WebSocket; its pictures carry their command id in a stamp). Every transport ends up drawn on the same canvas and
// timed the same way: command sent -> first displayed picture that shows it.
//
// window.openrrViewer exposes the live state for tests and for the console.

import { ApiError, accountFromToken, fetchToken, waitForReady } from "./api.js";
import { OrbitCamera, add, scale, worldBounds } from "./camera.js";
import { CODEC_H264, CODEC_JPEG, ProtocolError, RenderConnection } from "./protocol.js";
import { H264Stream, STAMP_COVER_H, STAMP_WIDTH, WebRTCVideo, h264Support } from "./video.js";

const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d", { alpha: false });

const CLICK_SLOP_PX = 4;
const STREAM_RESIZE_DEBOUNCE_MS = 150;
const LATENCY_SAMPLES = 120;
const TURNTABLE_RAD_PER_S = 0.6;
const BACKDROP = "rgb(31 31 36)"; // the render server's clear colour (0.12, 0.12, 0.14)
const TRANSPORTS = ["jpeg", "h264", "webrtc"];
const TRANSPORT_NAMES = { jpeg: "WS+JPEG", h264: "WS+H.264", webrtc: "WebRTC" };
const WEBRTC_STATS_MS = 1000;

// --- state -------------------------------------------------------------------------------------------------

const state = {
  status: "idle", // idle | authenticating | waiting | connecting | connected | closed
  connected: false,
  role: null,
  sessionId: null,
  renderer: null,
  transport: null, // the video transport in use: "jpeg" | "h264" | "webrtc" (null when not connected)
  transportDetail: null, // e.g. the decoder configuration or the negotiated WebRTC codec
  transportError: null, // why the chosen transport could not be used (the viewer then falls back to JPEG)
  framesReceived: 0,
  framesDisplayed: 0,
  framesSkipped: 0,
  framesRepeated: 0, // WebRTC: pictures presented again with the same stamp (not counted in fps)
  bytesReceived: 0, // video bytes: WebSocket binary messages, or WebRTC's inbound-rtp bytesReceived
  webrtc: null, // the WebRTC receiver's statistics (refreshed every second)
  lastFrame: null, // {frame, commandId, width, height}
  fps: 0,
  lastLatencyMs: null,
  medianLatencyMs: null,
  latencySamples: [],
  latencyLog: null, // set to [] to keep every latency sample (benchmarks); latencySamples keeps the last 120
  lastHit: null,
  entities: [],
  camera: null,
  cutPlanes: [],
  streamSize: null,
  loadProgress: null,
  lastLoad: null,
  lastError: null,
  serverStats: null,
};

let conn = null;
let connecting = false;
let cancelWait = false;
let reconnectOnClose = false;
const camera = new OrbitCamera();
let lastPicture = null; // {source, width, height}: the last picture drawn (an ImageBitmap, VideoFrame or <video>)
let h264 = null; // H264Stream while the transport is "h264"
let rtc = null; // WebRTCVideo while the transport is "webrtc"
let rtcStatsTimer = 0;
const rtcVideo = $("rtc-video");
const viewport = $("viewport");
const stampCover = $("stamp-cover"); // over the <video> shown directly: hides the command stamp
stampCover.width = STAMP_WIDTH;
stampCover.height = STAMP_COVER_H;
const coverCtx = stampCover.getContext("2d");
let drawRect = null; // where the last frame lies on the canvas, in canvas pixels
const displayTimes = [];
const pendingCameraCommands = new Map(); // setCamera id -> performance.now() when sent
let statsTimer = 0;
let autoModel = null; // the link's ?model=, loaded on the first connection

// --- errors and status -------------------------------------------------------------------------------------

function describeError(err) {
  if (err instanceof ProtocolError || err instanceof ApiError) return { code: err.code, message: err.detail };
  return { code: err?.name || "Error", message: String(err?.message || err) };
}

function showError(err, hint = "") {
  const { code, message } = describeError(err);
  state.lastError = { code, message };
  $("error-text").textContent = `${code}: ${message}${hint ? ` ${hint}` : ""}`;
  $("error").hidden = false;
  $("error").dataset.code = code;
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
  delete $("error").dataset.code;
}

function setStatus(status, text) {
  state.status = status;
  $("status").textContent = text;
  $("status").title = text;
  document.body.dataset.status = status;
}

// --- connecting --------------------------------------------------------------------------------------------

async function connect() {
  if (connecting) return;
  disconnect();
  clearError();
  connecting = true;
  cancelWait = false;
  $("connect").disabled = true;
  $("disconnect").disabled = false;
  const form = {
    account: $("account").value.trim(),
    key: $("key").value.trim(),
    token: $("token").value.trim(),
    session: $("session").value.trim(),
    role: $("role").value,
    transport: $("transport").value,
  };
  try {
    if (!form.session) throw new ApiError(0, "BadRequest", "enter a session id");
    let token = form.token;
    let account = form.account;
    if (!token) {
      if (!account || !form.key) throw new ApiError(0, "BadRequest", "enter an account id and key, or a token");
      setStatus("authenticating", "Getting an access token…");
      token = await fetchToken(account, form.key);
    } else if (!account) {
      account = accountFromToken(token) || "";
      $("account").value = account;
      if (!account) throw new ApiError(0, "BadRequest", "enter the account id (the token does not name it)");
    }
    setStatus("waiting", `Looking up session ${form.session}…`);
    const doc = await waitForReady(account, form.session, token, {
      isCancelled: () => cancelWait,
      onStatus: (d) => {
        if (d.status === "Starting" && !cancelWait) setStatus("waiting", `Session ${form.session} is Starting… waiting for it.`);
      },
    });
    let transport = TRANSPORTS.includes(form.transport) ? form.transport : "jpeg";
    state.transportError = null;
    if (transport === "h264") {
      const support = await h264Support();
      if (!support.supported) {
        state.transportError = `H.264 over WebSocket is not available: ${support.reason}. Showing JPEG instead.`;
        transport = "jpeg";
      }
    }
    showInspectorLink(doc, token);
    setStatus("connecting", `Connecting to ${doc.hostname}:${doc.handshakePort} as ${form.role}…`);
    const codec = transport === "h264" ? "h264" : "jpeg"; // WebRTC: JPEG frames until the peer connection is up
    const c = await RenderConnection.connect(doc.hostname, doc.handshakePort, token, form.role, { codec });
    if (cancelWait) {
      c.close();
      return;
    }
    attach(c, form.session, transport);
  } catch (err) {
    if (!(err instanceof ApiError && err.code === "Cancelled")) {
      const hint =
        err instanceof ProtocolError && err.code === "ControllerConnected" && !/watcher/.test(err.detail)
          ? "Connect as a watcher to see the session."
          : "";
      showError(err, hint);
      $("session-box").open = true;
      setStatus("closed", "Not connected.");
    }
    $("disconnect").disabled = true;
  } finally {
    connecting = false;
    $("connect").disabled = false;
  }
}

/** The inspector needs a token of the session's account: it goes in the URL's fragment, which the browser sends to
 * no server and in no Referer; the inspector page reads it from there. */
function showInspectorLink(doc, token) {
  const link = $("inspector-link");
  if (!doc.arrInspectorPort) return;
  const host = doc.hostname.includes(":") && !doc.hostname.startsWith("[") ? `[${doc.hostname}]` : doc.hostname;
  // Same scheme as this page: the service and its render servers share one TLS setting.
  link.href = `${location.protocol}//${host}:${doc.arrInspectorPort}/#access_token=${encodeURIComponent(token)}`;
  link.hidden = false;
}

function attach(c, sessionId, transport = "jpeg") {
  conn = c;
  clearInterval(statsTimer);
  pendingCameraCommands.clear();
  const w = c.welcome;
  Object.assign(state, {
    connected: true,
    transport,
    transportDetail: null,
    framesRepeated: 0,
    bytesReceived: 0,
    webrtc: null,
    role: c.role,
    sessionId: w.sessionId || sessionId,
    renderer: w.renderer,
    entities: w.entities || [],
    cutPlanes: w.cutPlanes || [],
    framesReceived: 0,
    framesDisplayed: 0,
    framesSkipped: 0,
    lastHit: null,
    latencySamples: [],
    lastLatencyMs: null,
    medianLatencyMs: null,
    streamSize: null,
  });
  if (w.camera) camera.setLookAt(w.camera.position, w.camera.target, w.camera.fovY);
  state.camera = camera.toCommand();
  const controller = c.role === "controller";
  setStatus(
    "connected",
    `Connected to session ${state.sessionId} as ${c.role}` +
      (w.renderer ? ` · renderer ${w.renderer}` : "") +
      (controller ? "" : " · view only: the controller drives the camera"),
  );
  $("model-controls").disabled = !controller;
  $("view-controls").disabled = !controller;
  const hasCut = (axis) => state.cutPlanes.some((p) => p.normal.every((v, i) => v === (i === axis ? 1 : 0)));
  $("cut-x").checked = hasCut(0);
  $("cut-y").checked = hasCut(1);
  document.body.dataset.role = c.role;
  $("session-summary").textContent = `${state.sessionId} · ${c.role}`;
  $("session-box").open = false;
  renderEntities();

  c.addEventListener("frame", (e) => onFrame(e.detail));
  c.addEventListener("close", (e) => onClose(c, e.detail));
  if (state.transportError) showError(new ProtocolError("TransportUnavailable", state.transportError));
  if (transport === "h264") startH264();
  if (transport === "webrtc") startWebRTC(c);

  if (controller) {
    resizeCanvas(true);
    sendCamera();
    // A model named in the link is loaded once (unless the session already shows it, e.g. after a reconnect).
    const model = autoModel;
    autoModel = null;
    const existing = model && state.entities.find((e) => e.source === model.split("?")[0]);
    if (model && !existing) loadModel(model);
    else if (existing) frameAll();
  }
  statsTimer = setInterval(refreshServerStats, 2000);
}

function onClose(c, { code, reason, error }) {
  if (c !== conn) return;
  conn = null;
  clearInterval(statsTimer);
  stopVideo();
  state.connected = false;
  pendingCameraCommands.clear();
  $("model-controls").disabled = true;
  $("view-controls").disabled = true;
  $("disconnect").disabled = true;
  $("inspector-link").hidden = true;
  $("inspector-link").removeAttribute("href");
  $("auto-rotate").checked = false;
  $("session-summary").textContent = "connection settings";
  $("session-box").open = true;
  if (reconnectOnClose) {
    reconnectOnClose = false;
    setStatus("closed", "Switching the video transport…");
    connect();
  } else if (code === 1000 && !error) {
    setStatus("closed", "Disconnected.");
  } else {
    setStatus("closed", `Disconnected (close code ${code}).`);
    showError(error || new ProtocolError("Disconnected", `the render server closed the connection (${code} ${reason})`));
  }
}

function disconnect() {
  cancelWait = true;
  if (conn) {
    const c = conn;
    c.close();
  }
}

// --- frames ------------------------------------------------------------------------------------------------

let decoding = false;
let queued = null;

function onFrame(frame) {
  state.framesReceived += 1;
  if (conn) state.bytesReceived = conn.bytesReceived;
  if (frame.codec === CODEC_H264) {
    if (h264) h264.feed(frame);
    return;
  }
  if (decoding) {
    if (queued) state.framesSkipped += 1; // keep only the newest: latency over completeness
    queued = frame;
    return;
  }
  decode(frame);
}

async function decode(frame) {
  decoding = true;
  try {
    if (frame.codec !== CODEC_JPEG) return;
    const bitmap = await createImageBitmap(new Blob([frame.payload], { type: "image/jpeg" }));
    show(bitmap, bitmap.width, bitmap.height);
    displayed(frame, bitmap.width, bitmap.height);
  } catch (err) {
    console.warn("could not decode a frame", err);
  } finally {
    decoding = false;
    if (queued) {
      const next = queued;
      queued = null;
      decode(next);
    }
  }
}

/** Draw a picture and keep it (to redraw on resize); the previous one is released if it holds memory. */
function show(source, width, height) {
  drawPicture(source, width, height);
  if (lastPicture && lastPicture.source !== source) lastPicture.source.close?.();
  lastPicture = { source, width, height };
}

/** Draw a picture fitted into the canvas (letterboxed if its aspect differs, e.g. a watcher's window). */
function drawPicture(source, width, height) {
  const cw = canvas.width;
  const ch = canvas.height;
  const s = Math.min(cw / width, ch / height);
  const w = Math.round(width * s);
  const h = Math.round(height * s);
  const x = Math.floor((cw - w) / 2);
  const y = Math.floor((ch - h) / 2);
  if (w !== cw || h !== ch) {
    ctx.fillStyle = BACKDROP;
    ctx.fillRect(0, 0, cw, ch);
  }
  ctx.drawImage(source, x, y, w, h);
  if (source === rtcVideo && width >= STAMP_WIDTH && height > STAMP_COVER_H) {
    // Hide the command stamp: repeat a row below it (and below the blur that coding leaves under its edge).
    ctx.drawImage(source, 0, STAMP_COVER_H, STAMP_WIDTH, 1, x, y, STAMP_WIDTH * s, STAMP_COVER_H * s);
  }
  drawRect = { x, y, w, h, aspect: width / height };
}

// --- H.264 over the WebSocket (WebCodecs) and WebRTC ------------------------------------------------------

function startH264() {
  h264 = new H264Stream({
    onFrame: (videoFrame, header) => {
      if (!h264 || !conn) {
        videoFrame.close();
        return;
      }
      state.transportDetail = `${h264.codec}, WebCodecs`;
      show(videoFrame, videoFrame.displayWidth, videoFrame.displayHeight); // closed when the next one is drawn
      displayed(header, videoFrame.displayWidth, videoFrame.displayHeight);
    },
    onError: (err) => console.warn("H.264 decoder error, waiting for a keyframe", err),
  });
}

async function startWebRTC(c) {
  const receiver = new WebRTCVideo(rtcVideo, {
    onFrame: (video, { commandId, width, height, coverRow }) => {
      if (rtc !== receiver || !conn) return;
      const repeat = state.lastFrame && state.lastFrame.webrtc && commandId === state.lastFrame.commandId;
      if (coverRow) showVideo(width, height, coverRow);
      else show(video, width, height);
      if (repeat) {
        state.framesRepeated += 1; // the server's flush/keep-alive repeat of the same picture
        return;
      }
      state.framesReceived += 1;
      displayed({ frame: receiver.framesPresented, commandId, webrtc: true }, width, height);
    },
    onState: (s) => {
      if (rtc === receiver && (s === "failed" || s === "disconnected")) {
        console.warn(`WebRTC connection ${s}`);
      }
    },
  });
  rtc = receiver;
  try {
    await receiver.start(c);
    if (rtc !== receiver) return;
    state.transportDetail =
      `${receiver.codec || "?"}` +
      (receiver.jitterBufferTarget === 0 ? ", jitter buffer target 0" : "") +
      (receiver.zeroPlayoutDelay ? ", playout delay 0" : "");
    clearInterval(rtcStatsTimer);
    rtcStatsTimer = setInterval(refreshTransportStats, WEBRTC_STATS_MS);
  } catch (err) {
    if (rtc !== receiver || receiver.closed) return;
    receiver.close();
    rtc = null;
    state.transportError = `WebRTC failed (${err.message || err}); showing JPEG over the WebSocket instead.`;
    state.transport = "jpeg";
    showError(new ProtocolError("TransportUnavailable", state.transportError));
  }
}

/** Refresh bytesReceived (and WebRTC's receiver statistics); resolves to the figures. */
async function refreshTransportStats() {
  if (rtc?.receiver) {
    try {
      const stats = await rtc.stats();
      if (stats) {
        state.webrtc = stats;
        state.bytesReceived = (conn?.bytesReceived || 0) + stats.bytesReceived;
      }
    } catch {
      /* closed meanwhile */
    }
  } else if (conn) {
    state.bytesReceived = conn.bytesReceived;
  }
  return { bytesReceived: state.bytesReceived, webrtc: state.webrtc };
}

/**
 * WebRTC pictures the browser lets us read the corner of are not drawn into the canvas: the <video> is shown over
 * it (it lets pointer events through), so that no picture is converted to RGB on the page's thread (~7 ms each in
 * Chromium on 2 cores), and a small canvas over the stamp repeats the row below it, as drawPicture does.
 */
function showVideo(width, height, coverRow) {
  if (!viewport.classList.contains("direct-video")) {
    if (lastPicture && lastPicture.source !== rtcVideo) lastPicture.source.close?.();
    lastPicture = null;
    ctx.fillStyle = BACKDROP; // what shows beside a letterboxed picture
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    viewport.classList.add("direct-video");
  }
  // Where the <video> (object-fit: contain) puts the picture: in canvas pixels for picking, in CSS pixels for the
  // cover.
  const s = Math.min(canvas.width / width, canvas.height / height);
  const w = Math.round(width * s);
  const h = Math.round(height * s);
  drawRect = { x: Math.floor((canvas.width - w) / 2), y: Math.floor((canvas.height - h) / 2), w, h, aspect: width / height };
  const k = Math.min(rtcVideo.clientWidth / width, rtcVideo.clientHeight / height);
  stampCover.style.left = `${(rtcVideo.clientWidth - width * k) / 2}px`;
  stampCover.style.top = `${(rtcVideo.clientHeight - height * k) / 2}px`;
  stampCover.style.width = `${STAMP_WIDTH * k}px`;
  stampCover.style.height = `${STAMP_COVER_H * k}px`;
  for (let y = 0; y < STAMP_COVER_H; y++) coverCtx.putImageData(coverRow, 0, y);
  stampCover.hidden = false;
}

function stopVideo() {
  viewport.classList.remove("direct-video");
  stampCover.hidden = true;
  clearInterval(rtcStatsTimer);
  rtcStatsTimer = 0;
  h264?.close();
  h264 = null;
  rtc?.close();
  rtc = null;
  if (lastPicture && lastPicture.source !== rtcVideo) {
    // Keep what is on the canvas; an ImageBitmap or VideoFrame can be redrawn after a resize only while open.
    if (typeof VideoFrame !== "undefined" && lastPicture.source instanceof VideoFrame) {
      lastPicture.source.close();
      lastPicture = null;
    }
  } else {
    lastPicture = null;
  }
}

function displayed(frame, width, height) {
  const now = performance.now();
  state.framesDisplayed += 1;
  state.lastFrame = { frame: frame.frame, commandId: frame.commandId, width, height, webrtc: Boolean(frame.webrtc) };
  displayTimes.push(now);
  if (frame.commandId === null || frame.commandId === undefined) return; // a picture too small for a stamp
  // Latency: from sending setCamera n to displaying the first frame whose commandId >= n. A frame stamped with
  // an id this connection never sent was rendered before its first command (the previous controller's ids).
  let latest = null;
  const stamped = conn && frame.commandId <= conn.lastSent ? frame.commandId : 0;
  for (const [id, sentAt] of pendingCameraCommands) {
    if (id > stamped) continue;
    latest = now - sentAt;
    pendingCameraCommands.delete(id);
    state.latencySamples.push(latest);
    state.latencyLog?.push(latest);
  }
  if (latest !== null) {
    if (state.latencySamples.length > LATENCY_SAMPLES) state.latencySamples.splice(0, state.latencySamples.length - LATENCY_SAMPLES);
    const sorted = [...state.latencySamples].sort((a, b) => a - b);
    state.lastLatencyMs = Math.round(latest * 10) / 10;
    state.medianLatencyMs = Math.round(sorted[Math.floor(sorted.length / 2)] * 10) / 10;
  }
  $("frame-number").textContent = String(frame.frame);
  $("resolution").textContent = `${width}×${height}`;
}

function updateMeters() {
  const now = performance.now();
  while (displayTimes.length && displayTimes[0] < now - 1000) displayTimes.shift();
  state.fps = displayTimes.length;
  $("fps").textContent = `${state.fps} fps`;
  $("transport-label").textContent = state.transport
    ? TRANSPORT_NAMES[state.transport] + (state.transportDetail ? ` (${state.transportDetail})` : "")
    : "–";
  $("transport-label").dataset.value = state.transport || "";
  $("latency").textContent =
    state.lastLatencyMs === null ? "–" : `${Math.round(state.lastLatencyMs)} ms (median ${Math.round(state.medianLatencyMs)})`;
  $("fps").dataset.value = String(state.fps);
  $("latency").dataset.value = state.lastLatencyMs === null ? "" : String(state.lastLatencyMs);
}
setInterval(updateMeters, 250);

async function refreshServerStats() {
  if (!conn) return;
  try {
    const stats = (await conn.command("getStats")).stats;
    state.serverStats = stats;
    $("hud").title =
      `server: ${stats.fps} fps, render ${stats.renderTimeMs} ms, encode ${stats.encodeTimeMs} ms, ` +
      `command→frame sent p50 ${stats.latencyMs?.p50 ?? "–"} ms, ${stats.connectedClients} client(s)`;
  } catch {
    /* disconnected meanwhile */
  }
}

// --- stream size -------------------------------------------------------------------------------------------

let resizeTimer = 0;

function resizeCanvas(sendNow = false) {
  const ratio = Math.min(window.devicePixelRatio || 1, 2);
  let w = Math.round(canvas.clientWidth * ratio);
  let h = Math.round(canvas.clientHeight * ratio);
  const fit = Math.min(1, 3840 / w, 2160 / h);
  w = Math.max(16, Math.floor(w * fit));
  h = Math.max(16, Math.floor(h * fit));
  if (w !== canvas.width || h !== canvas.height) {
    canvas.width = w;
    canvas.height = h;
    ctx.fillStyle = BACKDROP;
    ctx.fillRect(0, 0, w, h);
    if (lastPicture) drawPicture(lastPicture.source, lastPicture.width, lastPicture.height);
  }
  clearTimeout(resizeTimer);
  resizeTimer = 0;
  if (sendNow) sendStream();
  else resizeTimer = setTimeout(sendStream, STREAM_RESIZE_DEBOUNCE_MS);
}

async function sendStream() {
  resizeTimer = 0;
  if (!conn || conn.role !== "controller") return;
  const size = { width: canvas.width, height: canvas.height };
  if (state.streamSize && state.streamSize.width === size.width && state.streamSize.height === size.height) return;
  state.streamSize = size;
  try {
    await conn.command("setStream", size);
  } catch (err) {
    showError(err);
  }
}

new ResizeObserver(() => resizeCanvas()).observe(canvas);

// --- camera ------------------------------------------------------------------------------------------------

let cameraDirty = false;
let cameraInFlight = false;
let rafId = 0;
let lastTick = 0;

function cameraChanged() {
  state.camera = camera.toCommand();
  cameraDirty = true;
  schedule();
}

function schedule() {
  if (!rafId) rafId = requestAnimationFrame(tick);
}

function tick(t) {
  rafId = 0;
  const dt = lastTick ? Math.min(0.1, (t - lastTick) / 1000) : 0;
  lastTick = t;
  const spinning = $("auto-rotate").checked && conn?.role === "controller";
  if (spinning) {
    camera.yaw += TURNTABLE_RAD_PER_S * dt;
    state.camera = camera.toCommand();
    cameraDirty = true;
  }
  if (cameraDirty && !cameraInFlight) sendCamera();
  if (spinning) schedule();
  else lastTick = 0;
}

/** At most one setCamera in flight: the newest camera goes out when the previous one is acknowledged. */
async function sendCamera() {
  if (!conn || conn.role !== "controller") return;
  cameraDirty = false;
  cameraInFlight = true;
  const fields = camera.toCommand();
  state.camera = fields;
  const { id, result } = conn.send("setCamera", fields);
  pendingCameraCommands.set(id, performance.now());
  try {
    await result;
  } catch (err) {
    pendingCameraCommands.delete(id);
    if (err.code !== "Disconnected") showError(err);
  } finally {
    cameraInFlight = false;
    if (cameraDirty) schedule();
  }
}

function frameAll() {
  const visible = state.entities.filter((e) => !e.hidden);
  const bounds = worldBounds(visible.length ? visible : state.entities);
  if (!bounds) return;
  camera.frame(bounds, canvas.width / canvas.height);
  cameraChanged();
}

// --- pointer input: orbit, pan, zoom, pick -----------------------------------------------------------------

const pointers = new Map(); // pointerId -> {x, y}
let gesture = null; // {startX, startY, button, moved, multi}

function controlsCamera() {
  return conn?.role === "controller";
}

canvas.addEventListener("contextmenu", (e) => e.preventDefault());

canvas.addEventListener("pointerdown", (e) => {
  try {
    canvas.setPointerCapture(e.pointerId); // keep the drag when the pointer leaves the canvas
  } catch {
    /* not an active pointer (a synthetic event) */
  }
  pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  if (pointers.size === 1) {
    gesture = { startX: e.clientX, startY: e.clientY, button: e.button, shift: e.shiftKey, moved: false, multi: false };
  } else if (gesture) {
    gesture.multi = true; // a pinch is never a click
  }
  canvas.classList.add("dragging");
});

canvas.addEventListener("pointermove", (e) => {
  const previous = pointers.get(e.pointerId);
  if (!previous || !gesture) return;
  const current = { x: e.clientX, y: e.clientY };
  const height = canvas.clientHeight;
  if (pointers.size === 1) {
    if (!gesture.moved && Math.hypot(current.x - gesture.startX, current.y - gesture.startY) < CLICK_SLOP_PX) return;
    gesture.moved = true;
    pointers.set(e.pointerId, current);
    if (!controlsCamera()) return;
    const dx = current.x - previous.x;
    const dy = current.y - previous.y;
    const pan = gesture.button === 2 || gesture.button === 1 || gesture.shift || e.shiftKey;
    if (pan) camera.pan(dx, dy, height);
    else camera.orbit(dx, dy, height);
    cameraChanged();
  } else if (pointers.size === 2) {
    const [otherId] = [...pointers.keys()].filter((id) => id !== e.pointerId);
    const other = pointers.get(otherId);
    pointers.set(e.pointerId, current);
    gesture.moved = true;
    if (!controlsCamera()) return;
    const before = Math.hypot(previous.x - other.x, previous.y - other.y);
    const after = Math.hypot(current.x - other.x, current.y - other.y);
    if (before > 1 && after > 1) camera.zoom(before / after);
    // The midpoint moves by half this pointer's motion.
    camera.pan((current.x - previous.x) / 2, (current.y - previous.y) / 2, height);
    cameraChanged();
  } else {
    pointers.set(e.pointerId, current);
  }
});

function endPointer(e) {
  if (!pointers.has(e.pointerId)) return;
  pointers.delete(e.pointerId);
  if (pointers.size > 0) return;
  canvas.classList.remove("dragging");
  const g = gesture;
  gesture = null;
  if (e.type === "pointerup" && g && !g.moved && !g.multi && g.button === 0) pick(e.clientX, e.clientY);
}

canvas.addEventListener("pointerup", endPointer);
canvas.addEventListener("pointercancel", endPointer);

canvas.addEventListener(
  "wheel",
  (e) => {
    e.preventDefault();
    if (!controlsCamera()) return;
    const pixels = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    camera.zoom(Math.exp(pixels * 0.0015));
    cameraChanged();
  },
  { passive: false },
);

async function pick(clientX, clientY) {
  if (!conn) return;
  const rect = canvas.getBoundingClientRect();
  const px = ((clientX - rect.left) * canvas.width) / rect.width;
  const py = ((clientY - rect.top) * canvas.height) / rect.height;
  const area = drawRect || { x: 0, y: 0, w: canvas.width, h: canvas.height, aspect: canvas.width / canvas.height };
  const u = (px - area.x) / area.w;
  const v = (py - area.y) / area.h;
  if (u < 0 || u > 1 || v < 0 || v > 1) return;
  const pixel = [Math.round(clientX - rect.left), Math.round(clientY - rect.top)];
  try {
    if (conn.role !== "controller") {
      // A watcher's camera is the controller's: ask where it is now.
      const scene = await conn.command("getScene");
      if (scene.camera) camera.setLookAt(scene.camera.position, scene.camera.target, scene.camera.fovY);
      state.camera = camera.toCommand();
    }
    const ray = camera.ray(u, v, area.aspect);
    const { hit } = await conn.command("rayCast", { origin: ray.origin, direction: ray.direction });
    if (!hit) {
      state.lastHit = { hit: false, pixel };
      $("hit").textContent = `Nothing at (${pixel.join(", ")}).`;
      $("hit").dataset.hit = "none";
      return;
    }
    const entity = state.entities.find((e) => e.entityId === hit.entityId);
    const name = entity?.name || `entity ${hit.entityId}`;
    state.lastHit = { hit: true, pixel, name, ...hit };
    const fmt = (p) => p.map((x) => x.toFixed(3)).join(", ");
    $("hit").textContent =
      `${name} (entity ${hit.entityId}) at (${fmt(hit.position)}), ${hit.distance.toFixed(3)} from the camera, ` +
      `normal (${fmt(hit.normal)}).`;
    $("hit").dataset.hit = String(hit.entityId);
    if (entity && conn.role === "controller") await setOverride(entity, { selected: !entity.selected });
  } catch (err) {
    showError(err);
  }
}

// --- scene -------------------------------------------------------------------------------------------------

async function loadModel(url) {
  if (!conn) return;
  const progress = $("load-progress");
  const result = $("load-result");
  progress.hidden = false;
  progress.value = 0;
  state.loadProgress = 0;
  result.className = "note";
  result.textContent = `Loading ${url.split("?")[0]}…`;
  $("load").disabled = true;
  const started = performance.now();
  try {
    const doc = await conn.command("loadModel", { url }, {
      onProgress: (p) => {
        progress.value = p;
        state.loadProgress = p;
      },
    });
    progress.value = 1;
    state.loadProgress = 1;
    const { type, id, ok, ...entity } = doc;
    state.entities = [...state.entities, entity];
    state.lastLoad = { ok: true, ...entity };
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const primitives = entity.points ? `${entity.points} points` : `${entity.triangles} triangles`;
    result.className = entity.warnings?.length ? "note bad" : "note ok";
    result.textContent =
      `Loaded ${entity.name}: ${primitives}, ${entity.meshes} mesh(es) in ${seconds} s.` +
      (entity.warnings?.length ? ` ${entity.warnings.join(" ")}` : "");
    renderEntities();
    frameAll();
    if (state.cutPlanes.length) applyCutPlanes();
  } catch (err) {
    const { code, message } = describeError(err);
    state.lastLoad = { ok: false, code, message };
    state.loadProgress = null;
    result.className = "note bad";
    result.textContent = `${code}: ${message}`;
    showError(err);
  } finally {
    progress.hidden = true;
    $("load").disabled = false;
  }
}

async function setOverride(entity, fields) {
  await conn.command("setOverride", { entityId: entity.entityId, ...fields });
  Object.assign(entity, fields);
  renderEntities();
}

async function unloadModel(entity) {
  try {
    await conn.command("unloadModel", { entityId: entity.entityId });
    state.entities = state.entities.filter((e) => e !== entity);
    renderEntities();
  } catch (err) {
    showError(err);
  }
}

function renderEntities() {
  const list = $("entities");
  list.replaceChildren();
  const controller = conn?.role === "controller";
  for (const entity of state.entities) {
    const li = document.createElement("li");
    li.dataset.entityId = String(entity.entityId);
    li.classList.toggle("selected", Boolean(entity.selected));
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${entity.name} · ${entity.points ? `${entity.points} pts` : `${entity.triangles} tris`}`;
    name.title = entity.source || entity.name;
    li.append(name);
    if (controller) {
      const hide = document.createElement("button");
      hide.type = "button";
      hide.className = "small";
      hide.textContent = entity.hidden ? "show" : "hide";
      hide.onclick = () => setOverride(entity, { hidden: !entity.hidden }).catch(showError);
      const unload = document.createElement("button");
      unload.type = "button";
      unload.className = "small";
      unload.textContent = "unload";
      unload.onclick = () => unloadModel(entity);
      li.append(hide, unload);
    }
    list.append(li);
  }
}

async function applyCutPlanes() {
  if (!conn) return;
  const bounds = worldBounds(state.entities);
  const centre = bounds ? scale(add(bounds.min, bounds.max), 0.5) : [0, 0, 0];
  const planes = [];
  if ($("cut-x").checked) planes.push({ normal: [1, 0, 0], point: centre });
  if ($("cut-y").checked) planes.push({ normal: [0, 1, 0], point: centre });
  try {
    await conn.command("setCutPlanes", { planes });
    state.cutPlanes = planes;
  } catch (err) {
    showError(err);
  }
}

// --- wiring ------------------------------------------------------------------------------------------------

$("connect-form").addEventListener("submit", (e) => {
  e.preventDefault();
  connect();
});
$("disconnect").addEventListener("click", () => {
  disconnect();
  if (!conn) {
    $("disconnect").disabled = true;
    setStatus("closed", "Not connected.");
  }
});
$("model-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = $("model-url").value.trim();
  if (url) loadModel(url);
});
$("cut-x").addEventListener("change", applyCutPlanes);
$("cut-y").addEventListener("change", applyCutPlanes);
$("auto-rotate").addEventListener("change", schedule);
$("transport").addEventListener("change", () => {
  // The codec is chosen when connecting: switching reconnects (the session keeps its scene).
  if (conn && !connecting) {
    reconnectOnClose = true;
    conn.close();
  }
});
$("frame-all").addEventListener("click", frameAll);
$("error-close").addEventListener("click", clearError);
// Leave with a proper WebSocket close: the server then frees the controller seat at once.
window.addEventListener("pagehide", () => conn?.close());

/**
 * Settings from the address: `?session=…&model=…&role=…&transport=…&autoconnect=0` in the query, the access
 * token in the fragment (`#token=JWT`), which the browser never sends to a server (nor in a Referer). An account
 * key is never read from the address (it would grant the account to whoever sees the link, the history or a
 * log): `?key=` is removed and refused, and so is `?token=`, which did reach the server.
 */
function fromAddress() {
  const params = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  for (const name of ["account", "session"]) {
    if (params.has(name)) $(name).value = params.get(name);
  }
  const token = fragment.get("token");
  if (token) $("token").value = token;
  if (params.has("role")) $("role").value = params.get("role") === "watcher" ? "watcher" : "controller";
  if (TRANSPORTS.includes(params.get("transport"))) $("transport").value = params.get("transport");
  if (params.has("model")) {
    $("model-url").value = params.get("model");
    autoModel = params.get("model");
  }
  const refused = ["key", "token"].filter((name) => params.has(name));
  // Keep secrets out of the address bar (and history) once read.
  if (refused.length || fragment.has("token")) {
    for (const name of refused) params.delete(name);
    fragment.delete("token");
    const query = params.toString();
    const hash = fragment.toString();
    history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${hash ? `#${hash}` : ""}`);
  }
  if (refused.length) {
    const what = refused.map((name) => `?${name}=`).join(" and ");
    showError(
      new ApiError(0, "Refused", `${what} in the address is not accepted`),
      "Put an access token after # (…/viewer/?session=ID#token=JWT), or type the account key into the form.",
    );
    return;
  }
  if (params.get("session") && token && params.get("autoconnect") !== "0") connect();
}

/** Nothing left to show: no camera change waiting, no scene command unanswered, and the newest frame drawn
 * shows every acknowledged scene change. (Tests wait on it instead of sleeping.) */
function idle() {
  if (!conn || resizeTimer || cameraDirty || cameraInFlight || decoding || queued || conn.busy || !state.lastFrame) return false;
  if (h264?.pending) return false;
  if (state.lastFrame.commandId === null) return true; // no stamp to tell (a WebRTC picture under 256 pixels wide)
  return state.lastFrame.commandId >= conn.lastApplied;
}

Object.assign(state, { connect, disconnect, loadModel, frameAll, idle, refreshTransportStats });
Object.defineProperty(state, "connection", { get: () => conn, enumerable: false });
window.openrrViewer = state;

resizeCanvas();
fromAddress();
