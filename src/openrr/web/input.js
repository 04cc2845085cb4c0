// Camera input and picking: pointer drags orbit and pan, the wheel and a pinch zoom, the turntable spins, and a
// click casts a ray into the scene. Only the controller moves the camera; a watcher can still pick.

import { OrbitCamera, worldBounds } from "./camera.js";
import { $ } from "./dom.js";

const CLICK_SLOP_PX = 4;
const TURNTABLE_RAD_PER_S = 0.6;
// The wheel: one notch (about 100 pixels, 3 lines or 1 page, by the event's deltaMode) zooms by 10%; one event
// counts for at most 3 notches, so a fast spin or a trackpad's burst cannot throw the camera far away.
const WHEEL_FACTOR_PER_NOTCH = 1.1;
const WHEEL_NOTCH = { 0: 100, 1: 3, 2: 1 }; // DOM_DELTA_PIXEL, DOM_DELTA_LINE, DOM_DELTA_PAGE
const WHEEL_MAX_NOTCHES = 3;

/** The zoom factor of a wheel event (> 1 zooms out). */
export function wheelZoomFactor(deltaY, deltaMode) {
  const notches = deltaY / (WHEEL_NOTCH[deltaMode] ?? WHEEL_NOTCH[0]);
  return WHEEL_FACTOR_PER_NOTCH ** Math.max(-WHEEL_MAX_NOTCHES, Math.min(WHEEL_MAX_NOTCHES, notches));
}

export class CameraInput {
  camera = null; // the setCamera fields of the camera shown (the controller's, for a watcher)
  lastHit = null; // the last pick: {hit: false, pixel} or {hit: true, pixel, name, entityId, path, position, ...}

  #display;
  #meters;
  #showError;
  #scene; // {entities}: the models to frame
  #onPick; // (hit) => ...: a part was picked (the scene tree selects it)
  #conn = null;
  #orbit = new OrbitCamera();
  #dirty = false; // the camera changed since the last setCamera
  #inFlight = false; // a setCamera is waiting for its result
  #rafId = 0;
  #lastTick = 0;
  #pointers = new Map(); // pointerId -> {x, y}
  #gesture = null; // {startX, startY, button, shift, moved, multi}
  #turntable = $("auto-rotate");

