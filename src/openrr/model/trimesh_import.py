"""Model files → `ModelData`: glTF/GLB through openrr's own reader (gltf_import.py), OBJ, PLY and STL through trimesh.

`read_model` (a file on disk: the converter) and `model_of_bytes` (bytes already fetched: the render server) pick the
reader by extension. For the trimesh formats this module checks magic bytes first, bounds textures before they are
decoded (texture_guard.py), turns every parser failure into a `ModelLoadError` that names the file, and turns
trimesh's scene into the model: a root node plus one node per placed geometry, one `MeshData` per geometry, materials
from OBJ's .mtl (Kd, map_Kd) or `default_material()`. These formats' colours (Kd, vertex colours) are sRGB display
values, as three.js's loaders read them: they are made linear here, so a model looks as it did before shading was
linear. Fetching the bytes is not done here: the render server fetches them through storage/
(render/model_loader.py), the converter reads them from its work directory.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import trimesh
from PIL import Image
from trimesh.resolvers import Resolver
from trimesh.visual.color import DEFAULT_COLOR, ColorVisuals
from trimesh.visual.material import PBRMaterial, SimpleMaterial
from trimesh.visual.texture import TextureVisuals

from openrr.model.colour import srgb_to_linear
from openrr.model.geometry import LocalPrimitive, assemble_model, place, unit, vertex_normals
from openrr.model.gltf_import import Scrub, read_gltf
from openrr.model.mesh import (
    ALPHA_MODES,
    AlphaMode,
    Float32Array,
    ImageData,
    Material,
    MeshData,
    ModelData,
    ModelLoadError,
    Node,
    TextureRef,
    UInt8Array,
    default_material,
)
from openrr.model.references import DirectoryResolver
from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits, texture_limits

logger = logging.getLogger(__name__)

# file extension → trimesh file type
FORMATS = {".glb": "glb", ".gltf": "gltf", ".obj": "obj", ".ply": "ply", ".stl": "stl"}
FORMAT_NAMES = {"glb": "GLB", "gltf": "glTF", "obj": "OBJ", "ply": "PLY", "stl": "STL"}
PLACEHOLDER_TEXEL = (100, 100, 100, 255)  # trimesh.visual.material.color_image's default


def _unchanged(text: str) -> str:
    return text


def read_scene(
    path: Path,
    display: str,
    max_bytes: int = 2 * 1024**3,
    resolver: Resolver | None = None,
    textures: TextureLimits = DEFAULT_TEXTURES,
    scrub: Scrub = _unchanged,
) -> trimesh.Scene:
    """Parse a local model file with trimesh, the files it references resolved beside it. `read_model` is the way to a
    `ModelData`; this stays for callers that need trimesh's scene itself.

    `display` names the file in error messages, e.g. its path in the input container rather than a work directory.
    """
    kind = file_type(path.name, display)
    data = read_local(path, max_bytes, display)
    return parse_scene(data, kind, display, resolver or DirectoryResolver(path, display), textures, scrub)


def read_model(
    path: Path,
    display: str,
    *,
    max_bytes: int = 2 * 1024**3,
    resolver: Resolver | None = None,
    textures: TextureLimits = DEFAULT_TEXTURES,
    scrub: Scrub = _unchanged,
) -> ModelData:
    """The model in a local file (glTF, GLB, OBJ, PLY or STL by its extension), the files it references resolved
    beside it (`resolver`, by default a DirectoryResolver); `display` names it in error messages."""
    kind = file_type(path.name, display)
    data = read_local(path, max_bytes, display)
    return model_of_bytes(
        data, kind, path.name, display, resolver or DirectoryResolver(path, display, max_bytes), textures, scrub
    )


def model_of_bytes(
    data: bytes, kind: str, name: str, display: str, resolver: Resolver, textures: TextureLimits, scrub: Scrub
) -> ModelData:
    """The model in `data` of file type `kind` (`file_type`): glTF and GLB through gltf_import, the rest through
    trimesh. `name` is the model's (and its root node's) name."""
    if kind in ("gltf", "glb"):
        return read_gltf(data, kind == "glb", name, display, resolver, textures, scrub)
    return model_of_scene(name, parse_scene(data, kind, display, resolver, textures, scrub), display)


def model_of_scene(name: str, scene: trimesh.Scene, display: str) -> ModelData:
    """A parsed trimesh scene as a model: a root node named `name`, one node per placed geometry (trimesh's node
    names), one `MeshData` per placed geometry, its material and images."""
    try:
        model = _Flattening(name).model(scene)
    except Exception as e:
        # trimesh hands back shapes and encodings its parsers let through; a surprise here is still this
        # file's problem, but keep the traceback in the log in case it is ours
        logger.exception("flattening %s failed", display)
        raise ModelLoadError(f"cannot read the geometry of {display}: {type(e).__name__}: {e}"[:400]) from e
    if not model.meshes:
        raise ModelLoadError(f"{display} contains no geometry (no triangles or points)")
    return model


def file_type(name: str, display: str) -> str:
    """trimesh's file type for a file name's extension; ModelLoadError naming the supported ones otherwise."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in FORMATS:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        raise ModelLoadError(
            f"unsupported model format {shown} for {display}: supported are {', '.join(FORMATS)} and .arrAsset"
        )
    return FORMATS[suffix]


