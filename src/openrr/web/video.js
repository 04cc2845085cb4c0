// The viewer's two video transports besides JPEG (docs/render-protocol.md):
//
// - H264Stream: WebSocket + H.264 (Annex B frames in the ordinary binary messages), decoded by WebCodecs'
//   VideoDecoder; every decoded VideoFrame goes to `onFrame(videoFrame, header)`, which must close it.
// - WebRTCVideo: a receive-only RTCPeerConnection negotiated over the session's WebSocket (`webrtcOffer`); each
//   picture the <video> element presents goes to `onFrame(video, {commandId, width, height, coverRow})`, with the
//   command id read back from the stamp the server draws into the picture's top-left 256×16 pixels, and (where the
//   browser can read the decoded picture's corner) `coverRow`, the RGBA row just below the stamp, to hide it with.

export const H264_DEFAULT_CODEC = "avc1.42E01F"; // Constrained Baseline, level 3.1 (720p30)

export const STAMP_BITS = 32;
export const STAMP_BLOCK_W = 8;
export const STAMP_BLOCK_H = 16;
export const STAMP_WIDTH = STAMP_BITS * STAMP_BLOCK_W; // a picture narrower than this carries no stamp

const hex2 = (n) => n.toString(16).toUpperCase().padStart(2, "0");

/** NAL units of an Annex B byte stream, each without its start code. */
export function* nalUnits(bytes) {
  let start = -1;
  let i = 0;
  while (i + 2 < bytes.length) {
    if (bytes[i] === 0 && bytes[i + 1] === 0 && bytes[i + 2] === 1) {
      if (start >= 0) {
        let end = i;
        while (end > start && bytes[end - 1] === 0) end -= 1; // a 4-byte start code's leading zero
        yield bytes.subarray(start, end);
      }
      i += 3;
      start = i;
    } else {
      i += 1;
    }
  }
  if (start >= 0 && start < bytes.length) yield bytes.subarray(start);
}

/** "avc1.PPCCLL" from the first SPS of an Annex B access unit (profile, constraint flags, level), else null. */
export function h264CodecFromAnnexB(bytes) {
  for (const nal of nalUnits(bytes)) {
    if ((nal[0] & 0x1f) === 7 && nal.length >= 4) return `avc1.${hex2(nal[1])}${hex2(nal[2])}${hex2(nal[3])}`;
  }
  return null;
}

/** Whether this browser decodes H.264 with WebCodecs; resolves to {supported, reason}. */
export async function h264Support(codec = H264_DEFAULT_CODEC) {
  if (typeof VideoDecoder === "undefined") {
    const why = window.isSecureContext ? "this browser has no WebCodecs" : "WebCodecs needs a secure (HTTPS) page";
    return { supported: false, reason: `no VideoDecoder: ${why}` };
  }
  try {
    const { supported } = await VideoDecoder.isConfigSupported({ codec, optimizeForLatency: true });
    return supported
      ? { supported: true, reason: "" }
      : { supported: false, reason: `VideoDecoder.isConfigSupported({codec: "${codec}"}) is false in this browser` };
  } catch (err) {
    return { supported: false, reason: `VideoDecoder.isConfigSupported failed: ${err.message || err}` };
  }
}

/** WebSocket + H.264 through WebCodecs. Starts (and restarts after an error) at a keyframe. */
export class H264Stream {
  constructor({ onFrame, onError }) {
    this.onFrame = onFrame;
    this.onError = onError;
    this.decoder = null;
    this.codec = null; // the configured codec string
    this.headers = new Map(); // chunk timestamp -> frame header, until its picture comes out
    this.waitingForKeyframe = true;
    this.deltasDropped = 0;
    this.errors = 0;
    this.closed = false;
  }

  /** Frames handed to the decoder and not yet out of it. */
  get pending() {
    return this.headers.size;
  }

  feed(frame) {
    if (this.closed) return;
    if (this.decoder?.state === "closed") this.decoder = null; // after an error: start over at a keyframe
    if (!this.decoder || this.waitingForKeyframe) {
      if (!frame.keyframe) {
        this.deltasDropped += 1;
        return;
      }
      const codec = h264CodecFromAnnexB(frame.payload) || H264_DEFAULT_CODEC;
      if (!this.decoder || codec !== this.codec) this._configure(codec);
      this.waitingForKeyframe = false;
    }
    this.headers.set(frame.frame, frame);
    try {
      // The payload is a view into the message's buffer: EncodedVideoChunk copies it.
      this.decoder.decode(
        new EncodedVideoChunk({ type: frame.keyframe ? "key" : "delta", timestamp: frame.frame, data: frame.payload }),
      );
    } catch (err) {
      this.headers.delete(frame.frame);
      this._failed(err);
    }
  }

