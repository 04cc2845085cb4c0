"""Import through trimesh: glTF/GLB, OBJ, PLY and STL bytes → a trimesh scene → `ModelData`.

trimesh parses; this module checks magic bytes first, bounds textures before they are decoded (texture_guard.py),
turns every parser failure into a `ModelLoadError` that names the file, and flattens trimesh's scene graph into one
`MeshData` per placed geometry. Fetching the bytes is not done here: the render server fetches them through
storage/ (render/model_loader.py), the converter reads them from its work directory (`read_scene`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

from openrr.model.mesh import Float32Array, MeshData, ModelData, ModelLoadError, UInt8Array, UInt32Array
from openrr.model.references import DirectoryResolver
from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits, texture_limits

logger = logging.getLogger(__name__)

Scrub = Callable[[str], str]
"""What a parser's own message goes through before it is shown: the redactor, where it may quote a URL."""

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
    """Parse a local model file with trimesh, the files it references resolved beside it (the converter's entry).

    `display` names the file in error messages, e.g. its path in the input container rather than a work directory.
    """
    kind = file_type(path.name, display)
    data = read_local(path, max_bytes, display)
    return parse_scene(data, kind, display, resolver or DirectoryResolver(path, display), textures, scrub)


def model_of_scene(name: str, scene: trimesh.Scene, display: str, *, gltf_sidedness: bool = False) -> ModelData:
    """Flatten a parsed trimesh scene into one `MeshData` per placed geometry, as `load_model` does.

    `gltf_sidedness`: the scene came from glTF, whose materials are single-sided unless they say `doubleSided`
    (culling their back faces halves llvmpipe's triangle work on closed meshes); otherwise every mesh is double-sided.
    """
    try:
        meshes = list(_flatten(scene, gltf_sidedness))
    except Exception as e:
        # trimesh hands back shapes and encodings its parsers let through; a surprise here is still this
        # file's problem, but keep the traceback in the log in case it is ours
        logger.exception("flattening %s failed", display)
        raise ModelLoadError(f"cannot read the geometry of {display}: {type(e).__name__}: {e}"[:400]) from e
    if not meshes:
        raise ModelLoadError(f"{display} contains no geometry (no triangles or points)")
    return _model(name, meshes)


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


# -- flattening trimesh's scene into arrays ----------------------------------------------------------


@dataclass
class _Local:
    """A geometry's arrays before its node transform; shared by every node that places the geometry."""

    positions: npt.NDArray[np.float64]
    normals: Float32Array
    colors: Float32Array
    indices: UInt32Array | None
    uvs: Float32Array | None
    texture: UInt8Array | None
    double_sided: bool = True


def _flatten(scene: trimesh.Scene, gltf_sidedness: bool) -> Iterator[MeshData]:
    local: dict[str, _Local | None] = {}
    for node in scene.graph.nodes_geometry:
        matrix, geometry_name = scene.graph[node]
        key = str(geometry_name)
        if key not in local:
            local[key] = _local(scene.geometry.get(key), gltf_sidedness)
        arrays = local[key]
        if arrays is not None:
            yield _place(arrays, np.asarray(matrix, dtype=np.float64))


def _local(geometry: object, gltf_sidedness: bool) -> _Local | None:
    if isinstance(geometry, trimesh.Trimesh) and len(geometry.vertices):
        if len(geometry.faces) == 0:
            return _points(np.asarray(geometry.vertices), _vertex_colors(geometry.visual, len(geometry.vertices)))
        local = _mesh(geometry)
        if gltf_sidedness:
            # trimesh keeps a glTF material as a PBRMaterial; a mesh without one has glTF's default material
            material = getattr(geometry.visual, "material", None)
            local.double_sided = isinstance(material, PBRMaterial) and bool(material.doubleSided)
        return local
    if isinstance(geometry, trimesh.PointCloud) and len(geometry.vertices):
        return _point_cloud(geometry)
    # paths (lines) and empty geometry: nothing a triangle/point renderer draws
    return None


def _mesh(mesh: trimesh.Trimesh) -> _Local:
    positions = np.asarray(mesh.vertices, dtype=np.float64)
    indices = np.asarray(mesh.faces).astype(np.uint32)
    # normals the file carried sit in trimesh's cache; asking `vertex_normals` for missing ones would
    # compute them with a sparse matrix, 10x slower than _vertex_normals
    loaded = mesh._cache.cache.get("vertex_normals") if "vertex_normals" in mesh._cache else None
    if loaded is not None and len(loaded) == len(positions):
        normals = _unit(np.asarray(loaded, dtype=np.float32))
    else:
        normals = _vertex_normals(positions.astype(np.float32), indices)
    uvs: Float32Array | None = None
    texture: UInt8Array | None = None
    visual = mesh.visual
    n = len(positions)
    if isinstance(visual, TextureVisuals):
        base, image = _material(visual.material)
        raw = visual.vertex_attributes.get("color") if visual.vertex_attributes else None
        vertex = _normalise_colors(raw, n) if raw is not None else None
        colors = base if vertex is None else vertex * base
        if visual.uv is not None and len(visual.uv) == n:
            uv = np.asarray(visual.uv, dtype=np.float32)
            # trimesh keeps OBJ's convention (v up from the bottom row); glTF's (v down from row 0) lets a
            # renderer upload `texture` as it is
            uvs = np.column_stack((uv[:, 0], 1.0 - uv[:, 1])).astype(np.float32)
        if image is not None:
            texture = _rgba(image)
    else:
        colors = _vertex_colors(visual, n)
    return _Local(positions, normals, _broadcast(colors, n), indices, uvs, texture)