def read_local(path: Path, max_bytes: int, display: str | None = None) -> bytes:
    """A model file on disk, whole; every failure a ModelLoadError naming it as `display`."""
    shown = str(path) if display is None else display
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ModelLoadError(f"{shown} is a directory, not a model file")
        if size > max_bytes:
            raise ModelLoadError(f"{shown} is {size} bytes, over the limit of {max_bytes} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"file not found: {shown}") from None
    except PermissionError:
        raise ModelLoadError(f"permission denied reading {shown}") from None
    except OSError as e:
        raise ModelLoadError(f"cannot read {shown}: {e.strerror or e}") from None


def parse_scene(
    data: bytes, file_type: str, display: str, resolver: Resolver, textures: TextureLimits, scrub: Scrub
) -> trimesh.Scene:
    """trimesh's scene of `data`; every failure a ModelLoadError naming `display` (a resolver's own is kept)."""
    if not data:
        raise ModelLoadError(f"{display} is empty (0 bytes)")
    # magic bytes first: trimesh's own reason for a file of the wrong kind is often a stray IndexError
    if file_type == "glb" and data[:4] != b"glTF":
        raise ModelLoadError(f"cannot parse {display} as GLB: it does not start with the 'glTF' magic bytes")
    if file_type == "ply" and not data.startswith(b"ply"):
        raise ModelLoadError(f"cannot parse {display} as PLY: it does not start with a 'ply' header")
    with texture_limits(textures) as checked:
        try:
            scene = trimesh.load_scene(io.BytesIO(data), file_type=file_type, resolver=resolver)
        except Exception as e:
            failure: Exception | None = e
        else:
            failure = None
    # trimesh drops a texture it cannot open and carries on: a refused one must fail the load, not vanish
    if checked.refused:
        raise ModelLoadError(f"cannot load {display}: {checked.refused[0]}") from None
    if failure is None:
        return scene
    try:
        raise failure
    except Exception as e:
        # checked only after a failure: a self-contained glTF can be hundreds of MB of JSON, not worth
        # parsing twice; and trimesh, lost in broken JSON, may ask the resolver for files that do not exist
        problem = _json_problem(data) if file_type == "gltf" else None
        if problem is None and isinstance(e, ModelLoadError):
            raise  # a referenced file that could not be fetched: the resolver's message says which
        reason = problem or scrub(f"{type(e).__name__}: {e or 'no reason given'}"[:300])
        raise ModelLoadError(f"cannot parse {display} as {FORMAT_NAMES[file_type]}: {reason}") from e


def _json_problem(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        return f"invalid JSON: {e}"
    if not isinstance(doc, dict) or "asset" not in doc:
        return "the JSON has no 'asset' object"
    return None


# -- trimesh's scene as a model -------------------------------------------------------------------------------


class _Flattening:
    """One model's nodes, materials and images, built while its geometries are placed; trimesh's materials and
    images are shared between geometries, so each becomes one Material / ImageData (keyed by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes = [Node(name, -1)]
        self.materials: list[Material] = []
        self.by_material: dict[int, int] = {}
        self.images: list[ImageData] = []
        self.by_image: dict[int, int] = {}
        self.default: int | None = None
        self.seen: list[object] = []  # keeps every keyed object alive, so that no id is reused meanwhile

    def model(self, scene: trimesh.Scene) -> ModelData:
        local: dict[str, LocalPrimitive | None] = {}
        meshes: list[MeshData] = []
        for node_name in scene.graph.nodes_geometry:
            matrix, geometry_name = scene.graph[node_name]
            key = str(geometry_name)
            if key not in local:
                local[key] = self._local(scene.geometry.get(key))
            arrays = local[key]
            if arrays is None:
                continue
            world = np.asarray(matrix, dtype=np.float64)
            self.nodes.append(Node(str(node_name), 0, world.copy()))
            meshes.append(place(arrays, world, len(self.nodes) - 1))
        return assemble_model(self.name, meshes, self.materials or [default_material()], self.images, self.nodes)

    def _local(self, geometry: object) -> LocalPrimitive | None:
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.vertices):
            if len(geometry.faces) == 0:
                positions = np.asarray(geometry.vertices, dtype=np.float64)
                return self._points(positions, _vertex_colors(geometry.visual, len(positions)))
            return self._mesh(geometry)
        if isinstance(geometry, trimesh.PointCloud) and len(geometry.vertices):
            return self._point_cloud(geometry)
        # paths (lines) and empty geometry: nothing a triangle/point renderer draws
        return None

    def _mesh(self, mesh: trimesh.Trimesh) -> LocalPrimitive:
        positions = np.asarray(mesh.vertices, dtype=np.float64)
        indices = np.asarray(mesh.faces).astype(np.uint32)
        # normals the file carried sit in trimesh's cache; asking `vertex_normals` for missing ones would
        # compute them with a sparse matrix, 10x slower than vertex_normals
        loaded = mesh._cache.cache.get("vertex_normals") if "vertex_normals" in mesh._cache else None
        if loaded is not None and len(loaded) == len(positions):
            normals = unit(np.asarray(loaded, dtype=np.float32))
        else:
            normals = vertex_normals(positions.astype(np.float32), indices)
        n = len(positions)
        uvs: Float32Array | None = None
        visual = mesh.visual
        if isinstance(visual, TextureVisuals):
            material = self._material(visual.material)
            raw = visual.vertex_attributes.get("color") if visual.vertex_attributes else None
            colors = _linear_colors(raw, n) if raw is not None else _white()
            if visual.uv is not None and len(visual.uv) == n:
                uv = np.asarray(visual.uv, dtype=np.float32)
                # trimesh keeps OBJ's convention (v up from the bottom row); glTF's (v down from row 0) lets a
                # renderer upload images as they are
                uvs = np.column_stack((uv[:, 0], 1.0 - uv[:, 1])).astype(np.float32)
        else:
            material = self._default()
            colors = _vertex_colors(visual, n)
        return LocalPrimitive(positions, normals, _broadcast(colors, n), indices, uvs, material=material)

    def _point_cloud(self, cloud: trimesh.PointCloud) -> LocalPrimitive:
        positions = np.asarray(cloud.vertices, dtype=np.float64)
        n = len(positions)
        colors = np.asarray(cloud.colors)
        local = self._points(positions, _linear_colors(colors, n) if len(colors) == n else _white())
        normals = _ply_point_normals(cloud.metadata, n)
        if normals is not None:
            local.normals = normals
        return local

    def _points(self, positions: npt.NDArray[np.float64], colors: Float32Array) -> LocalPrimitive:
        n = len(positions)
        normals = np.zeros((n, 3), dtype=np.float32)
        return LocalPrimitive(positions, normals, _broadcast(colors, n), None, material=self._default())

    def _default(self) -> int:
        if self.default is None:
            self.default = len(self.materials)
            self.materials.append(default_material())
        return self.default

    def _material(self, material: object) -> int:
        if not isinstance(material, (PBRMaterial, SimpleMaterial)):
            return self._default()
        if id(material) in self.by_material:
            return self.by_material[id(material)]
        converted = self._pbr(material) if isinstance(material, PBRMaterial) else self._simple(material)
        self.seen.append(material)
        self.by_material[id(material)] = len(self.materials)
        self.materials.append(converted)
        return len(self.materials) - 1

    def _simple(self, material: SimpleMaterial) -> Material:
        """OBJ's .mtl: Kd (an sRGB display colour, as three.js's MTLLoader reads it) → base colour, its alpha (d) →
        blending, map_Kd → base colour texture; the rest of the white dielectric default."""
        image = cast("Image.Image | None", getattr(material, "image", None))
        if image is not None and _is_placeholder(image):
            image = None
        diffuse = getattr(material, "diffuse", None)
        base = (1.0, 1.0, 1.0, 1.0)
        if diffuse is not None and not np.array_equal(diffuse, DEFAULT_COLOR):
            # trimesh puts its 40% grey in place of a missing Kd, which would darken a map_Kd texture
            # (a material that really says Kd 0.4 is shown brighter than it asks)
            rgba = _normalise_colors(np.asarray(diffuse).reshape(1, -1), 1)[0]
            r, g, b = (float(c) for c in srgb_to_linear(rgba[:3]))
            base = (r, g, b, float(rgba[3]))
        return replace(
            default_material(),
            name=str(getattr(material, "name", None) or ""),
            base_color=base,
            base_color_texture=self._texture(image),
            alpha_mode="BLEND" if base[3] < 1.0 else "OPAQUE",
        )

    def _pbr(self, material: PBRMaterial) -> Material:
        """trimesh's glTF material (what trimesh read from a glTF file; openrr reads glTF itself, but a scene parsed
        by trimesh may still hold one): factors as glTF's, linear."""
        factor = material.baseColorFactor
        base = (1.0, 1.0, 1.0, 1.0) if factor is None else _normalise_colors(np.asarray(factor).reshape(1, -1), 1)[0]
        emissive = material.emissiveFactor
        alpha_mode: AlphaMode = material.alphaMode if material.alphaMode in ALPHA_MODES else "OPAQUE"
        return Material(
            name=str(material.name or ""),
            base_color=(float(base[0]), float(base[1]), float(base[2]), float(base[3])),
            base_color_texture=self._texture(material.baseColorTexture),
            metallic=1.0 if material.metallicFactor is None else float(material.metallicFactor),
            roughness=1.0 if material.roughnessFactor is None else float(material.roughnessFactor),
            metallic_roughness_texture=self._texture(material.metallicRoughnessTexture),
            normal_texture=self._texture(material.normalTexture),
            occlusion_texture=self._texture(material.occlusionTexture),
            emissive=(0.0, 0.0, 0.0)
            if emissive is None
            else (float(emissive[0]), float(emissive[1]), float(emissive[2])),
            emissive_texture=self._texture(material.emissiveTexture),
            alpha_mode=alpha_mode,
            alpha_cutoff=0.5 if material.alphaCutoff is None else float(material.alphaCutoff),
            double_sided=bool(material.doubleSided),
        )

    def _texture(self, image: object) -> TextureRef | None:
        if not isinstance(image, Image.Image):
            return None
        if id(image) not in self.by_image:
            self.seen.append(image)
            self.by_image[id(image)] = len(self.images)
            self.images.append(ImageData(_rgba(image), str(getattr(image, "filename", "") or "")))
        return TextureRef(self.by_image[id(image)])