  constructor({ display, meters, showError, scene, onPick }) {
    this.#display = display;
    this.#meters = meters;
    this.#showError = showError;
    this.#scene = scene;
    this.#onPick = onPick;
    const canvas = display.canvas;
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("pointerdown", (e) => this.#pointerDown(e));
    canvas.addEventListener("pointermove", (e) => this.#pointerMove(e));
    canvas.addEventListener("pointerup", (e) => this.#pointerEnd(e));
    canvas.addEventListener("pointercancel", (e) => this.#pointerEnd(e));
    canvas.addEventListener("wheel", (e) => this.#wheel(e), { passive: false });
    this.#turntable.addEventListener("change", () => this.#schedule());
    $("frame-all").addEventListener("click", () => this.frameAll());
  }

  /** A camera change waits to be sent or acknowledged. */
  get busy() {
    return this.#dirty || this.#inFlight;
  }

  /** Connected: adopt the session's camera (`welcome.camera`); a controller sends its camera at once. */
  attach(conn, camera) {
    this.#conn = conn;
    this.lastHit = null;
    if (camera) this.#orbit.setLookAt(camera.position, camera.target, camera.fovY);
    this.camera = this.#orbit.toCommand();
    if (this.#controls()) this.#sendCamera();
  }

  detach() {
    this.#conn = null;
    this.#turntable.checked = false;
  }

  /** Aim the camera at the visible models (all of them when none is visible). */
  frameAll() {
    const entities = this.#scene.entities;
    const visible = entities.filter((e) => !e.hidden);
    const bounds = worldBounds(visible.length ? visible : entities);
    if (!bounds) return;
    const { width, height } = this.#display.canvas;
    this.#orbit.frame(bounds, width / height);
    this.#changed();
  }

  #controls() {
    return this.#conn?.role === "controller";
  }

  // --- sending the camera ----------------------------------------------------------------------------------

  #changed() {
    this.camera = this.#orbit.toCommand();
    this.#dirty = true;
    this.#schedule();
  }

  #schedule() {
    if (!this.#rafId) this.#rafId = requestAnimationFrame((t) => this.#tick(t));
  }

  #tick(t) {
    this.#rafId = 0;
    const dt = this.#lastTick ? Math.min(0.1, (t - this.#lastTick) / 1000) : 0;
    this.#lastTick = t;
    const spinning = this.#turntable.checked && this.#controls();
    if (spinning) {
      this.#orbit.yaw += TURNTABLE_RAD_PER_S * dt;
      this.camera = this.#orbit.toCommand();
      this.#dirty = true;
    }
    if (this.#dirty && !this.#inFlight) this.#sendCamera();
    if (spinning) this.#schedule();
    else this.#lastTick = 0;
  }

  /** At most one setCamera in flight: the newest camera goes out when the previous one is acknowledged. */
  async #sendCamera() {
    const conn = this.#conn;
    if (!conn || conn.role !== "controller") return;
    this.#dirty = false;
    this.#inFlight = true;
    const fields = this.#orbit.toCommand();
    this.camera = fields;
    const { id, result } = conn.send("setCamera", fields);
    this.#meters.commandSent(id);
    try {
      await result;
    } catch (err) {
      this.#meters.commandFailed(id);
      if (err.code !== "Disconnected") this.#showError(err);
    } finally {
      this.#inFlight = false;
      if (this.#dirty) this.#schedule();
    }
  }

  // --- pointers: orbit, pan, pinch, click ------------------------------------------------------------------

  #pointerDown(e) {
    const canvas = this.#display.canvas;
    try {
      canvas.setPointerCapture(e.pointerId); // keep the drag when the pointer leaves the canvas
    } catch {
      /* not an active pointer (a synthetic event) */
    }
    this.#pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (this.#pointers.size === 1) {
      this.#gesture = { startX: e.clientX, startY: e.clientY, button: e.button, shift: e.shiftKey, moved: false, multi: false };
    } else if (this.#gesture) {
      this.#gesture.multi = true; // a pinch is never a click
    }
    canvas.classList.add("dragging");
  }

  #pointerMove(e) {
    const pointers = this.#pointers;
    const gesture = this.#gesture;
    const previous = pointers.get(e.pointerId);
    if (!previous || !gesture) return;
    const current = { x: e.clientX, y: e.clientY };
    const height = this.#display.canvas.clientHeight;
    const orbit = this.#orbit;
    if (pointers.size === 1) {
      if (!gesture.moved && Math.hypot(current.x - gesture.startX, current.y - gesture.startY) < CLICK_SLOP_PX) return;
      gesture.moved = true;
      pointers.set(e.pointerId, current);
      if (!this.#controls()) return;
      const dx = current.x - previous.x;
      const dy = current.y - previous.y;
      const pan = gesture.button === 2 || gesture.button === 1 || gesture.shift || e.shiftKey;
      if (pan) orbit.pan(dx, dy, height);
      else orbit.orbit(dx, dy, height);
      this.#changed();
    } else if (pointers.size === 2) {
      const [otherId] = [...pointers.keys()].filter((id) => id !== e.pointerId);
      const other = pointers.get(otherId);
      pointers.set(e.pointerId, current);
      gesture.moved = true;
      if (!this.#controls()) return;
      const before = Math.hypot(previous.x - other.x, previous.y - other.y);
      const after = Math.hypot(current.x - other.x, current.y - other.y);
      if (before > 1 && after > 1) orbit.zoom(before / after);
      // The midpoint moves by half this pointer's motion.
      orbit.pan((current.x - previous.x) / 2, (current.y - previous.y) / 2, height);
      this.#changed();
    } else {
      pointers.set(e.pointerId, current);
    }
  }

  #pointerEnd(e) {
    if (!this.#pointers.has(e.pointerId)) return;
    this.#pointers.delete(e.pointerId);
    if (this.#pointers.size > 0) return;
    this.#display.canvas.classList.remove("dragging");
    const g = this.#gesture;
    this.#gesture = null;
    if (e.type === "pointerup" && g && !g.moved && !g.multi && g.button === 0) this.#pick(e.clientX, e.clientY);
  }

  #wheel(e) {
    e.preventDefault();
    if (!this.#controls()) return;
    this.#orbit.zoom(wheelZoomFactor(e.deltaY, e.deltaMode));
    this.#changed();
  }

  // --- picking ---------------------------------------------------------------------------------------------

  async #pick(clientX, clientY) {
    const conn = this.#conn;
    const at = conn && this.#display.locate(clientX, clientY);
    if (!at) return;
    const { pixel } = at;
    try {
      if (conn.role !== "controller") {
        // A watcher's camera is the controller's: ask where it is now.
        const scene = await conn.command("getScene");
        if (scene.camera) this.#orbit.setLookAt(scene.camera.position, scene.camera.target, scene.camera.fovY);
        this.camera = this.#orbit.toCommand();
      }
      const ray = this.#orbit.ray(at.u, at.v, at.aspect);
      const { hit } = await conn.command("rayCast", { origin: ray.origin, direction: ray.direction });
      const note = $("hit");
      if (!hit) {
        this.lastHit = { hit: false, pixel };
        note.textContent = `Nothing at (${pixel.join(", ")}).`;
        note.dataset.hit = "none";
        return;
      }
      // The hit names the leaf part (entityId, name, path from the model's root); older servers name the model.
      const model = this.#scene.entities.find((e) => e.entityId === (hit.modelEntityId ?? hit.entityId));
      const name = hit.name || model?.name || `entity ${hit.entityId}`;
      this.lastHit = { hit: true, pixel, name, ...hit };
      const fmt = (p) => p.map((x) => x.toFixed(3)).join(", ");
      note.textContent =
        `${(hit.path || [name]).join(" › ")} (entity ${hit.entityId}) at (${fmt(hit.position)}), ` +
        `${hit.distance.toFixed(3)} from the camera, normal (${fmt(hit.normal)}).`;
      note.dataset.hit = String(hit.entityId);
      await this.#onPick(hit);
    } catch (err) {
      this.#showError(err);
    }
  }
}
