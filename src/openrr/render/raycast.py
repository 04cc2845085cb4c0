"""Closest-hit ray casts against loaded models, placed by per-entity model → world matrices.

Each model's triangles are sorted along a Morton curve once, when the model is added, and cut into
fixed-size chunks with their own bounding boxes. A cast moves the ray into each entity's model space
(moving one ray is cheaper than moving a million triangles), drops entities whose box it misses, tests
the chunk boxes it enters nearest-first, and runs Möller–Trumbore only on the triangles of those chunks,
stopping once no remaining chunk can hold a nearer hit.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from openrr.render.scene import ModelData

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

CHUNK = 64  # triangles per chunk: small enough that a ray tests few triangles, big enough for numpy to pay
BATCH = 32  # chunks tested per step of the nearest-first walk
BARY_EPS = 1e-9  # barycentric slack, so that rays through shared edges and vertices cannot slip between triangles


@dataclass(frozen=True)
class RayHit:
    entity_id: int
    position: tuple[float, float, float]
    """World space."""
    normal: tuple[float, float, float]
    """World space, unit, facing the ray origin (the triangle's geometric normal)."""
    distance: float
    """World units from the ray origin."""


class _Triangles:
    """One model's triangles in chunk order: (chunks, CHUNK, 3) corners and edges, and each chunk's box."""

    def __init__(self, model: ModelData) -> None:
        parts = [_sorted_corners(m.positions, m.indices) for m in model.meshes if m.indices is not None]
        corners = np.concatenate([p for p in parts if len(p)] or [np.zeros((0, 3, 3), dtype=np.float32)])
        self.count = len(corners)
        if self.count == 0:
            self.v0 = self.e1 = self.e2 = np.zeros((0, CHUNK, 3), dtype=np.float32)
            self.box_min = self.box_max = np.zeros((3, 0), dtype=np.float32)
            self.bounds = (np.zeros(3, dtype=np.float64), np.zeros(3, dtype=np.float64))
            return
        # pad to whole chunks with degenerate triangles, which no ray hits (their determinant is 0)
        pad = -self.count % CHUNK
        if pad:
            corners = np.concatenate([corners, np.repeat(corners[-1:, :1], 3, axis=1).repeat(pad, axis=0)])
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        self.v0 = a.reshape(-1, CHUNK, 3)
        self.e1 = (b - a).reshape(-1, CHUNK, 3)
        self.e2 = (c - a).reshape(-1, CHUNK, 3)
        # (3, chunks): see _slab
        self.box_min = np.ascontiguousarray(np.minimum(np.minimum(a, b), c).reshape(-1, CHUNK, 3).min(axis=1).T)
        self.box_max = np.ascontiguousarray(np.maximum(np.maximum(a, b), c).reshape(-1, CHUNK, 3).max(axis=1).T)
        self.bounds = (self.box_min.min(axis=1).astype(np.float64), self.box_max.max(axis=1).astype(np.float64))


def _sorted_corners(positions: F32, indices: npt.NDArray[np.uint32]) -> F32:
    """(M, 3, 3) triangle corners, ordered along a Morton curve so that each chunk's box is tight.

    Keyed by each triangle's first vertex: as good as its centroid for ordering, and a third of the work.
    """
    if not len(indices):
        return np.zeros((0, 3, 3), dtype=np.float32)
    points = np.asarray(positions, dtype=np.float32)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    cells = ((points - low) / span * 1023).astype(np.uint32)
    code = np.zeros(len(points), dtype=np.uint32)
    for axis in range(3):
        spread = cells[:, axis]
        spread = (spread | (spread << 16)) & 0x030000FF
        spread = (spread | (spread << 8)) & 0x0300F00F
        spread = (spread | (spread << 4)) & 0x030C30C3
        spread = (spread | (spread << 2)) & 0x09249249
        code |= spread << axis
    flat = indices.astype(np.intp)
    order = np.argsort(code[flat[:, 0]], kind="stable")
    # np.take is ~3x faster than fancy indexing for gathering rows
    return np.take(points, np.take(flat, order, axis=0), axis=0)


def _slab(origin: F64, direction: F64, low: F32 | F64, high: F32 | F64) -> tuple[F64, F64]:
    """Entry and exit ray parameters of boxes given as (3, K) corners; entry > exit where the ray misses.

    Axis by axis on 1-D arrays: reducing (K, 3) arrays over their short last axis is several times slower.
    """
    near = np.full(low.shape[1:], -np.inf)
    far = np.full(low.shape[1:], np.inf)
    for axis in range(3):
        o, d = float(origin[axis]), float(direction[axis])
        if d == 0.0:
            # parallel to this slab: inside it for every t, or never
            far = np.where((low[axis] <= o) & (o <= high[axis]), far, -np.inf)
            continue
        t1 = (low[axis] - o) / d
        t2 = (high[axis] - o) / d
        near = np.maximum(near, np.minimum(t1, t2))
        far = np.minimum(far, np.maximum(t1, t2))
    return near, far


class RayCaster:
    def __init__(self) -> None:
        self._entities: dict[int, _Triangles] = {}
        # an instanced model is prepared once: id(model) → (model kept alive so the id stays its own, data, users)
        self._shared: dict[int, tuple[ModelData, _Triangles, set[int]]] = {}
        self._lock = threading.Lock()

    def add(self, entity_id: int, model: ModelData) -> None:
        """Prepare `model`'s triangles for casts (points are ignored); replaces what the entity had."""
        with self._lock:
            shared = self._shared.get(id(model))
        triangles = shared[1] if shared is not None and shared[0] is model else _Triangles(model)
        with self._lock:
            self._remove(entity_id)
            entry = self._shared.setdefault(id(model), (model, triangles, set()))
            entry[2].add(entity_id)
            self._entities[entity_id] = entry[1]

    def remove(self, entity_id: int) -> None:
        with self._lock:
            self._remove(entity_id)

    def _remove(self, entity_id: int) -> None:
        if self._entities.pop(entity_id, None) is None:
            return
        for key, (_, _, users) in list(self._shared.items()):
            users.discard(entity_id)
            if not users:
                del self._shared[key]

    def cast(
        self,
        origin: Sequence[float] | npt.NDArray[np.floating[Any]],
        direction: Sequence[float] | npt.NDArray[np.floating[Any]],
        transforms: Mapping[int, npt.NDArray[np.floating]],
        hidden: Collection[int] = (),
        max_distance: float = float("inf"),
    ) -> RayHit | None:
        """The nearest hit along the ray within max_distance; entities without a transform are skipped."""
        world_origin = np.asarray(origin, dtype=np.float64).reshape(3)
        world_dir = np.asarray(direction, dtype=np.float64).reshape(3)
        length = float(np.linalg.norm(world_dir))
        if not length or not np.isfinite(length):
            raise ValueError(f"ray direction must be a finite non-zero vector, got {tuple(direction)}")
        world_dir = world_dir / length
        with self._lock:
            entities = list(self._entities.items())

        candidates: list[tuple[float, int, _Triangles, F64, F64, F64]] = []
        for entity_id, triangles in entities:
            matrix = transforms.get(entity_id)
            if triangles.count == 0 or matrix is None or entity_id in hidden:
                continue
            try:
                inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64).reshape(4, 4)).astype(np.float64)
            except np.linalg.LinAlgError:
                continue  # a zero scale squashes the model flat: nothing to hit
            # the model-space direction is not renormalised, so a model-space t is the world distance
            o = inverse[:3, :3] @ world_origin + inverse[:3, 3]
            d = inverse[:3, :3] @ world_dir
            near, far = (float(x[0]) for x in _slab(o, d, triangles.bounds[0][:, None], triangles.bounds[1][:, None]))
            if far >= max(near, 0.0) and near <= max_distance:
                candidates.append((near, entity_id, triangles, o, d, inverse))

        best: tuple[float, int, F64, F64] | None = None  # distance, entity, model-space normal, inverse
        for entry, entity_id, triangles, o, d, inverse in sorted(candidates, key=lambda c: c[0]):
            limit = best[0] if best is not None else max_distance
            if entry > limit:
                break
            hit = _cast_model(triangles, o, d, limit)
            if hit is not None:
                best = (hit[0], entity_id, hit[1], inverse)
        if best is None:
            return None

        distance, entity_id, model_normal, inverse = best
        normal = inverse[:3, :3].T @ model_normal  # normals move with the inverse transpose
        normal /= np.linalg.norm(normal)
        if normal @ world_dir > 0:
            normal = -normal
        position = world_origin + distance * world_dir
        return RayHit(
            entity_id=entity_id,
            position=(float(position[0]), float(position[1]), float(position[2])),
            normal=(float(normal[0]), float(normal[1]), float(normal[2])),
            distance=float(distance),
        )