def _ply_point_normals(metadata: dict[str, Any], n: int) -> Float32Array | None:
    """trimesh drops a PLY point cloud's normals but keeps the raw PLY elements in its metadata: a structured
    array for binary files, a dict of (n, 1) columns for ASCII ones."""
    raw = metadata.get("_ply_raw")
    data = raw.get("vertex", {}).get("data") if isinstance(raw, dict) else None
    if isinstance(data, np.ndarray):
        names = set(data.dtype.names or ())
    elif isinstance(data, dict):
        names = set(data)
    else:
        return None
    if not {"nx", "ny", "nz"} <= names:
        return None
    columns = [np.asarray(data[axis], dtype=np.float32).reshape(-1) for axis in ("nx", "ny", "nz")]
    if any(len(column) != n for column in columns):
        return None
    return unit(np.column_stack(columns), fallback=None)


def _vertex_colors(visual: object, n: int) -> Float32Array:
    if isinstance(visual, ColorVisuals) and visual.kind is not None:
        # face colours come back averaged onto the vertices
        return _linear_colors(visual.vertex_colors, n)
    return _white()


def _is_placeholder(image: Image.Image) -> bool:
    """trimesh's stand-in when uvs come without a material (an OBJ whose .mtl is missing): 2×2 grey."""
    if image.size != (2, 2):
        return False
    return bool(np.all(np.asarray(image.convert("RGBA")) == PLACEHOLDER_TEXEL))


