"""A model as GPU-ready numpy arrays: what a render session draws and ray-casts, and what the converter writes.

`ModelData` holds one `MeshData` per placed geometry; `ModelLoadError` is the one failure of turning a file into
one, its message saying precisely what went wrong (and never a URL's query string, which may hold a signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    # for the annotation only: the ray-cast module builds on ModelData
    from openrr.model.raycast import TriangleChunks

Float32Array = npt.NDArray[np.float32]
UInt32Array = npt.NDArray[np.uint32]
UInt8Array = npt.NDArray[np.uint8]


class ModelLoadError(Exception):
    """The message says precisely what went wrong (unreachable URL + status, corrupt file, unsupported format…)."""


@dataclass
class MeshData:
    positions: Float32Array
    """(N, 3) in the model's own coordinates, node transforms of the file's scene graph applied."""
    normals: Float32Array
    """(N, 3) unit length (computed when the file has none); zeros for point clouds without normals."""
    colors: Float32Array
    """(N, 4) in 0..1: vertex colour × material base colour (white when neither is given)."""
    indices: UInt32Array | None
    """(M, 3) triangle indices into positions; None for a point cloud."""
    uvs: Float32Array | None
    """(N, 2) texture coordinates in glTF's convention: (0, 0) is the top-left texel, row 0 of `texture`."""
    texture: UInt8Array | None
    """(H, W, 4) RGBA base-colour texture, first row at the top of the image."""
    double_sided: bool = True
    """False when back faces are culled: a glTF material without `doubleSided: true` (glTF's default, also for a mesh
    with no material), or an .arrAsset's opaqueMaterialDefaultSidedness. Formats with no such flag stay double-sided."""
    unlit: bool = False
    """True when the material is to be shown without lighting (an .arrAsset's unlitMaterials)."""


@dataclass
class ModelData:
    name: str
    """File name from the source."""
    meshes: list[MeshData]
    bounds_min: Float32Array
    """(3,)"""
    bounds_max: Float32Array
    """(3,)"""
    triangles: int
    points: int
    """Total points of point-cloud meshes."""
    collision: TriangleChunks | None = None
    """Ray-cast structure stored in an .arrAsset; None: a RayCaster builds it when the model is added."""

    @property
    def primitives(self) -> int:
        return self.triangles + self.points