def _cast_model(triangles: _Triangles, o: F64, d: F64, limit: float) -> tuple[float, F64] | None:
    """Nearest (t, geometric normal) in model space with t <= limit, or None."""
    near, far = _slab(o, d, triangles.box_min, triangles.box_max)
    entered = np.flatnonzero((far >= np.maximum(near, 0.0)) & (near <= limit))
    if not len(entered):
        return None
    entered = entered[np.argsort(near[entered], kind="stable")]
    best_t = limit
    best_index: tuple[int, int] | None = None
    for start in range(0, len(entered), BATCH):
        if near[entered[start]] > best_t:
            break  # every remaining chunk starts beyond the hit already found
        chunks = entered[start : start + BATCH]
        t = _moller_trumbore(triangles.v0[chunks], triangles.e1[chunks], triangles.e2[chunks], o, d)
        t[t > best_t] = np.inf
        flat = int(np.argmin(t))
        if np.isfinite(t.flat[flat]):
            row, column = divmod(flat, CHUNK)
            best_t = float(t.flat[flat])
            best_index = (int(chunks[row]), column)
    if best_index is None:
        return None
    chunk, column = best_index
    v0 = triangles.v0[chunk, column].astype(np.float64)
    e1 = triangles.e1[chunk, column].astype(np.float64)
    e2 = triangles.e2[chunk, column].astype(np.float64)
    normal = np.cross(e1, e2)
    denominator = float(normal @ d)
    t_exact = float(normal @ (v0 - o)) / denominator if denominator else best_t
    return t_exact, normal