  _configure(codec) {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.headers.clear();
    const decoder = new VideoDecoder({
      output: (videoFrame) => {
        const header = this.headers.get(videoFrame.timestamp);
        for (const key of this.headers.keys()) if (key <= videoFrame.timestamp) this.headers.delete(key);
        if (this.closed || decoder !== this.decoder || !header) {
          videoFrame.close();
          return;
        }
        this.onFrame(videoFrame, header);
      },
      error: (err) => {
        if (decoder === this.decoder) this._failed(err);
      },
    });
    // Annex B: no `description`, SPS/PPS travel in the stream (repeated on every keyframe).
    decoder.configure({ codec, optimizeForLatency: true });
    this.decoder = decoder;
    this.codec = codec;
  }

  _failed(err) {
    this.errors += 1;
    this.headers.clear();
    this.waitingForKeyframe = true;
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    this.onError?.(err);
  }

  close() {
    this.closed = true;
    this.headers.clear();
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
  }
}

/**
 * The command id stamped into a picture, from `level(x, y)`: the brightness (0-255) of its pixel x, y.
 * 32 bits, most significant first, one 8×16 block each, white = 1; the middle of each block is thresholded.
 */
function decodeStamp(level) {
  let value = 0;
  for (let bit = 0; bit < STAMP_BITS; bit++) {
    let sum = 0;
    let n = 0;
    for (let y = 2; y < STAMP_BLOCK_H - 2; y++) {
      for (let x = bit * STAMP_BLOCK_W + 2; x < (bit + 1) * STAMP_BLOCK_W - 2; x++) {
        sum += level(x, y);
        n += 1;
      }
    }
    value = value * 2 + (sum / n > 127.5 ? 1 : 0);
  }
  return value;
}

/** The command id stamped into a picture: `ctx` holds (at least) its top-left STAMP_WIDTH × STAMP_BLOCK_H pixels. */
export function readStamp(ctx) {
  const { data } = ctx.getImageData(0, 0, STAMP_WIDTH, STAMP_BLOCK_H);
  return decodeStamp((x, y) => {
    const i = (y * STAMP_WIDTH + x) * 4;
    return (data[i] + data[i + 1] + data[i + 2]) / 3;
  });
}

export const STAMP_COVER_H = STAMP_BLOCK_H + 4; // H.264's deblocking blurs the stamp into the rows just under it
const LUMA_FIRST = new Set(["I420", "NV12"]); // VideoFrame formats read below: 8-bit luma plane, then 4:2:0 chroma

/** readStamp for a luma plane (`plane`: its offset and stride in `bytes`). White blocks are ~235, black ~16. */
function readStampLuma(bytes, plane) {
  return decodeStamp((x, y) => bytes[plane.offset + y * plane.stride + x]);
}

/** Row `y` of a copied I420 or NV12 rectangle as RGBA ImageData (BT.601, limited range, as x264 codes it). */
function rgbRow(bytes, layout, format, y) {
  const out = new ImageData(STAMP_WIDTH, 1);
  const luma = layout[0];
  for (let x = 0; x < STAMP_WIDTH; x++) {
    const c = x >> 1;
    const cy = y >> 1;
    let u;
    let v;
    if (format === "NV12") {
      const i = layout[1].offset + cy * layout[1].stride + 2 * c;
      u = bytes[i];
      v = bytes[i + 1];
    } else {
      u = bytes[layout[1].offset + cy * layout[1].stride + c];
      v = bytes[layout[2].offset + cy * layout[2].stride + c];
    }
    const l = 1.164 * (bytes[luma.offset + y * luma.stride + x] - 16);
    out.data[4 * x] = l + 1.596 * (v - 128);
    out.data[4 * x + 1] = l - 0.392 * (u - 128) - 0.813 * (v - 128);
    out.data[4 * x + 2] = l + 2.017 * (u - 128);
    out.data[4 * x + 3] = 255;
  }
  return out;
}

