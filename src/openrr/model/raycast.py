"""Closest-hit ray casts against loaded models, placed by per-entity model → world matrices.

Each model's triangles are sorted along a Morton curve once, when the model is added, and cut into
fixed-size chunks with their own bounding boxes. A cast moves the ray into each entity's model space
(moving one ray is cheaper than moving a million triangles), drops entities whose box it misses, tests
the chunk boxes it enters nearest-first, and runs Möller–Trumbore only on the triangles of those chunks,
stopping once no remaining chunk can hold a nearer hit. The converter stores the same chunks in an .arrAsset
(`ModelData.collision`), so adding a converted model costs nothing.

Each triangle knows its node (the model part it belongs to). A model whose parts are all shown and unmoved is cast
exactly as above. Otherwise (`PartPoses`) the rest-pose chunks are cast with the hidden and moved parts' triangles
masked out, and each group of moved parts that share one delta is cast on its own, through that delta's inverse,
against a sub-chunking of just its triangles (built once per group and kept while the group stays the same).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from openrr.model.mesh import ModelData

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
    node: int = 0
    """Index of the part hit in its model's nodes (ModelData.tree())."""


@dataclass(frozen=True, eq=False)
class TriangleChunks:
    """One model's triangles in Morton order, cut into chunks of CHUNK with a bounding box each.

    Triangles are vertex indices into `positions`, not copied corners: a converted .arrAsset stores its index
    buffer in this order, so the renderer's mesh and the ray caster share one array (and one copy in memory).
    Chunk k holds triangles k*CHUNK up to (k+1)*CHUNK; the last one is short, and the missing places count as
    degenerate triangles, which no ray hits. A `count` of 0 means there is nothing to hit: a model without
    triangles, or an asset converted without a collision mesh.
    """

    count: int
    positions: F32
    """(V, 3) vertex positions."""
    corners: npt.NDArray[np.uint32]
    """(count, 3) indices into positions, chunk after chunk."""
    box_min: F32
    """(3, chunks): see _slab."""
    box_max: F32
    nodes: npt.NDArray[np.uint32] | None = None
    """(count,) node index of each triangle, in chunk order; None: every triangle belongs to node 0."""

    @classmethod
    def empty(cls) -> TriangleChunks:
        no_boxes = np.zeros((3, 0), dtype=np.float32)
        return cls(0, np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.uint32), no_boxes, no_boxes)

    def node_of(self, row: int) -> int:
        return 0 if self.nodes is None else int(self.nodes[row])

    def subset(self, rows: npt.NDArray[np.intp]) -> TriangleChunks:
        """The triangles at `rows` (in chunk order) as chunks of their own, sharing `positions`."""
        corners = np.take(self.corners, rows, axis=0)
        nodes = None if self.nodes is None else np.take(self.nodes, rows)
        return _chunked(self.positions, corners, nodes)

    @property
    def chunks(self) -> int:
        return -(-self.count // CHUNK)

    @functools.cached_property
    def bounds(self) -> tuple[F64, F64]:
        if self.count == 0:
            return np.zeros(3, dtype=np.float64), np.zeros(3, dtype=np.float64)
        return self.box_min.min(axis=1).astype(np.float64), self.box_max.max(axis=1).astype(np.float64)

    def corner_positions(self, chunks: npt.NDArray[np.intp]) -> F32:
        """(k, CHUNK, 3, 3) corners of the given chunks' triangles; past `count`, a degenerate triangle."""
        rows = chunks[:, None] * CHUNK + np.arange(CHUNK)
        past = rows >= self.count
        # np.take is ~3x faster than fancy indexing for gathering rows
        indices = np.take(self.corners, np.minimum(rows, self.count - 1), axis=0)
        if past.any():
            indices[past] = self.corners[self.count - 1, 0]
        gathered: F32 = np.take(self.positions, indices, axis=0)
        return gathered


def triangle_chunks(model: ModelData) -> TriangleChunks:
    """Sort `model`'s triangles (points are ignored) along a Morton curve and cut them into chunks."""
    meshes = [m for m in model.meshes if m.indices is not None and len(m.indices)]
    if not meshes:
        return TriangleChunks.empty()
    nodes: npt.NDArray[np.uint32] | None = None
    if any(m.node for m in meshes):
        nodes = np.concatenate([np.full(len(m.indices), m.node, dtype=np.uint32) for m in meshes])  # type: ignore[arg-type]
    if len(meshes) == 1:
        positions = np.asarray(meshes[0].positions, dtype=np.float32)  # the mesh's own array when it is float32
        corners = _morton_sorted(positions, np.asarray(meshes[0].indices, dtype=np.uint32))
    else:
        # one vertex space for all meshes: each is sorted on its own, then they follow one another
        positions = np.concatenate([np.asarray(m.positions, dtype=np.float32) for m in meshes])
        starts = np.cumsum([0] + [len(m.positions) for m in meshes[:-1]])
        corners = np.concatenate(
            [
                _morton_sorted(np.asarray(m.positions, dtype=np.float32), np.asarray(m.indices, dtype=np.uint32))
                + np.uint32(start)
                for m, start in zip(meshes, starts, strict=True)
            ]
        )
    return _chunked(positions, corners, nodes)


def _chunked(positions: F32, corners: npt.NDArray[np.uint32], nodes: npt.NDArray[np.uint32] | None) -> TriangleChunks:
    """`corners` (already in their final order) cut into chunks, with each chunk's bounding box."""
    count = len(corners)
    if count == 0:
        return TriangleChunks.empty()
    # pad to whole chunks with degenerate triangles (the last triangle's first corner, thrice) to take the boxes
    flat = corners.astype(np.intp)
    pad = -count % CHUNK
    if pad:
        flat = np.concatenate([flat, np.full((pad, 3), flat[-1, 0], dtype=np.intp)])
    a, b, c = (np.take(positions, flat[:, k], axis=0) for k in range(3))
    return TriangleChunks(
        count=count,
        positions=positions,
        corners=corners,
        box_min=np.ascontiguousarray(np.minimum(np.minimum(a, b), c).reshape(-1, CHUNK, 3).min(axis=1).T),
        box_max=np.ascontiguousarray(np.maximum(np.maximum(a, b), c).reshape(-1, CHUNK, 3).max(axis=1).T),
        nodes=nodes,
    )


def _morton_sorted(points: F32, indices: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """`indices` (M, 3) reordered along a Morton curve, so that each chunk's box is tight.

    Keyed by each triangle's first vertex: as good as its centroid for ordering, and a third of the work.
    """
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
    order = np.argsort(code[indices[:, 0]], kind="stable")
    return np.take(indices, order, axis=0)


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


@dataclass(frozen=True, eq=False)
class PartPoses:
    """One model's parts as they are now, for casts: which are hidden (effective, after hierarchical overrides)
    and how the moved ones are moved. A model without any is cast as it rests; give one only when something is."""

    hidden: npt.NDArray[np.bool_]
    """(K,) per node."""
    deltas: F64 | None = None
    """(K, 4, 4) per node, model space: world(now) @ inverse(world(rest)); None: no part moved."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def moved(self) -> npt.NDArray[np.bool_]:
        if self.deltas is None:
            return np.zeros(len(self.hidden), dtype=bool)
        still: npt.NDArray[np.bool_] = np.all(np.abs(self.deltas - np.identity(4)) <= 1e-12, axis=(1, 2))
        return ~still

    def excluded(self, triangles: TriangleChunks) -> npt.NDArray[np.bool_]:
        """(chunks * CHUNK,) triangles the rest-pose pass skips: hidden or moved parts' (padding: never)."""
        cached = self._cache.get("excluded")
        if cached is not None and cached[0] is triangles:
            return cached[1]  # type: ignore[no-any-return]
        skip = self.hidden | self.moved
        rows = np.zeros(triangles.chunks * CHUNK, dtype=bool)
        rows[: triangles.count] = skip[triangles.nodes] if triangles.nodes is not None else bool(skip[0])
        self._cache["excluded"] = (triangles, rows)
        return rows

    def moved_groups(self) -> list[tuple[tuple[int, ...], F64]]:
        """Shown moved parts grouped by their delta (a moved sub-assembly moves as one): (nodes, delta) each."""
        groups: dict[bytes, tuple[list[int], F64]] = {}
        assert self.deltas is not None or not self.moved.any()
        for node in np.flatnonzero(self.moved & ~self.hidden):
            delta = self.deltas[node]  # type: ignore[index]
            key = np.round(delta, 9).tobytes()  # children of a moved part get its delta up to rounding
            groups.setdefault(key, ([], delta))[0].append(int(node))
        return [(tuple(nodes), delta) for nodes, delta in groups.values()]


class RayCaster:
    def __init__(self) -> None:
        self._entities: dict[int, TriangleChunks] = {}
        # an instanced model is prepared once: id(model) → (model kept alive so the id stays its own, data, users)
        self._shared: dict[int, tuple[ModelData, TriangleChunks, set[int]]] = {}
        # moved parts' own chunks: (entity, their nodes) → (the model's chunks they were cut from, theirs)
        self._moved: dict[tuple[int, tuple[int, ...]], tuple[TriangleChunks, TriangleChunks]] = {}
        self._lock = threading.Lock()

    def add(self, entity_id: int, model: ModelData) -> None:
        """Prepare `model`'s triangles for casts (points are ignored); replaces what the entity had."""
        with self._lock:
            shared = self._shared.get(id(model))
        if shared is not None and shared[0] is model:
            triangles = shared[1]
        else:
            # an .arrAsset carries its chunks ready-made: no sorting at load time
            triangles = model.collision if model.collision is not None else triangle_chunks(model)
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
        self._moved = {k: v for k, v in self._moved.items() if k[0] != entity_id}
        for key, (_, _, users) in list(self._shared.items()):
            users.discard(entity_id)
            if not users:
                del self._shared[key]

    def _moved_chunks(self, entity_id: int, triangles: TriangleChunks, nodes: tuple[int, ...]) -> TriangleChunks:
        with self._lock:
            kept = self._moved.get((entity_id, nodes))
        if kept is not None and kept[0] is triangles:
            return kept[1]
        if triangles.nodes is None:
            rows = np.arange(triangles.count if 0 in nodes else 0, dtype=np.intp)
        else:
            rows = np.flatnonzero(np.isin(triangles.nodes, nodes))
        sub = triangles.subset(rows)
        with self._lock:
            if len(self._moved) >= 256:  # parts dragged about one after another: keep the recent ones
                self._moved.pop(next(iter(self._moved)))
            self._moved[(entity_id, nodes)] = (triangles, sub)
        return sub

    def cast(
        self,
        origin: Sequence[float] | npt.NDArray[np.floating[Any]],
        direction: Sequence[float] | npt.NDArray[np.floating[Any]],
        transforms: Mapping[int, npt.NDArray[np.floating]],
        hidden: Collection[int] = (),
        max_distance: float = float("inf"),
        parts: Mapping[int, PartPoses] | None = None,
    ) -> RayHit | None:
        """The nearest hit along the ray within max_distance; entities without a transform are skipped. `parts`:
        the entities some of whose parts are hidden or moved (the others are cast as they rest)."""
        world_origin = np.asarray(origin, dtype=np.float64).reshape(3)
        world_dir = np.asarray(direction, dtype=np.float64).reshape(3)
        length = float(np.linalg.norm(world_dir))
        if not length or not np.isfinite(length):
            raise ValueError(f"ray direction must be a finite non-zero vector, got {tuple(direction)}")
        world_dir = world_dir / length
        with self._lock:
            entities = list(self._entities.items())

        candidates: list[_Pass] = []
        for entity_id, triangles in entities:
            matrix = transforms.get(entity_id)
            if triangles.count == 0 or matrix is None or entity_id in hidden:
                continue
            try:
                inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64).reshape(4, 4)).astype(np.float64)
            except np.linalg.LinAlgError:
                continue  # a zero scale squashes the model flat: nothing to hit
            poses = parts.get(entity_id) if parts else None
            passes = [(triangles, inverse, None if poses is None else poses.excluded(triangles))]
            for nodes, delta in poses.moved_groups() if poses is not None else ():
                try:
                    through = np.linalg.inv(delta) @ inverse
                except np.linalg.LinAlgError:
                    continue
                passes.append((self._moved_chunks(entity_id, triangles, nodes), through, None))
            for chunks, to_model, excluded in passes:
                if chunks.count == 0:
                    continue
                # the model-space direction is not renormalised, so a model-space t is the world distance
                o = to_model[:3, :3] @ world_origin + to_model[:3, 3]
                d = to_model[:3, :3] @ world_dir
                near, far = (float(x[0]) for x in _slab(o, d, chunks.bounds[0][:, None], chunks.bounds[1][:, None]))
                if far >= max(near, 0.0) and near <= max_distance:
                    candidates.append(_Pass(near, entity_id, chunks, o, d, to_model, excluded))

        best: tuple[float, _Pass, F64, int] | None = None  # distance, pass, model-space normal, triangle row
        for cast in sorted(candidates, key=lambda c: c.entry):
            limit = best[0] if best is not None else max_distance
            if cast.entry > limit:
                break
            hit = _cast_model(cast.triangles, cast.o, cast.d, limit, cast.excluded)
            if hit is not None:
                best = (hit[0], cast, hit[1], hit[2])
        if best is None:
            return None

        distance, cast, model_normal, row = best
        normal = cast.inverse[:3, :3].T @ model_normal  # normals move with the inverse transpose
        normal /= np.linalg.norm(normal)
        if normal @ world_dir > 0:
            normal = -normal
        position = world_origin + distance * world_dir
        return RayHit(
            entity_id=cast.entity_id,
            position=(float(position[0]), float(position[1]), float(position[2])),
            normal=(float(normal[0]), float(normal[1]), float(normal[2])),
            distance=float(distance),
            node=cast.triangles.node_of(row),
        )


