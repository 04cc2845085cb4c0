"""A model's primitives merged into one vertex/index array per (material, triangles or points): numpy only.

Every vertex carries its part's node index, so one draw covers every part that uses a material and per-part
state lives in the renderer's node texture, not in draw calls: a frame with nothing changed costs the same
whatever the number of parts. Each primitive stays a contiguous range, which BLEND materials draw back to front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from openrr.model.mesh import MeshData, ModelData

Float32Array = npt.NDArray[np.float32]


@dataclass
class PartRange:
    """One primitive inside a batch."""

    node: int
    first: int
    """First index (triangles) or vertex (points) of the range."""
    count: int
    center: npt.NDArray[np.float64]
    """Rest-pose model-space centre of its bounds: sorts BLEND ranges back to front."""


@dataclass
class BatchArrays:
    material: int
    points: bool
    attributes: dict[str, npt.NDArray[np.generic]]
    """positions, normals, colors (float16), node (uint32); uv0, uv1, tangents where some primitive has them;
    curvature where the batch is lit per vertex (see vertex_curvature)."""
    indices: npt.NDArray[np.uint32] | None
    ranges: list[PartRange] = field(default_factory=list)
    tangents_complete: bool = False
    """Every primitive came with tangents (else normal maps fall back to the shader's derivative frame)."""
    normal_step: float = math.inf
    """The angle (radians) the shading normal turns along an edge, 90th percentile over the edges; computed with the
    curvature, else infinite. How fine a specular lobe per-vertex light can follow."""

    @property
    def count(self) -> int:
        return len(self.attributes["positions"]) if self.indices is None else len(self.indices)


def _part(mesh: MeshData, n: int, name: str, width: int) -> npt.NDArray[np.float32]:
    values = getattr(mesh, name)
    if values is None:
        return np.zeros((n, width), dtype=np.float32)
    return np.asarray(values, dtype=np.float32).reshape(n, width)


def vertex_curvature(
    positions: npt.NDArray[np.float32], normals: npt.NDArray[np.float32], indices: npt.NDArray[np.uint32]
) -> tuple[npt.NDArray[np.float32], float]:
    """Per vertex, the mean over its edges of the angle between the two ends' normals per unit of edge length
    (radians per model unit): how fast the shading normal turns there. The per-vertex lighting path needs it for
    three.js's "geometry roughness", which the per-pixel path takes from the normal's screen-space derivatives.
    Also the 90th percentile of the angle along an edge (BatchArrays.normal_step)."""
    faces = indices.reshape(-1, 3).astype(np.int64)
    a, b = faces.reshape(-1), np.roll(faces, -1, axis=1).reshape(-1)
    n = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    angle = np.arccos(np.clip(np.einsum("ij,ij->i", n[a], n[b]), -1.0, 1.0))
    length = np.linalg.norm(positions[a] - positions[b], axis=1)
    rate = np.where(length > 1e-12, angle / np.maximum(length, 1e-12), 0.0)
    count = len(positions)
    total = np.bincount(a, rate, count) + np.bincount(b, rate, count)
    edges = np.bincount(a, minlength=count) + np.bincount(b, minlength=count)
    step = float(np.percentile(angle, 90.0)) if len(angle) else math.inf
    return (total / np.maximum(edges, 1)).astype(np.float32), step


def build_batches(model: ModelData, curvature_from: int | None = None) -> list[BatchArrays]:
    """Group the model's non-empty primitives by (material, points); ValueError on malformed arrays. Triangle
    batches of at least `curvature_from` triangles get the curvature attribute (None: none do)."""
    groups: dict[tuple[int, bool], list[MeshData]] = {}
    node_count = len(model.tree())
    for mesh in model.meshes:
        if not len(mesh.positions):
            continue
        if not 0 <= mesh.material < len(model.materials):
            raise ValueError(f"mesh material {mesh.material} out of range for {len(model.materials)} materials")
        if not 0 <= mesh.node < node_count:
            raise ValueError(f"mesh node {mesh.node} out of range for {node_count} nodes")
        groups.setdefault((mesh.material, mesh.indices is None), []).append(mesh)
    batches = [_batch(material, points, meshes) for (material, points), meshes in groups.items()]
    for batch in batches:
        if curvature_from is not None and batch.indices is not None and batch.count // 3 >= curvature_from:
            attributes = batch.attributes
            positions, normals = attributes["positions"], attributes["normals"]
            curvature, batch.normal_step = vertex_curvature(positions, normals, batch.indices)  # type: ignore[arg-type]
            attributes["curvature"] = curvature
    return batches


def _batch(material: int, points: bool, meshes: list[MeshData]) -> BatchArrays:
    columns: dict[str, list[npt.NDArray[np.generic]]] = {
        "positions": [],
        "normals": [],
        "colors": [],
        "node": [],
        "uv0": [],
        "uv1": [],
        "tangents": [],
    }
    indices: list[npt.NDArray[np.uint32]] = []
    ranges: list[PartRange] = []
    vertex_base = element_base = 0
    for mesh in meshes:
        positions = np.asarray(mesh.positions, dtype=np.float32)
        n = len(positions)
        if positions.shape != (n, 3):
            raise ValueError(f"positions must be (N, 3), got {positions.shape}")
        columns["positions"].append(positions)
        columns["normals"].append(_part(mesh, n, "normals", 3))
        columns["colors"].append(np.clip(_part(mesh, n, "colors", 4), 0.0, 1.0).astype(np.float16))
        columns["node"].append(np.full(n, mesh.node, dtype=np.uint32))
        columns["uv0"].append(_part(mesh, n, "uvs", 2))
        columns["uv1"].append(_part(mesh, n, "uvs1", 2))
        columns["tangents"].append(_part(mesh, n, "tangents", 4))
        count = n
        if mesh.indices is not None:
            tris = np.asarray(mesh.indices, dtype=np.uint32).reshape(-1)
            # An out-of-range index reads past the buffer: garbage at best, a crashed driver at worst.
            if len(tris) and int(tris.max()) >= n:
                raise ValueError(f"index {int(tris.max())} out of range for {n} vertices")
            indices.append(tris + np.uint32(vertex_base))
            count = len(tris)
        center = (positions.min(axis=0).astype(np.float64) + positions.max(axis=0)) / 2
        ranges.append(PartRange(mesh.node, element_base, count, center))
        vertex_base += n
        element_base += count
    keep = {"positions", "normals", "colors", "node"}
    keep |= {
        name
        for name, attr in (("uv0", "uvs"), ("uv1", "uvs1"), ("tangents", "tangents"))
        if any(getattr(m, attr) is not None for m in meshes)
    }
    attributes = {name: np.ascontiguousarray(np.concatenate(parts)) for name, parts in columns.items() if name in keep}
    return BatchArrays(
        material,
        points,
        attributes,
        None if points else np.ascontiguousarray(np.concatenate(indices)),
        ranges,
        all(m.tangents is not None for m in meshes),
    )
