// The picture: video from the render server drawn on the canvas, whatever the transport, and the stream's size.
//
// Transports: "jpeg" (WebSocket + JPEG), "h264" (WebSocket + H.264 decoded by WebCodecs) and "webrtc" (a peer
// connection whose pictures carry their command id in a stamp, see video.js). Each picture shown goes to the meters.

import { $ } from "./dom.js";
import { CODEC_H264, CODEC_JPEG, ProtocolError } from "./protocol.js";
import { H264Stream, STAMP_COVER_H, STAMP_WIDTH, WebRTCVideo } from "./video.js";

const BACKDROP = "rgb(31 31 36)"; // the render server's clear colour (0.12, 0.12, 0.14)
const STREAM_RESIZE_DEBOUNCE_MS = 150;
const WEBRTC_STATS_MS = 1000;
const MAX_STREAM = { width: 3840, height: 2160 };

export class Display {
  transport = null; // the video transport in use: "jpeg" | "h264" | "webrtc" (null when not connected)
  transportDetail = null; // e.g. the decoder configuration or the negotiated WebRTC codec
  transportError = null; // why the chosen transport could not be used (the viewer then falls back to JPEG)
  framesReceived = 0;
  framesDisplayed = 0;
  framesSkipped = 0;
  framesRepeated = 0; // WebRTC: pictures presented again with the same stamp (not counted in fps)
  bytesReceived = 0; // video bytes: WebSocket binary messages, or WebRTC's inbound-rtp bytesReceived
  webrtc = null; // the WebRTC receiver's statistics (refreshed every second)
  lastFrame = null; // {frame, commandId, width, height, webrtc} of the newest picture shown
  streamSize = null; // the picture size asked of the server (setStream)

  #meters;
  #showError;
  #conn = null;
  #canvas = $("view");
  #ctx = this.#canvas.getContext("2d", { alpha: false });
  #viewport = $("viewport");
  #rtcVideo = $("rtc-video");
  #stampCover = $("stamp-cover"); // over the <video> shown directly: hides the command stamp
  #coverCtx = this.#stampCover.getContext("2d");
  #lastPicture = null; // {source, width, height}: the last picture drawn (an ImageBitmap, VideoFrame or <video>)
  #drawRect = null; // where the last picture lies on the canvas, in canvas pixels
  #decoding = false;
  #queued = null; // the newest JPEG frame waiting for the decoder
  #h264 = null; // H264Stream while the transport is "h264"
  #rtc = null; // WebRTCVideo while the transport is "webrtc"
  #rtcStatsTimer = 0;
  #resizeTimer = 0;