/** Put H.264 first in a transceiver's codec preferences (packetization-mode 1, constrained baseline first). */
function preferH264(transceiver) {
  if (typeof transceiver.setCodecPreferences !== "function" || !RTCRtpReceiver.getCapabilities) return false;
  const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs || [];
  const rank = (c) => {
    if (c.mimeType.toLowerCase() !== "video/h264") return 10;
    const fmtp = c.sdpFmtpLine || "";
    return (fmtp.includes("packetization-mode=1") ? 0 : 2) + (fmtp.includes("profile-level-id=42e0") ? 0 : 1);
  };
  const sorted = [...codecs].sort((a, b) => rank(a) - rank(b)); // stable: the rest keep the browser's order
  if (!sorted.length || rank(sorted[0]) >= 10) return false;
  transceiver.setCodecPreferences(sorted);
  return true;
}

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    // Host candidates only (no ICE servers): gathering takes milliseconds; send what there is after the timeout.
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/** WebRTC video from the render server, shown through `video` and handed, picture by picture, to `onFrame`. */
export class WebRTCVideo {
  constructor(video, { onFrame, onState }) {
    this.video = video;
    this.onFrame = onFrame;
    this.onState = onState;
    this.pc = null;
    this.receiver = null;
    this.codec = null; // negotiated: "H264" or "VP8"
    this.jitterBufferTarget = null; // what the receiver accepted, if it has the setting
    this.zeroPlayoutDelay = false; // whether the answer agreed to RTP's playout-delay extension (set to 0 by the server)
    this.closed = false;
    this.framesPresented = 0;
    this.receiveToPresentMs = []; // per picture: its last packet received -> presented (the last 120)
    this.stampCanvas = document.createElement("canvas");
    this.stampCanvas.width = STAMP_WIDTH;
    this.stampCanvas.height = STAMP_BLOCK_H;
    this.stampCtx = this.stampCanvas.getContext("2d", { willReadFrequently: true, alpha: false });
    this.frameCallback = 0;
  }