def _moller_trumbore(v0: F32 | F64, e1: F32 | F64, e2: F32 | F64, o: F64, d: F64) -> F64:
    """Ray parameter t of each triangle hit (both faces count), +inf where it misses.

    Arithmetic is float64 (the triangles are few by now): in float32 a ray through a shared vertex or edge
    of a fine mesh finds u or v a hair below 0 in every triangle there and slips through; BARY_EPS closes
    what float64 still leaves open.
    """
    # explicit: numpy 1.x would keep float32 when a float64 scalar meets a float32 array
    v0, e1, e2 = v0.astype(np.float64), e1.astype(np.float64), e2.astype(np.float64)
    # p = d × e2, written per component: np.cross on (k, CHUNK, 3) arrays is several times slower
    px = d[1] * e2[..., 2] - d[2] * e2[..., 1]
    py = d[2] * e2[..., 0] - d[0] * e2[..., 2]
    pz = d[0] * e2[..., 1] - d[1] * e2[..., 0]
    det = e1[..., 0] * px + e1[..., 1] * py + e1[..., 2] * pz
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = o - v0
        u = (s[..., 0] * px + s[..., 1] * py + s[..., 2] * pz) * inv
        qx = s[..., 1] * e1[..., 2] - s[..., 2] * e1[..., 1]
        qy = s[..., 2] * e1[..., 0] - s[..., 0] * e1[..., 2]
        qz = s[..., 0] * e1[..., 1] - s[..., 1] * e1[..., 0]
        v = (d[0] * qx + d[1] * qy + d[2] * qz) * inv
        t = (e2[..., 0] * qx + e2[..., 1] * qy + e2[..., 2] * qz) * inv
        hit = (det != 0) & (u >= -BARY_EPS) & (v >= -BARY_EPS) & (u + v <= 1 + BARY_EPS) & (t > 0)
    return np.where(hit, t, np.inf)