  constructor({ meters, showError }) {
    this.#meters = meters;
    this.#showError = showError;
    this.#stampCover.width = STAMP_WIDTH;
    this.#stampCover.height = STAMP_COVER_H;
    new ResizeObserver(() => this.resize()).observe(this.#canvas);
    this.resize();
  }

  get canvas() {
    return this.#canvas;
  }

  /** Frames still on their way to the screen, or a stream size not yet sent. */
  get busy() {
    return Boolean(this.#resizeTimer || this.#decoding || this.#queued || this.#h264?.pending);
  }

  attach(conn, transport, transportError) {
    this.#conn = conn;
    Object.assign(this, {
      transport,
      transportDetail: null,
      transportError,
      framesReceived: 0,
      framesDisplayed: 0,
      framesSkipped: 0,
      framesRepeated: 0,
      bytesReceived: 0,
      webrtc: null,
      lastFrame: null,
      streamSize: null,
    });
    conn.addEventListener("frame", (e) => {
      if (conn === this.#conn) this.#onFrame(e.detail);
    });
    if (transportError) this.#showError(new ProtocolError("TransportUnavailable", transportError));
    if (transport === "h264") this.#startH264();
    if (transport === "webrtc") this.#startWebRTC(conn);
    if (conn.role === "controller") this.resize(true);
  }

  /** The connection ended: stop the video, keep the last picture on the canvas where it can be kept. */
  detach() {
    this.#conn = null;
    this.#viewport.classList.remove("direct-video");
    this.#stampCover.hidden = true;
    clearInterval(this.#rtcStatsTimer);
    this.#rtcStatsTimer = 0;
    this.#h264?.close();
    this.#h264 = null;
    this.#rtc?.close();
    this.#rtc = null;
    const last = this.#lastPicture;
    // An ImageBitmap can be redrawn after a resize; a VideoFrame holds decoder memory, the <video> is emptied.
    if (!last || last.source === this.#rtcVideo || (typeof VideoFrame !== "undefined" && last.source instanceof VideoFrame)) {
      if (last && last.source !== this.#rtcVideo) last.source.close();
      this.#lastPicture = null;
    }
  }

  /** Where a point of the page (clientX, clientY) lies in the picture: {u, v} in [0, 1] from its top-left corner,
   * the picture's aspect, and the point in CSS pixels of the canvas; null outside the picture. */
  locate(clientX, clientY) {
    const canvas = this.#canvas;
    const rect = canvas.getBoundingClientRect();
    const px = ((clientX - rect.left) * canvas.width) / rect.width;
    const py = ((clientY - rect.top) * canvas.height) / rect.height;
    const area = this.#drawRect || { x: 0, y: 0, w: canvas.width, h: canvas.height, aspect: canvas.width / canvas.height };
    const u = (px - area.x) / area.w;
    const v = (py - area.y) / area.h;
    if (u < 0 || u > 1 || v < 0 || v > 1) return null;
    return { u, v, aspect: area.aspect, pixel: [Math.round(clientX - rect.left), Math.round(clientY - rect.top)] };
  }

  /** Refresh bytesReceived (and WebRTC's receiver statistics); resolves to the figures. */
  async refreshTransportStats() {
    const conn = this.#conn;
    if (this.#rtc?.receiver) {
      try {
        const stats = await this.#rtc.stats();
        if (stats) {
          this.webrtc = stats;
          this.bytesReceived = (conn?.bytesReceived || 0) + stats.bytesReceived;
        }
      } catch {
        /* closed meanwhile */
      }
    } else if (conn) {
      this.bytesReceived = conn.bytesReceived;
    }
    return { bytesReceived: this.bytesReceived, webrtc: this.webrtc };
  }

  /** Fit the canvas to its box (device pixels, at most 4K); a controller's stream follows, debounced. */
  resize(sendNow = false) {
    const canvas = this.#canvas;
    const ratio = Math.min(window.devicePixelRatio || 1, 2);
    let w = Math.round(canvas.clientWidth * ratio);
    let h = Math.round(canvas.clientHeight * ratio);
    const fit = Math.min(1, MAX_STREAM.width / w, MAX_STREAM.height / h);
    w = Math.max(16, Math.floor(w * fit));
    h = Math.max(16, Math.floor(h * fit));
    if (w !== canvas.width || h !== canvas.height) {
      canvas.width = w;
      canvas.height = h;
      this.#ctx.fillStyle = BACKDROP;
      this.#ctx.fillRect(0, 0, w, h);
      const last = this.#lastPicture;
      if (last) this.#draw(last.source, last.width, last.height);
    }
    clearTimeout(this.#resizeTimer);
    this.#resizeTimer = 0;
    if (sendNow) this.#sendStream();
    else this.#resizeTimer = setTimeout(() => this.#sendStream(), STREAM_RESIZE_DEBOUNCE_MS);
  }

  async #sendStream() {
    this.#resizeTimer = 0;
    const conn = this.#conn;
    if (!conn || conn.role !== "controller") return;
    const size = { width: this.#canvas.width, height: this.#canvas.height };
    if (this.streamSize && this.streamSize.width === size.width && this.streamSize.height === size.height) return;
    this.streamSize = size;
    try {
      await conn.command("setStream", size);
    } catch (err) {
      this.#showError(err);
    }
  }

  // --- frames over the WebSocket ---------------------------------------------------------------------------

  #onFrame(frame) {
    this.framesReceived += 1;
    this.bytesReceived = this.#conn.bytesReceived;
    if (frame.codec === CODEC_H264) {
      this.#h264?.feed(frame);
      return;
    }
    if (this.#decoding) {
      if (this.#queued) this.framesSkipped += 1; // keep only the newest: latency over completeness
      this.#queued = frame;
      return;
    }
    this.#decode(frame);
  }

  async #decode(frame) {
    this.#decoding = true;
    try {
      if (frame.codec !== CODEC_JPEG) return;
      const bitmap = await createImageBitmap(new Blob([frame.payload], { type: "image/jpeg" }));
      this.#show(bitmap, bitmap.width, bitmap.height);
      this.#displayed(frame, bitmap.width, bitmap.height);
    } catch (err) {
      console.warn("could not decode a frame", err);
    } finally {
      this.#decoding = false;
      const next = this.#queued;
      this.#queued = null;
      if (next) this.#decode(next);
    }
  }

  #displayed(frame, width, height) {
    this.framesDisplayed += 1;
    this.lastFrame = { frame: frame.frame, commandId: frame.commandId, width, height, webrtc: Boolean(frame.webrtc) };
    this.#meters.displayed(frame, width, height);
  }

  // --- drawing ---------------------------------------------------------------------------------------------

  /** Draw a picture and keep it (to redraw on resize); the previous one is released if it holds memory. */
  #show(source, width, height) {
    this.#draw(source, width, height);
    if (this.#lastPicture && this.#lastPicture.source !== source) this.#lastPicture.source.close?.();
    this.#lastPicture = { source, width, height };
  }

  /** Draw a picture fitted into the canvas (letterboxed if its aspect differs, e.g. a watcher's window). */
  #draw(source, width, height) {
    const ctx = this.#ctx;
    const { width: cw, height: ch } = this.#canvas;
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
    if (source === this.#rtcVideo && width >= STAMP_WIDTH && height > STAMP_COVER_H) {
      // Hide the command stamp: repeat a row below it (and below the blur that coding leaves under its edge).
      ctx.drawImage(source, 0, STAMP_COVER_H, STAMP_WIDTH, 1, x, y, STAMP_WIDTH * s, STAMP_COVER_H * s);
    }
    this.#drawRect = { x, y, w, h, aspect: width / height };
  }

  /**
   * WebRTC pictures the browser lets us read the corner of are not drawn into the canvas: the <video> is shown over
   * it (it lets pointer events through), so that no picture is converted to RGB on the page's thread (~7 ms each in
   * Chromium on 2 cores), and a small canvas over the stamp repeats the row below it, as #draw does.
   */
  #showVideo(width, height, coverRow) {
    const canvas = this.#canvas;
    const video = this.#rtcVideo;
    const cover = this.#stampCover;
    if (!this.#viewport.classList.contains("direct-video")) {
      if (this.#lastPicture && this.#lastPicture.source !== video) this.#lastPicture.source.close?.();
      this.#lastPicture = null;
      this.#ctx.fillStyle = BACKDROP; // what shows beside a letterboxed picture
      this.#ctx.fillRect(0, 0, canvas.width, canvas.height);
      this.#viewport.classList.add("direct-video");
    }
    // Where the <video> (object-fit: contain) puts the picture: in canvas pixels for picking, in CSS pixels for the
    // cover.
    const s = Math.min(canvas.width / width, canvas.height / height);
    const w = Math.round(width * s);
    const h = Math.round(height * s);
    this.#drawRect = { x: Math.floor((canvas.width - w) / 2), y: Math.floor((canvas.height - h) / 2), w, h, aspect: width / height };
    const k = Math.min(video.clientWidth / width, video.clientHeight / height);
    cover.style.left = `${(video.clientWidth - width * k) / 2}px`;
    cover.style.top = `${(video.clientHeight - height * k) / 2}px`;
    cover.style.width = `${STAMP_WIDTH * k}px`;
    cover.style.height = `${STAMP_COVER_H * k}px`;
    for (let y = 0; y < STAMP_COVER_H; y++) this.#coverCtx.putImageData(coverRow, 0, y);
    cover.hidden = false;
  }

  // --- H.264 over the WebSocket (WebCodecs) and WebRTC ------------------------------------------------------

  #startH264() {
    const stream = new H264Stream({
      onFrame: (videoFrame, header) => {
        if (this.#h264 !== stream || !this.#conn) {
          videoFrame.close();
          return;
        }
        this.transportDetail = `${stream.codec}, WebCodecs`;
        this.#show(videoFrame, videoFrame.displayWidth, videoFrame.displayHeight); // closed when the next one is drawn
        this.#displayed(header, videoFrame.displayWidth, videoFrame.displayHeight);
      },
      onError: (err) => console.warn("H.264 decoder error, waiting for a keyframe", err),
    });
    this.#h264 = stream;
  }

  async #startWebRTC(conn) {
    const receiver = new WebRTCVideo(this.#rtcVideo, {
      onFrame: (video, { commandId, width, height, coverRow }) => {
        if (this.#rtc !== receiver || !this.#conn) return;
        const repeat = this.lastFrame?.webrtc && commandId === this.lastFrame.commandId;
        if (coverRow) this.#showVideo(width, height, coverRow);
        else this.#show(video, width, height);
        if (repeat) {
          this.framesRepeated += 1; // the server's keep-alive repeat of the same picture
          return;
        }
        this.framesReceived += 1;
        this.#displayed({ frame: receiver.framesPresented, commandId, webrtc: true }, width, height);
      },
      onState: (s) => {
        if (this.#rtc === receiver && (s === "failed" || s === "disconnected")) console.warn(`WebRTC connection ${s}`);
      },
    });
    this.#rtc = receiver;
    try {
      await receiver.start(conn);
      if (this.#rtc !== receiver) return;
      this.transportDetail =
        `${receiver.codec || "?"}` +
        (receiver.jitterBufferTarget === 0 ? ", jitter buffer target 0" : "") +
        (receiver.zeroPlayoutDelay ? ", playout delay 0" : "");
      clearInterval(this.#rtcStatsTimer);
      this.#rtcStatsTimer = setInterval(() => this.refreshTransportStats(), WEBRTC_STATS_MS);
    } catch (err) {
      if (this.#rtc !== receiver || receiver.closed) return;
      receiver.close();
      this.#rtc = null;
      this.transportError = `WebRTC failed (${err.message || err}); showing JPEG over the WebSocket instead.`;
      this.transport = "jpeg";
      this.#showError(new ProtocolError("TransportUnavailable", this.transportError));
    }
  }
}
