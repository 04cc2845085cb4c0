"""Tangents for normal mapping where a glTF file has none.

This is the standard per-triangle method of Lengyel ("Computing Tangent Space Basis Vectors for an Arbitrary Mesh",
2001): each triangle's UV derivatives dP/du and dP/dv are accumulated on its vertices, the tangent is dP/du made
orthogonal to the vertex normal (Gram-Schmidt), and w says on which side the bitangent lies. It is not full
MikkTSpace, which glTF names: MikkTSpace additionally splits vertices whose tangent frames disagree and weights by
corner angle, which would change the vertex count after import and needs a C library (no maintained wheel on
PyPI). On smooth, consistently mapped surfaces both give the same frames; they differ only along UV seams and
mirrored islands that share vertices.

glTF's convention, which w follows: bitangent = cross(normal, tangent.xyz) * w points where the normal texture's
green channel points, which is the direction of decreasing v in glTF's UVs (v runs down the image).
"""

from __future__ import annotations

import numpy as np

from openrr.model.geometry import corner_sums, unit
from openrr.model.mesh import Float32Array, UInt32Array


def generate_tangents(
    positions: Float32Array, normals: Float32Array, uvs: Float32Array, indices: UInt32Array
) -> Float32Array:
    """(N, 4) unit tangents + handedness w = ±1 for a triangle mesh with unit normals and glTF-convention uvs."""
    corners = indices.astype(np.intp)
    p = [np.take(positions, corners[:, k], axis=0) for k in range(3)]
    t = [np.take(uvs, corners[:, k], axis=0) for k in range(3)]
    e1, e2 = p[1] - p[0], p[2] - p[0]
    d1, d2 = t[1] - t[0], t[2] - t[0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    # a triangle with a degenerate UV mapping says nothing about the tangent: it does not contribute
    inverse = np.divide(1.0, det, out=np.zeros_like(det), where=np.abs(det) > 1e-20)[:, None]
    du = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * inverse  # dP/du
    dv = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * inverse  # dP/dv (v down the image)
    sums = corner_sums(indices, len(positions), np.hstack((du, dv)))
    sdir, tdir = sums[:, :3], sums[:, 3:]
    orthogonal = sdir - normals * np.sum(normals * sdir, axis=1, keepdims=True)
    tangent = unit(orthogonal, fallback=None)
    missing = ~np.any(tangent, axis=1)
    if missing.any():
        # no usable UV derivative at this vertex: any unit vector orthogonal to the normal keeps the frame valid
        tangent[missing] = _any_orthogonal(normals[missing])
    # bitangent = cross(n, t) * w must point up the image, against dP/dv
    w = np.where(np.sum(np.cross(normals, tangent) * tdir, axis=1) > 0, -1.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(np.column_stack((tangent, w)), dtype=np.float32)


def _any_orthogonal(normals: Float32Array) -> Float32Array:
    axis = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]).astype(np.float32)
    return unit(np.cross(normals, axis).astype(np.float32), fallback=(1.0, 0.0, 0.0))