  /** Negotiate over `conn` (offer → `webrtcOffer` → answer); resolves once the answer is applied. */
  async start(conn, { gatherTimeoutMs = 3000 } = {}) {
    if (typeof RTCPeerConnection === "undefined") throw new Error("this browser has no WebRTC (RTCPeerConnection)");
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) {
      throw new Error("this browser has no requestVideoFrameCallback: WebRTC pictures cannot be timed");
    }
    const pc = new RTCPeerConnection({ iceServers: [] }); // host candidates only: nothing contacts a STUN server
    this.pc = pc;
    const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
    this.receiver = transceiver.receiver;
    this.h264Preferred = preferH264(transceiver);
    this._lowLatency();
    pc.addEventListener("connectionstatechange", () => this.onState?.(pc.connectionState));
    pc.addEventListener("track", (e) => {
      if (this.closed) return;
      this.video.srcObject = e.streams[0] || new MediaStream([e.track]);
      this.video.play().catch(() => {}); // muted: autoplay is allowed
    });
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, gatherTimeoutMs); // the server takes no trickled candidates
    if (this.closed) throw new Error("closed");
    const reply = await conn.command("webrtcOffer", { sdp: pc.localDescription.sdp, sdpType: "offer" });
    if (this.closed) throw new Error("closed");
    await pc.setRemoteDescription({ type: reply.sdpType, sdp: reply.sdp });
    this.codec = reply.codec || null;
    // The server answers playout-delay (min = max = 0) when offered: pictures are shown as soon as decoded.
    this.zeroPlayoutDelay = reply.sdp.includes("/rtp-hdrext/playout-delay");
    this._lowLatency(); // again: some browsers reset receiver settings on negotiation
    this.frameCallback = this.video.requestVideoFrameCallback((now, meta) => this._presented(now, meta));
    return reply;
  }

  /** Chromium's jitter buffer otherwise grows after keyframe bursts (render-stack-notes.md): target 0. */
  _lowLatency() {
    const r = this.receiver;
    if (!r) return;
    try {
      if ("jitterBufferTarget" in r) {
        r.jitterBufferTarget = 0;
        this.jitterBufferTarget = r.jitterBufferTarget;
      } else if ("playoutDelayHint" in r) {
        r.playoutDelayHint = 0;
        this.jitterBufferTarget = 0;
      }
    } catch {
      /* not settable here */
    }
  }

  async _presented(now, meta) {
    if (this.closed) return;
    this.frameCallback = this.video.requestVideoFrameCallback((n, m) => this._presented(n, m));
    const width = meta.width || this.video.videoWidth;
    const height = meta.height || this.video.videoHeight;
    let commandId = null;
    let coverRow = null;
    if (width >= STAMP_WIDTH && height >= STAMP_BLOCK_H) {
      const read = height >= STAMP_COVER_H + 2 ? await this._readCorner() : null;
      if (this.closed) return;
      if (read) {
        ({ commandId, coverRow } = read);
      } else {
        // The picture's own pixels (the video's intrinsic size), not the scaled element.
        this.stampCtx.drawImage(this.video, 0, 0, STAMP_WIDTH, STAMP_BLOCK_H, 0, 0, STAMP_WIDTH, STAMP_BLOCK_H);
        commandId = readStamp(this.stampCtx);
      }
    }
    this.framesPresented += 1;
    if (meta.receiveTime) {
      this.receiveToPresentMs.push(now - meta.receiveTime);
      if (this.receiveToPresentMs.length > 120) this.receiveToPresentMs.shift();
    }
    this.onFrame(this.video, { commandId, width, height, presentedAt: now, meta, coverRow });
  }

  /**
   * The stamp and the row just below what it blurs (to cover it with), read from the decoded picture's top-left
   * corner alone (VideoFrame.copyTo): drawing the <video> into a canvas would convert the whole picture to RGB
   * first, ~7 ms a picture in Chromium on 2 cores. Null where the browser cannot (the caller falls back to that).
   */
  async _readCorner() {
    if (typeof VideoFrame !== "function") return null;
    let frame = null;
    try {
      frame = new VideoFrame(this.video);
      if (!LUMA_FIRST.has(frame.format)) return null;
      const rect = { x: 0, y: 0, width: STAMP_WIDTH, height: STAMP_COVER_H + 2 };
      const buffer = new Uint8Array(frame.allocationSize({ rect }));
      const layout = await frame.copyTo(buffer, { rect });
      return { commandId: readStampLuma(buffer, layout[0]), coverRow: rgbRow(buffer, layout, frame.format, STAMP_COVER_H) };
    } catch {
      return null;
    } finally {
      frame?.close();
    }
  }

  /** The receiver's inbound-rtp figures: bytesReceived, framesDecoded, jitter buffer, decoder. */
  async stats() {
    if (!this.receiver) return null;
    const report = await this.receiver.getStats();
    let inbound = null;
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && (s.kind === "video" || s.mediaType === "video")) inbound = s;
      if (s.type === "codec") codecs.set(s.id, s.mimeType);
    });
    if (!inbound) return null;
    const emitted = inbound.jitterBufferEmittedCount || 0;
    const inBrowser = [...this.receiveToPresentMs].sort((a, b) => a - b);
    return {
      bytesReceived: inbound.bytesReceived || 0,
      headerBytesReceived: inbound.headerBytesReceived || 0,
      packetsReceived: inbound.packetsReceived || 0,
      packetsLost: inbound.packetsLost || 0,
      framesReceived: inbound.framesReceived || 0,
      framesDecoded: inbound.framesDecoded || 0,
      framesDropped: inbound.framesDropped || 0,
      keyFramesDecoded: inbound.keyFramesDecoded || 0,
      jitterBufferMs: emitted ? Math.round((inbound.jitterBufferDelay / emitted) * 10000) / 10 : null,
      decodeMs: inbound.framesDecoded ? Math.round((inbound.totalDecodeTime / inbound.framesDecoded) * 10000) / 10 : null,
      decoder: inbound.decoderImplementation || null,
      receiveToPresentMs: inBrowser.length ? Math.round(inBrowser[inBrowser.length >> 1] * 10) / 10 : null,
      codec: codecs.get(inbound.codecId) || null,
    };
  }

  close() {
    this.closed = true;
    if (this.frameCallback && this.video.cancelVideoFrameCallback) this.video.cancelVideoFrameCallback(this.frameCallback);
    this.frameCallback = 0;
    try {
      this.pc?.close();
    } catch {
      /* already closed */
    }
    this.pc = null;
    this.video.pause();
    this.video.srcObject = null;
  }
}