def _linear_colors(raw: Any, n: int) -> Float32Array:
    """Vertex colours of OBJ/PLY/STL (sRGB display values, as three.js's loaders read them) → linear RGBA."""
    colors = _normalise_colors(raw, n)
    return np.column_stack((srgb_to_linear(colors[:, :3]), colors[:, 3])).astype(np.float32)


def _normalise_colors(raw: Any, n: int) -> Float32Array:
    """Colours of any integer or float encoding, 3 or 4 channels → (n, 4) float32 in 0..1."""
    colors = np.asarray(raw)
    if colors.ndim != 2 or colors.shape[1] not in (3, 4) or len(colors) not in (1, n):
        return _white()
    if np.issubdtype(colors.dtype, np.integer):
        # integer colours: full scale = the type's maximum
        out = colors.astype(np.float32) / np.float32(np.iinfo(colors.dtype).max)
    else:
        out = np.clip(colors.astype(np.float32), 0.0, 1.0)
    if out.shape[1] == 3:
        out = np.column_stack((out, np.ones(len(out), dtype=np.float32)))
    return out


def _white() -> Float32Array:
    return np.ones((1, 4), dtype=np.float32)


def _broadcast(colors: Float32Array, n: int) -> Float32Array:
    if len(colors) == n:
        return np.ascontiguousarray(colors, dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(colors[:1], (n, 4)), dtype=np.float32)


def _rgba(image: Image.Image) -> UInt8Array:
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    return np.asarray(image, dtype=np.uint8).copy()
