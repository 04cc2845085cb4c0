// An orbit camera around a target, in the render server's convention: right-handed, +Y up, looking from
// `position` to `target` with a vertical field of view `fovY` (degrees).

export const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
export const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
export const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
export const length = (a) => Math.hypot(a[0], a[1], a[2]);
export const normalize = (a) => {
  const n = length(a);
  return n > 1e-12 ? scale(a, 1 / n) : [0, 0, 0];
};

const MAX_PITCH = (89 * Math.PI) / 180;
const MIN_DISTANCE = 1e-3;
const MAX_DISTANCE = 500; // the server's far plane is 1000

export class OrbitCamera {
  constructor({ target = [0, 0, 0], distance = 5, yaw = 0, pitch = 0, fovY = 60 } = {}) {
    this.target = [...target];
    this.distance = distance;
    this.yaw = yaw; // around +Y, 0 = camera on +Z
    this.pitch = pitch; // up from the XZ plane
    this.fovY = fovY;
    this.up = [0, 1, 0];
  }

  /** Adopt a camera given as position/target (e.g. the server's, from the welcome message). */
  setLookAt(position, target, fovY = this.fovY) {
    const offset = sub(position, target);
    const d = length(offset);
    if (d < 1e-9) return;
    this.target = [...target];
    this.distance = d;
    this.pitch = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, Math.asin(offset[1] / d)));
    this.yaw = Math.atan2(offset[0], offset[2]);
    this.fovY = fovY;
  }

  get position() {
    const c = Math.cos(this.pitch);
    const offset = [c * Math.sin(this.yaw), Math.sin(this.pitch), c * Math.cos(this.yaw)];
    return add(this.target, scale(offset, this.distance));
  }

  /** Unit vectors of the view: forward (into the screen), right, and up on the screen. */
  basis() {
    const forward = normalize(sub(this.target, this.position));
    let right = cross(forward, this.up);
    if (length(right) < 1e-9) right = cross(forward, [1, 0, 0]);
    right = normalize(right);
    return { forward, right, up: cross(right, forward) };
  }

  /** Rotate by a drag of (dx, dy) pixels on a view `heightPx` tall: a full-height drag turns ~180°. */
  orbit(dx, dy, heightPx) {
    const k = Math.PI / Math.max(1, heightPx);
    this.yaw -= dx * k;
    this.pitch = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, this.pitch + dy * k));
  }

  /** Move the target so that the point under the cursor follows it (dx, dy in pixels). */
  pan(dx, dy, heightPx) {
    const worldPerPx = (2 * this.distance * Math.tan((this.fovY * Math.PI) / 360)) / Math.max(1, heightPx);
    const { right, up } = this.basis();
    this.target = add(this.target, add(scale(right, -dx * worldPerPx), scale(up, dy * worldPerPx)));
  }

  /** factor > 1 moves away, < 1 closer. */
  zoom(factor) {
    this.distance = Math.max(MIN_DISTANCE, Math.min(MAX_DISTANCE, this.distance * factor));
  }

  /** Aim at the centre of `bounds` ({min, max} in world space) from a distance that fits it in the view. */
  frame(bounds, aspect) {
    const centre = scale(add(bounds.min, bounds.max), 0.5);
    const radius = Math.max(1e-3, length(sub(bounds.max, bounds.min)) / 2);
    const halfY = (this.fovY * Math.PI) / 360;
    const halfX = Math.atan(Math.tan(halfY) * aspect);
    const half = Math.min(halfY, halfX);
    this.target = centre;
    this.distance = Math.max(MIN_DISTANCE, Math.min(MAX_DISTANCE, (radius / Math.sin(half)) * 1.05));
  }

  /**
   * The ray from the camera through a point of the view: u, v in [0, 1] from the top-left corner, `aspect` the
   * rendered picture's width / height.
   */
  ray(u, v, aspect) {
    const { forward, right, up } = this.basis();
    const tanY = Math.tan((this.fovY * Math.PI) / 360);
    const x = (2 * u - 1) * tanY * aspect;
    const y = (1 - 2 * v) * tanY;
    return { origin: this.position, direction: normalize(add(forward, add(scale(right, x), scale(up, y)))) };
  }

  /** The setCamera command's fields. */
  toCommand() {
    return { position: this.position, target: [...this.target], up: [...this.up], fovY: this.fovY };
  }
}

/** Apply a row-major 4×4 matrix (16 numbers, model→world) to a point. */
export function transformPoint(m, p) {
  if (!m || m.length !== 16) return [...p];
  const w = m[12] * p[0] + m[13] * p[1] + m[14] * p[2] + m[15] || 1;
  return [0, 1, 2].map((i) => (m[i * 4] * p[0] + m[i * 4 + 1] * p[1] + m[i * 4 + 2] * p[2] + m[i * 4 + 3]) / w);
}

/** World-space bounds of entities (their model bounds through their transforms); null if there are none. */
export function worldBounds(entities) {
  let min = null;
  let max = null;
  for (const e of entities) {
    if (!e.bounds) continue;
    const { min: a, max: b } = e.bounds;
    for (let i = 0; i < 8; i++) {
      const corner = [i & 1 ? b[0] : a[0], i & 2 ? b[1] : a[1], i & 4 ? b[2] : a[2]];
      const w = transformPoint(e.transform, corner);
      min = min ? min.map((x, k) => Math.min(x, w[k])) : w;
      max = max ? max.map((x, k) => Math.max(x, w[k])) : w;
    }
  }
  return min ? { min, max } : null;
}
