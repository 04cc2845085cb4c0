"""A model as GPU-ready numpy arrays: what a render session draws and ray-casts, and what the converter writes.

A `ModelData` is a tree of `Node`s (the model's parts, ARR's entities), a list of glTF metallic-roughness
`Material`s, the `ImageData` their textures sample, and one `MeshData` per placed primitive. Each primitive belongs
to one node and uses one material. Positions are stored placed in the model's rest pose (every node transform of
the file applied), so bounds, ray casts and an unmoved model need no per-node matrix; a part moved at run time is
drawn with `world(now) @ inverse(world(rest))`.

`ModelLoadError` is the one failure of turning a file into a model, its message saying precisely what went wrong
(and never a URL's query string, which may hold a signature).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    # for the annotation only: the ray-cast module builds on ModelData
    from openrr.model.raycast import TriangleChunks

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]
UInt32Array = npt.NDArray[np.uint32]
UInt8Array = npt.NDArray[np.uint8]

# glTF sampler enums (the OpenGL values)
REPEAT, CLAMP_TO_EDGE, MIRRORED_REPEAT = 10497, 33071, 33648
NEAREST, LINEAR = 9728, 9729
NEAREST_MIPMAP_NEAREST, LINEAR_MIPMAP_NEAREST = 9984, 9985
NEAREST_MIPMAP_LINEAR, LINEAR_MIPMAP_LINEAR = 9986, 9987
WRAP_MODES = (REPEAT, CLAMP_TO_EDGE, MIRRORED_REPEAT)
MAG_FILTERS = (NEAREST, LINEAR)
MIN_FILTERS = (
    NEAREST,
    LINEAR,
    NEAREST_MIPMAP_NEAREST,
    LINEAR_MIPMAP_NEAREST,
    NEAREST_MIPMAP_LINEAR,
    LINEAR_MIPMAP_LINEAR,
)

SceneGraphMode = Literal["none", "static", "dynamic"]
SCENE_GRAPH_MODES: tuple[SceneGraphMode, ...] = ("none", "static", "dynamic")
AlphaMode = Literal["OPAQUE", "MASK", "BLEND"]
ALPHA_MODES: tuple[AlphaMode, ...] = ("OPAQUE", "MASK", "BLEND")


class ModelLoadError(Exception):
    """The message says precisely what went wrong (unreachable URL + status, corrupt file, unsupported format…)."""


@dataclass(frozen=True)
class Sampler:
    """glTF sampler: wrap modes and filters (None: the renderer's choice, linear with mipmaps)."""

    wrap_s: int = REPEAT
    wrap_t: int = REPEAT
    mag_filter: int | None = None
    min_filter: int | None = None


@dataclass(frozen=True)
class TextureRef:
    """One use of an image by a material: which image, which UV set, how it is sampled and transformed."""

    image: int
    """Index into ModelData.images."""
    tex_coord: int = 0
    """0: MeshData.uvs, 1: MeshData.uvs1."""
    sampler: Sampler = field(default_factory=Sampler)
    transform: tuple[float, ...] | None = None
    """KHR_texture_transform as a 3×3 row-major matrix (9 numbers) applied to (u, v, 1): translation · rotation ·
    scale, as the extension defines it; None is the identity. `tex_coord` already holds the extension's override."""


@dataclass
class ImageData:
    pixels: UInt8Array
    """(H, W, 4) RGBA as stored in the file, first row at the top. Colour space is a property of the use: base colour
    and emissive textures are sampled as sRGB, every other texture as linear data."""
    name: str = ""


@dataclass
class Material:
    """glTF 2.0 metallic-roughness, complete; colours are linear. Defaults are glTF's own."""

    name: str = ""
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    base_color_texture: TextureRef | None = None
    metallic: float = 1.0
    roughness: float = 1.0
    metallic_roughness_texture: TextureRef | None = None
    """B = metallic, G = roughness."""
    normal_texture: TextureRef | None = None
    normal_scale: float = 1.0
    occlusion_texture: TextureRef | None = None
    """R channel."""
    occlusion_strength: float = 1.0
    emissive: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emissive_texture: TextureRef | None = None
    emissive_strength: float = 1.0
    """KHR_materials_emissive_strength."""
    alpha_mode: AlphaMode = "OPAQUE"
    alpha_cutoff: float = 0.5
    double_sided: bool = False
    unlit: bool = False
    """KHR_materials_unlit (ARR's colour material): base colour only, no light."""

    def textures(self) -> list[TextureRef]:
        refs = (
            self.base_color_texture,
            self.metallic_roughness_texture,
            self.normal_texture,
            self.occlusion_texture,
            self.emissive_texture,
        )
        return [r for r in refs if r is not None]


def default_material() -> Material:
    """What formats without PBR materials (OBJ without .mtl, PLY, STL, point clouds) get: a white dielectric,
    double-sided since those formats say nothing about sidedness."""
    return Material(name="default", metallic=0.0, roughness=0.5, double_sided=True)


@dataclass
class Node:
    """One part of the model: an entity with a name, a parent and a local transform."""

    name: str
    parent: int
    """Index into ModelData.nodes of the parent; -1 for the root (node 0, and only it)."""
    local: Float64Array = field(default_factory=lambda: np.identity(4))
    """(4, 4) row-major parent→node transform of the rest pose: p_parent = local @ [p, 1]."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The source's properties for this node (glTF extras, FBX user properties under the conversion's
    metadataKeys): JSON values only."""


@dataclass
class MeshData:
    """One primitive: geometry of one node drawn with one material."""

    positions: Float32Array
    """(N, 3) in the model's rest-pose coordinates (the node's world transform within the model applied)."""
    normals: Float32Array
    """(N, 3) unit length (computed when the file has none); zeros for point clouds without normals."""
    colors: Float32Array
    """(N, 4) linear vertex colour COLOR_0 in 0..1 (white when the file has none). The material's base colour is
    not in it."""
    indices: UInt32Array | None
    """(M, 3) triangle indices into positions; None for a point cloud."""
    uvs: Float32Array | None = None
    """(N, 2) TEXCOORD_0 in glTF's convention: (0, 0) is the top-left texel, row 0 of an image."""
    uvs1: Float32Array | None = None
    """(N, 2) TEXCOORD_1, same convention."""
    tangents: Float32Array | None = None
    """(N, 4) xyz unit tangent (rest pose) + w = ±1 bitangent sign, as glTF's TANGENT; the file's own, or generated
    where the material has a normal texture and the file has none."""
    material: int = 0
    """Index into ModelData.materials."""
    node: int = 0
    """Index into ModelData.nodes: the part this geometry belongs to."""


@dataclass
class ModelData:
    name: str
    """File name from the source; also the root node's name."""
    meshes: list[MeshData]
    bounds_min: Float32Array
    """(3,) rest pose, model space"""
    bounds_max: Float32Array
    """(3,)"""
    triangles: int
    points: int
    """Total points of point-cloud meshes."""
    materials: list[Material] = field(default_factory=lambda: [default_material()])
    images: list[ImageData] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    """Parents before children; node 0 is the model's root (parent -1, named after the file). Empty: one root
    node holding every mesh is assumed (see `tree()`)."""
    collision: TriangleChunks | None = None
    """Ray-cast structure stored in an .arrAsset; None: a RayCaster builds it when the model is added."""
    scene_graph_mode: SceneGraphMode = "dynamic"
    """The conversion's sceneGraphMode: "dynamic" lets clients move any part, "static" keeps the tree with fixed
    transforms, "none" has one node (see model/scene_graph.py)."""

    @property
    def primitives(self) -> int:
        return self.triangles + self.points

    def tree(self) -> list[Node]:
        """`nodes`, or the single root a model without a tree has."""
        return self.nodes or [Node(self.name, -1)]
