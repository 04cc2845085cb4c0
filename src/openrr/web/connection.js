// The connection: an access token (from the account key, or given), the session looked up through the service's
// API until it is Ready, then a WebSocket to its render server; disconnect, cancel, and reconnect (to switch the
// video transport). Events: "open" (detail: {conn, transport, transportError}) and "close" (after the modules
// that show the session must let go of it).
//
// Phases: idle -> connecting -> connected -> closing -> idle. Connect is enabled only when idle; Disconnect while
// connected, and while connecting it reads "Cancel".

import { ApiError, accountFromToken, fetchToken, waitForReady } from "./api.js";
import { $ } from "./dom.js";
import { ProtocolError, RenderConnection } from "./protocol.js";
import { h264Support } from "./video.js";

export const TRANSPORTS = ["jpeg", "h264", "webrtc"];
const SETTINGS = ["account", "key", "token", "session", "role", "transport"]; // the form's fields, by element id

export class Connection extends EventTarget {
  status = "idle"; // idle | authenticating | waiting | connecting | connected | closed
  connected = false;
  role = null;
  sessionId = null;
  renderer = null;

  #showError;
  #clearError;
  #phase = "idle"; // idle | connecting | connected | closing
  #conn = null; // the RenderConnection while connected
  #attempt = 0; // bumped by every connect and cancel: an older attempt stops at its next step
  #reconnect = false; // connect again once the connection has closed

