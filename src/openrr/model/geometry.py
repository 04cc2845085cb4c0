"""Geometry the importers share: vertex normals, unit rows, placing a primitive by its node's world matrix, and a
model's bounds.

Both readers (gltf_import.py for glTF/GLB, trimesh_import.py for OBJ/PLY/STL) store every primitive placed in the
model's rest pose; this is the one place that does the placing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse  # type: ignore[import-untyped]

from openrr.model.mesh import Float32Array, ImageData, Material, MeshData, ModelData, Node, UInt32Array

Float64Array = npt.NDArray[np.float64]


@dataclass
class LocalPrimitive:
    """A primitive's arrays in its node's own space, before placing: shared by every node that instances it."""

    positions: Float64Array
    normals: Float32Array
    colors: Float32Array
    indices: UInt32Array | None
    uvs: Float32Array | None = None
    uvs1: Float32Array | None = None
    tangents: Float32Array | None = None
    material: int = 0


def corner_sums(indices: UInt32Array, vertices: int, per_triangle: Float32Array) -> Float32Array:
    """(vertices, k): for each vertex, the sum of `per_triangle` (M, k) over the triangles it is a corner of.

    One sparse product (vertex × triangle incidence, scipy) rather than a bincount per column: 6x faster for the
    9 columns of tangent generation, 1.5x for the 3 of normals, on 1M triangles."""
    m = len(indices)
    incidence = scipy.sparse.csc_matrix(
        (np.ones(3 * m, np.float32), indices.reshape(-1).astype(np.intp), np.arange(0, 3 * m + 1, 3)),
        shape=(vertices, m),
    )
    return np.asarray(incidence @ per_triangle.astype(np.float32, copy=False), dtype=np.float32)


def vertex_normals(positions: Float32Array, indices: UInt32Array) -> Float32Array:
    """Area-weighted vertex normals (each triangle's cross product, whose length is twice its area)."""
    corners = indices.astype(np.intp)
    a, b, c = (np.take(positions, corners[:, k], axis=0) for k in range(3))  # np.take: faster than a[idx]
    face = np.cross(b - a, c - a)
    return unit(corner_sums(indices, len(positions), face))


def unit(vectors: Float32Array, fallback: tuple[float, float, float] | None = (0.0, 0.0, 1.0)) -> Float32Array:
    """Normalised rows; zero rows (unused vertices, degenerate faces) get `fallback`, or stay zero."""
    length = np.linalg.norm(vectors, axis=1)
    zero = length == 0
    out = vectors / np.where(zero, 1.0, length)[:, None].astype(np.float32)
    if fallback is not None and zero.any():
        out[zero] = fallback
    return out.astype(np.float32, copy=False)


def place(local: LocalPrimitive, matrix: Float64Array, node: int) -> MeshData:
    """The primitive placed by `matrix` (its node's rest world): positions by the matrix, normals by the inverse
    transpose of its linear part, tangents by the linear part; a mirroring matrix flips the triangles' winding back
    to counter-clockwise and the tangents' handedness w (the bitangent is transformed as a direction too)."""
    indices, normals, tangents = local.indices, local.normals, local.tangents
    if np.array_equal(matrix, np.eye(4)):
        positions = local.positions.astype(np.float32)
    else:
        linear = matrix[:3, :3]
        positions = (local.positions @ linear.T + matrix[:3, 3]).astype(np.float32)
        if np.any(normals):
            normal_matrix = np.linalg.inv(linear).T.astype(np.float32)
            normals = unit(normals @ normal_matrix.T, fallback=None if indices is None else (0.0, 0.0, 1.0))
        mirrored = np.linalg.det(linear) < 0
        if tangents is not None:
            xyz = unit(tangents[:, :3] @ linear.T.astype(np.float32), fallback=(1.0, 0.0, 0.0))
            w = -tangents[:, 3:] if mirrored else tangents[:, 3:]
            tangents = np.ascontiguousarray(np.hstack((xyz, w)), dtype=np.float32)
        if indices is not None and mirrored:
            # a mirroring transform turns counter-clockwise triangles clockwise: swap two corners back
            indices = np.ascontiguousarray(indices[:, [0, 2, 1]])
    return MeshData(
        positions, normals, local.colors, indices, local.uvs, local.uvs1, tangents, material=local.material, node=node
    )


def bounds(meshes: list[MeshData]) -> tuple[Float32Array, Float32Array]:
    """Rest-pose bounds of non-empty meshes (there must be one)."""
    lows = np.array([m.positions.min(axis=0) for m in meshes if len(m.positions)])
    highs = np.array([m.positions.max(axis=0) for m in meshes if len(m.positions)])
    return lows.min(axis=0).astype(np.float32), highs.max(axis=0).astype(np.float32)


def assemble_model(
    name: str, meshes: list[MeshData], materials: list[Material], images: list[ImageData], nodes: list[Node]
) -> ModelData:
    """A model of placed primitives, with its bounds and counts (zero bounds for one without geometry)."""
    low, high = bounds(meshes) if meshes else (np.zeros(3, np.float32), np.zeros(3, np.float32))
    return ModelData(
        name=name,
        meshes=meshes,
        bounds_min=low,
        bounds_max=high,
        triangles=sum(len(m.indices) for m in meshes if m.indices is not None),
        points=sum(len(m.positions) for m in meshes if m.indices is None),
        materials=materials,
        images=images,
        nodes=nodes,
    )
