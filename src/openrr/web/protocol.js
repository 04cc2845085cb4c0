// The render session protocol (docs/render-protocol.md) over a browser WebSocket.
//
//   const conn = await RenderConnection.connect(hostname, handshakePort, token, "controller", { codec: "jpeg" });
//   conn.addEventListener("frame", (e) => { e.detail.commandId; e.detail.payload; });
//   const reply = await conn.command("loadModel", { url }, { onProgress: (p) => ... });
//
// Browsers can't set an Authorization header on a WebSocket, so the STS token goes in `access_token=`.

export const FRAME_MAGIC = "ORRF";
export const HEADER_SIZE = 16;
export const CODEC_JPEG = 1;
export const CODEC_H264 = 2;
export const CODEC_PNG = 3;
export const KEYFRAME = 0x100;

// Commands that change the scene (a watcher may not send them); each one is followed by a frame that shows it.
export const MUTATING = new Set([
  "loadModel", "unloadModel", "setTransform", "setOverride", "setCamera", "setCutPlanes", "setStream",
  "setEntityTransform", "setMaterial", "setEnvironment", "setOutput", "addLight", "setLight", "removeLight",
]);

// The application's WebSocket close codes.
export const CLOSE_CODES = {
  4400: "BadRequest",
  4401: "Unauthorized",
  4403: "Forbidden",
  4409: "ControllerConnected",
};

// A text message's JSON; undefined where it is none (such a message is ignored, before and after the welcome).
function messageJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Decode a binary video frame: a 16-byte little-endian header "ORRF", u32 frame, u32 commandId, u32 flags
 * (`flags & 0xFF` the codec, 1 = JPEG, 2 = H.264 Annex B; `flags & 0x100` a keyframe), then the payload.
 */
export function parseFrame(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < HEADER_SIZE) {
    throw new Error("a video frame shorter than its header");
  }
  const view = new DataView(buffer);
  const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
  if (magic !== FRAME_MAGIC) throw new Error(`not an openrr video frame (magic ${JSON.stringify(magic)})`);
  const flags = view.getUint32(12, true);
  return {
    frame: view.getUint32(4, true),
    commandId: view.getUint32(8, true),
    codec: flags & 0xff,
    keyframe: Boolean(flags & KEYFRAME),
    payload: new Uint8Array(buffer, HEADER_SIZE),
  };
}

/** A command (or a connection) the render server refused; `code` is its error code, e.g. ModelLoadFailed. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "ProtocolError";
    this.code = code;
    this.detail = message;
  }
}

export function streamUrl(hostname, port, token, role, codec = "jpeg") {
  const host = hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
  const query = new URLSearchParams({ role });
  if (codec && codec !== "jpeg") query.set("codec", codec);
  if (token) query.set("access_token", token);
  return `wss://${host}:${port}/stream?${query}`;
}

/**
 * One connection to a render server. Events: "frame" (detail: parsed frame), "loadProgress" (detail: message),
 * "close" (detail: {code, reason, error}) once the connection ends after the welcome.
 */
export class RenderConnection extends EventTarget {
  constructor(ws, welcome) {
    super();
    this.ws = ws;
    this.welcome = welcome;
    this.role = welcome.role;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, onProgress}
    this.closed = false;
    this.lastRefusal = null;
    this.lastApplied = 0; // id of the newest scene-changing command the server acknowledged
    this.bytesReceived = 0; // binary (video) message bytes, header included, after any WebSocket decompression
    ws.onmessage = (event) => this._onMessage(event);
    ws.onclose = (event) => this._onClose(event);
  }

  /**
   * Open the WebSocket and wait for the welcome; rejects with a ProtocolError if the server refuses. `codec`:
   * the video codec of binary frames, "jpeg" (default) or "h264" (Annex B, for WebCodecs).
   */
  static connect(hostname, port, token, role = "controller", { timeoutMs = 15000, codec = "jpeg" } = {}) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(streamUrl(hostname, port, token, role, codec));
      } catch (err) {
        reject(new ProtocolError("BadRequest", String(err.message || err)));
        return;
      }
      ws.binaryType = "arraybuffer";
      let refusal = null;
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        ws.close();
        reject(new ProtocolError("Timeout", `no welcome from the render server within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      ws.onmessage = (event) => {
        if (settled || typeof event.data !== "string") return;
        const doc = messageJson(event.data);
        if (doc === undefined) return;
        if (doc.type === "welcome") {
          settled = true;
          clearTimeout(timer);
          resolve(new RenderConnection(ws, doc));
        } else if (doc.type === "error") {
          refusal = new ProtocolError(doc.code || "Refused", doc.message || "the render server refused");
        }
      };
      ws.onclose = (event) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (refusal) reject(refusal);
        else if (CLOSE_CODES[event.code]) reject(new ProtocolError(CLOSE_CODES[event.code], event.reason || "refused"));
        else
          reject(
            new ProtocolError(
              "ConnectionFailed",
              `could not connect to wss://${hostname}:${port} (close code ${event.code}). ` +
                "If the browser does not trust the service's certificate, see Help.",
            ),
          );
      };
    });
  }

  /** Send a command; returns {id, result} where result resolves with the reply or rejects with a ProtocolError. */
  send(type, fields = {}, { onProgress } = {}) {
    const id = this.nextId++;
    const result = new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new ProtocolError("Disconnected", "not connected to the render server"));
        return;
      }
      this.pending.set(id, { type, resolve, reject, onProgress });
      this.ws.send(JSON.stringify({ id, type, ...fields }));
    });
    return { id, result };
  }

  command(type, fields = {}, options = {}) {
    return this.send(type, fields, options).result;
  }

  /** Whether a scene-changing command is still waiting for its result. */
  get busy() {
    for (const entry of this.pending.values()) if (MUTATING.has(entry.type)) return true;
    return false;
  }

  /** The highest command id sent so far on this connection. */
  get lastSent() {
    return this.nextId - 1;
  }

  close() {
    if (!this.closed) this.ws.close(1000, "bye");
  }

  _onMessage(event) {
    if (event.data instanceof ArrayBuffer) {
      this.bytesReceived += event.data.byteLength;
      let frame;
      try {
        frame = parseFrame(event.data);
      } catch (err) {
        console.warn(err);
        return;
      }
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
      return;
    }
    const doc = messageJson(event.data);
    if (doc === undefined) return;
    if (doc.type === "result") {
      const entry = this.pending.get(doc.id);
      if (!entry) return;
      this.pending.delete(doc.id);
      if (doc.ok && MUTATING.has(entry.type)) this.lastApplied = Math.max(this.lastApplied, doc.id);
      if (doc.ok) entry.resolve(doc);
      else entry.reject(new ProtocolError(doc.error?.code || "Error", doc.error?.message || ""));
    } else if (doc.type === "loadProgress") {
      this.pending.get(doc.id)?.onProgress?.(Number(doc.progress));
      this.dispatchEvent(new CustomEvent("loadProgress", { detail: doc }));
    } else if (doc.type === "error") {
      this.lastRefusal = new ProtocolError(doc.code || "Error", doc.message || "");
    }
  }

  _onClose(event) {
    this.closed = true;
    for (const entry of this.pending.values()) {
      entry.reject(new ProtocolError("Disconnected", "the render server closed the connection"));
    }
    this.pending.clear();
    this.dispatchEvent(
      new CustomEvent("close", { detail: { code: event.code, reason: event.reason, error: this.lastRefusal } }),
    );
  }
}