  constructor({ showError, clearError }) {
    super();
    this.#showError = showError;
    this.#clearError = clearError;
    $("connect-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.connect();
    });
    $("disconnect").addEventListener("click", () => this.disconnect());
    $("transport").addEventListener("change", () => {
      // The codec is chosen when connecting: switching reconnects (the session keeps its scene).
      if (this.#phase === "connected") this.#reconnectNow();
    });
    // Leave with a proper WebSocket close: the server then frees the controller seat at once.
    window.addEventListener("pagehide", () => this.#conn?.close());
    this.#setPhase("idle");
  }

  /** The RenderConnection while connected, else null. */
  get current() {
    return this.#conn;
  }

  /** Fill the form (the link's settings). */
  fill(settings) {
    for (const name of SETTINGS) if (settings[name] !== undefined) $(name).value = settings[name];
  }

  /** Connect with the form's settings; while connected, reconnect with them. */
  async connect() {
    if (this.#phase === "connected") return this.#reconnectNow();
    if (this.#phase !== "idle") return;
    const attempt = ++this.#attempt;
    const current = () => {
      if (attempt !== this.#attempt) throw new ApiError(0, "Cancelled", "cancelled");
    };
    this.#clearError();
    this.#setPhase("connecting");
    const form = Object.fromEntries(SETTINGS.map((name) => [name, $(name).value.trim()]));
    try {
      if (!form.session) throw new ApiError(0, "BadRequest", "enter a session id");
      let { token, account } = form;
      if (!token) {
        if (!account || !form.key) throw new ApiError(0, "BadRequest", "enter an account id and key, or a token");
        this.#setStatus("authenticating", "Getting an access token…");
        token = await fetchToken(account, form.key);
        current();
      } else if (!account) {
        account = accountFromToken(token) || "";
        $("account").value = account;
        if (!account) throw new ApiError(0, "BadRequest", "enter the account id (the token does not name it)");
      }
      this.#setStatus("waiting", `Looking up session ${form.session}…`);
      const doc = await waitForReady(account, form.session, token, {
        isCancelled: () => attempt !== this.#attempt,
        onStatus: (d) => {
          if (d.status === "Starting" && attempt === this.#attempt) {
            this.#setStatus("waiting", `Session ${form.session} is Starting… waiting for it.`);
          }
        },
      });
      current();
      const { transport, transportError } = await chooseTransport(form.transport);
      current();
      this.#showInspectorLink(doc, token);
      this.#setStatus("connecting", `Connecting to ${doc.hostname}:${doc.handshakePort} as ${form.role}…`);
      const codec = transport === "h264" ? "h264" : "jpeg"; // WebRTC: JPEG frames until the peer connection is up
      const conn = await RenderConnection.connect(doc.hostname, doc.handshakePort, token, form.role, { codec });
      if (attempt !== this.#attempt) {
        conn.close();
        return;
      }
      this.#open(conn, form.session, transport, transportError);
    } catch (err) {
      if (attempt !== this.#attempt) return; // cancelled: the cancel has set the page already
      const hint =
        err instanceof ProtocolError && err.code === "ControllerConnected" && !/watcher/.test(err.detail)
          ? "Connect as a watcher to see the session."
          : "";
      this.#showError(err, hint);
      this.#hideInspectorLink();
      $("session-box").open = true;
      this.#setStatus("closed", "Not connected.");
      this.#setPhase("idle");
    }
  }

  /** Close the connection, or cancel the one being made. */
  disconnect() {
    if (this.#phase === "connected") {
      this.#setPhase("closing");
      this.#conn.close();
    } else if (this.#phase === "connecting") {
      this.#attempt += 1;
      this.#hideInspectorLink();
      this.#setStatus("closed", "Not connected.");
      this.#setPhase("idle");
    }
  }

  #reconnectNow() {
    this.#reconnect = true;
    this.#setPhase("closing");
    this.#conn.close();
  }

  #open(conn, sessionId, transport, transportError) {
    this.#conn = conn;
    const w = conn.welcome;
    Object.assign(this, { connected: true, role: conn.role, sessionId: w.sessionId || sessionId, renderer: w.renderer });
    this.#setPhase("connected");
    const controller = conn.role === "controller";
    this.#setStatus(
      "connected",
      `Connected to session ${this.sessionId} as ${conn.role}` +
        (w.renderer ? ` · renderer ${w.renderer}` : "") +
        (controller ? "" : " · view only: the controller drives the camera"),
    );
    document.body.dataset.role = conn.role;
    $("session-summary").textContent = `${this.sessionId} · ${conn.role}`;
    $("session-box").open = false;
    conn.addEventListener("close", (e) => this.#onClose(conn, e.detail));
    this.dispatchEvent(new CustomEvent("open", { detail: { conn, transport, transportError } }));
  }

  #onClose(conn, { code, reason, error }) {
    if (conn !== this.#conn) return;
    this.#conn = null;
    this.connected = false;
    this.#setPhase("idle");
    this.#hideInspectorLink();
    $("session-summary").textContent = "connection settings";
    $("session-box").open = true;
    this.dispatchEvent(new CustomEvent("close"));
    if (this.#reconnect) {
      this.#reconnect = false;
      this.#setStatus("closed", "Switching the video transport…");
      this.connect();
    } else if (code === 1000 && !error) {
      this.#setStatus("closed", "Disconnected.");
    } else {
      this.#setStatus("closed", `Disconnected (close code ${code}).`);
      this.#showError(error || new ProtocolError("Disconnected", `the render server closed the connection (${code} ${reason})`));
    }
  }

  /** The buttons follow the phase: never Connect and Disconnect both enabled. */
  #setPhase(phase) {
    this.#phase = phase;
    $("connect").disabled = phase !== "idle";
    const disconnect = $("disconnect");
    disconnect.disabled = phase === "idle" || phase === "closing";
    disconnect.textContent = phase === "connecting" ? "Cancel" : "Disconnect";
    document.body.dataset.phase = phase;
  }

  #setStatus(status, text) {
    this.status = status;
    $("status").textContent = text;
    $("status").title = text;
    document.body.dataset.status = status;
  }

  /** The inspector needs a token of the session's account: it goes in the URL's fragment, which the browser sends to
   * no server and in no Referer; the inspector page reads it from there. */
  #showInspectorLink(doc, token) {
    if (!doc.arrInspectorPort) return;
    const link = $("inspector-link");
    const host = doc.hostname.includes(":") && !doc.hostname.startsWith("[") ? `[${doc.hostname}]` : doc.hostname;
    // Same scheme as this page: the service and its render servers share one TLS setting.
    link.href = `${location.protocol}//${host}:${doc.arrInspectorPort}/#access_token=${encodeURIComponent(token)}`;
    link.hidden = false;
  }

  #hideInspectorLink() {
    $("inspector-link").hidden = true;
    $("inspector-link").removeAttribute("href");
  }
}

/** The transport to ask for: the one chosen, or JPEG (and why) where this browser cannot decode it. */
async function chooseTransport(chosen) {
  const transport = TRANSPORTS.includes(chosen) ? chosen : "jpeg";
  if (transport !== "h264") return { transport, transportError: null };
  const support = await h264Support();
  if (support.supported) return { transport, transportError: null };
  return {
    transport: "jpeg",
    transportError: `H.264 over WebSocket is not available: ${support.reason}. Showing JPEG instead.`,
  };
}