@dataclass(frozen=True)
class _Pass:
    """One cast against one set of chunks: a model at rest, or one group of its moved parts."""

    entry: float
    entity_id: int
    triangles: TriangleChunks
    o: F64
    d: F64
    inverse: F64
    """World → these chunks' coordinates."""
    excluded: npt.NDArray[np.bool_] | None


def _cast_model(
    triangles: TriangleChunks, o: F64, d: F64, limit: float, excluded: npt.NDArray[np.bool_] | None = None
) -> tuple[float, F64, int] | None:
    """Nearest (t, geometric normal, triangle row) in model space with t <= limit, or None. `excluded`: per padded
    triangle row, those that cannot be hit."""
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
        corners = triangles.corner_positions(chunks)
        a = corners[..., 0, :]
        t = _moller_trumbore(a, corners[..., 1, :] - a, corners[..., 2, :] - a, o, d)
        t[t > best_t] = np.inf
        if excluded is not None:
            t[np.take(excluded, chunks[:, None] * CHUNK + np.arange(CHUNK))] = np.inf
        flat = int(np.argmin(t))
        if np.isfinite(t.flat[flat]):
            row, column = divmod(flat, CHUNK)
            best_t = float(t.flat[flat])
            best_index = (int(chunks[row]), column)
    if best_index is None:
        return None
    chunk, column = best_index
    a, b, c = triangles.corner_positions(np.array([chunk], dtype=np.intp))[0, column]
    # edges in float32 first, exactly as the chunk test computed them
    v0, e1, e2 = a.astype(np.float64), (b - a).astype(np.float64), (c - a).astype(np.float64)
    normal = np.cross(e1, e2)
    denominator = float(normal @ d)
    t_exact = float(normal @ (v0 - o)) / denominator if denominator else best_t
    return t_exact, normal, chunk * CHUNK + column


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