def _point_cloud(cloud: trimesh.PointCloud) -> _Local:
    positions = np.asarray(cloud.vertices, dtype=np.float64)
    n = len(positions)
    colors = np.asarray(cloud.colors)
    local = _points(positions, _normalise_colors(colors, n) if len(colors) == n else _white())
    normals = _ply_point_normals(cloud.metadata, n)
    if normals is not None:
        local.normals = normals
    return local


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
    return _unit(np.column_stack(columns), fallback=None)


def _points(positions: npt.NDArray[np.float64], colors: Float32Array) -> _Local:
    n = len(positions)
    normals = np.zeros((n, 3), dtype=np.float32)
    return _Local(positions.astype(np.float64), normals, _broadcast(colors, n), None, None, None)


def _vertex_colors(visual: object, n: int) -> Float32Array:
    if isinstance(visual, ColorVisuals) and visual.kind is not None:
        # face colours come back averaged onto the vertices
        return _normalise_colors(visual.vertex_colors, n)
    if isinstance(visual, TextureVisuals):
        base, _ = _material(visual.material)
        return base
    return _white()


def _material(material: object) -> tuple[Float32Array, Image.Image | None]:
    """Base colour factor (RGBA 0..1) and base-colour image of a trimesh material."""
    if isinstance(material, PBRMaterial):
        factor = material.baseColorFactor
        base = _white() if factor is None else _normalise_colors(np.asarray(factor).reshape(1, -1), 1)
        return base, material.baseColorTexture
    if isinstance(material, SimpleMaterial):
        image = cast("Image.Image | None", getattr(material, "image", None))
        if image is not None and _is_placeholder(image):
            image = None
        diffuse = getattr(material, "diffuse", None)
        if diffuse is None or np.array_equal(diffuse, DEFAULT_COLOR):
            # trimesh puts its 40% grey in place of a missing Kd, which would darken a map_Kd texture
            # (a material that really says Kd 0.4 is shown brighter than it asks)
            return _white(), image
        return _normalise_colors(np.asarray(diffuse).reshape(1, -1), 1), image
    return _white(), None


def _is_placeholder(image: Image.Image) -> bool:
    """trimesh's stand-in when uvs come without a material (an OBJ whose .mtl is missing): 2×2 grey."""
    if image.size != (2, 2):
        return False
    return bool(np.all(np.asarray(image.convert("RGBA")) == PLACEHOLDER_TEXEL))


def _normalise_colors(raw: Any, n: int) -> Float32Array:
    """Colours of any integer or float encoding, 3 or 4 channels → (n, 4) float32 in 0..1."""
    colors = np.asarray(raw)
    if colors.ndim != 2 or colors.shape[1] not in (3, 4) or len(colors) not in (1, n):
        return _white()
    if np.issubdtype(colors.dtype, np.integer):
        # glTF's normalised integer colours: uint8 or uint16, full scale = the type's maximum
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


def _vertex_normals(positions: Float32Array, indices: UInt32Array) -> Float32Array:
    """Area-weighted vertex normals; bincount is what makes 1M triangles take ~0.1 s, not trimesh's 1 s."""
    corners = indices.astype(np.intp)
    a, b, c = (np.take(positions, corners[:, k], axis=0) for k in range(3))  # np.take: faster than a[idx]
    e1, e2 = b - a, c - a
    face = np.column_stack(
        (
            e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
            e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
            e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0],
        )
    )
    n = len(positions)
    every_corner = corners.T.reshape(-1)  # all first corners, then all second, then all third
    summed = np.empty((n, 3), dtype=np.float64)
    for axis in range(3):
        summed[:, axis] = np.bincount(every_corner, weights=np.tile(face[:, axis], 3), minlength=n)
    return _unit(summed.astype(np.float32))


def _unit(vectors: Float32Array, fallback: tuple[float, float, float] | None = (0.0, 0.0, 1.0)) -> Float32Array:
    """Normalised rows; zero rows (unused vertices, degenerate faces) get `fallback`, or stay zero."""
    length = np.linalg.norm(vectors, axis=1)
    zero = length == 0
    out = vectors / np.where(zero, 1.0, length)[:, None].astype(np.float32)
    if fallback is not None and zero.any():
        out[zero] = fallback
    return out.astype(np.float32, copy=False)


def _place(local: _Local, matrix: npt.NDArray[np.float64]) -> MeshData:
    if np.array_equal(matrix, np.eye(4)):
        positions = local.positions.astype(np.float32)
        normals, indices = local.normals, local.indices
    else:
        linear = matrix[:3, :3]
        positions = (local.positions @ linear.T + matrix[:3, 3]).astype(np.float32)
        normals = local.normals
        if np.any(normals):
            normal_matrix = np.linalg.inv(linear).T.astype(np.float32)
            normals = _unit(normals @ normal_matrix.T, fallback=None if local.indices is None else (0.0, 0.0, 1.0))
        indices = local.indices
        if indices is not None and np.linalg.det(linear) < 0:
            # a mirroring transform turns counter-clockwise triangles clockwise: swap two corners back
            indices = np.ascontiguousarray(indices[:, [0, 2, 1]])
    return MeshData(positions, normals, local.colors, indices, local.uvs, local.texture, local.double_sided)


def _model(name: str, meshes: list[MeshData]) -> ModelData:
    lows = np.array([m.positions.min(axis=0) for m in meshes])
    highs = np.array([m.positions.max(axis=0) for m in meshes])
    return ModelData(
        name=name,
        meshes=meshes,
        bounds_min=lows.min(axis=0).astype(np.float32),
        bounds_max=highs.max(axis=0).astype(np.float32),
        triangles=sum(len(m.indices) for m in meshes if m.indices is not None),
        points=sum(len(m.positions) for m in meshes if m.indices is None),
    )
