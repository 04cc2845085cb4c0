// The HUD's meters: pictures per second, command -> display latency, the video transport, the server's figures.
//
// The render server sends a picture only when the view changes, so a still picture is not "0 fps": the meter then
// reads "still".

import { $ } from "./dom.js";

const LATENCY_SAMPLES = 120;
const FPS_WINDOW_MS = 1000;
const HUD_MS = 250;
const SERVER_STATS_MS = 2000;
const TRANSPORT_NAMES = { jpeg: "WS+JPEG", h264: "WS+H.264", webrtc: "WebRTC" };
const STILL_TITLE = "No new pictures: the render server sends one only when the view changes.";

export class Meters {
  fps = 0; // pictures displayed in the last second
  lastLatencyMs = null;
  medianLatencyMs = null;
  latencySamples = []; // the last LATENCY_SAMPLES
  latencyLog = null; // set to [] to keep every latency sample (benchmarks)
  serverStats = null;

  #transport;
  #conn = null;
  #shown = false; // a picture of this connection is on screen
  #displayTimes = [];
  #pendingCommands = new Map(); // command id -> performance.now() when sent
  #statsTimer = 0;

  /** `transport()`: {transport, detail} of the video in use, for the HUD. */
  constructor({ transport }) {
    this.#transport = transport;
    setInterval(() => this.#refreshHud(), HUD_MS);
  }

  attach(conn) {
    this.#conn = conn;
    this.#shown = false;
    this.#pendingCommands.clear();
    Object.assign(this, { latencySamples: [], lastLatencyMs: null, medianLatencyMs: null });
    clearInterval(this.#statsTimer);
    this.#statsTimer = setInterval(() => this.#refreshServerStats(), SERVER_STATS_MS);
  }

  detach() {
    this.#conn = null;
    this.#pendingCommands.clear();
    clearInterval(this.#statsTimer);
    this.#statsTimer = 0;
  }

  /** A command whose picture is timed (setCamera) went out. */
  commandSent(id) {
    this.#pendingCommands.set(id, performance.now());
  }

  commandFailed(id) {
    this.#pendingCommands.delete(id);
  }

  /** A picture is on screen: `frame` carries its number and the id of the newest command it shows. */
  displayed(frame, width, height) {
    const now = performance.now();
    this.#shown = true;
    this.#displayTimes.push(now);
    $("frame-number").textContent = String(frame.frame);
    $("resolution").textContent = `${width}×${height}`;
    if (frame.commandId === null || frame.commandId === undefined) return; // a picture too small for a stamp
    // Latency: from sending setCamera n to displaying the first frame whose commandId >= n. A frame stamped with
    // an id this connection never sent was rendered before its first command (the previous controller's ids).
    const conn = this.#conn;
    const stamped = conn && frame.commandId <= conn.lastSent ? frame.commandId : 0;
    let latest = null;
    for (const [id, sentAt] of this.#pendingCommands) {
      if (id > stamped) continue;
      latest = now - sentAt;
      this.#pendingCommands.delete(id);
      this.latencySamples.push(latest);
      this.latencyLog?.push(latest);
    }
    if (latest === null) return;
    if (this.latencySamples.length > LATENCY_SAMPLES) this.latencySamples.splice(0, this.latencySamples.length - LATENCY_SAMPLES);
    const sorted = [...this.latencySamples].sort((a, b) => a - b);
    this.lastLatencyMs = Math.round(latest * 10) / 10;
    this.medianLatencyMs = Math.round(sorted[Math.floor(sorted.length / 2)] * 10) / 10;
  }

  #refreshHud() {
    const now = performance.now();
    const times = this.#displayTimes;
    while (times.length && times[0] < now - FPS_WINDOW_MS) times.shift();
    this.fps = times.length;
    const fps = $("fps");
    const still = this.fps === 0 && this.#shown && this.#conn !== null;
    fps.textContent = still ? "still" : this.#conn || this.fps ? `${this.fps} fps` : "– fps";
    fps.title = still ? STILL_TITLE : "";
    fps.dataset.value = String(this.fps);
    fps.dataset.still = String(still);
    const { transport, detail } = this.#transport();
    const label = $("transport-label");
    label.textContent = transport ? TRANSPORT_NAMES[transport] + (detail ? ` (${detail})` : "") : "–";
    label.dataset.value = transport || "";
    const latency = $("latency");
    latency.textContent =
      this.lastLatencyMs === null ? "–" : `${Math.round(this.lastLatencyMs)} ms (median ${Math.round(this.medianLatencyMs)})`;
    latency.dataset.value = this.lastLatencyMs === null ? "" : String(this.lastLatencyMs);
  }

  async #refreshServerStats() {
    const conn = this.#conn;
    if (!conn) return;
    try {
      const stats = (await conn.command("getStats")).stats;
      this.serverStats = stats;
      $("hud").title =
        `server: ${stats.fps} fps, render ${stats.renderTimeMs} ms, encode ${stats.encodeTimeMs} ms, ` +
        `command→frame sent p50 ${stats.latencyMs?.p50 ?? "–"} ms, ${stats.connectedClients} client(s)`;
    } catch {
      /* disconnected meanwhile */
    }
  }
}
