"""Input formats: each reader turns one model file into a `ModelData` plus what info.json says.

glTF/GLB, OBJ, PLY and STL go through `openrr.model.trimesh_import.read_model` (openrr's glTF reader, trimesh for
the rest), so a converted asset looks like the source loaded directly; FBX goes through Debian's assimp command-line
tool, which rewrites it as GLB (tree, names, geometry, textures), with the FBX's own Phong materials and node user
properties read from the file (fbx_properties.py, fbx_materials.py); point clouds come from XYZ text, LAS/LAZ (laspy,
with lazrs for LAZ) and E57 (pye57).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import subprocess
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt

from openrr.conversions.fbx_materials import phong_to_pbr
from openrr.conversions.fbx_properties import FbxProperties, FbxPropertyError, read_fbx_properties
from openrr.conversions.report import MISSING_FILE, MISSING_TEXTURE, ConversionWarning, InputInfo, InputStatistics
from openrr.conversions.settings import ConversionSettings
from openrr.model.mesh import MeshData, ModelData, ModelLoadError, default_material
from openrr.model.references import DirectoryResolver, ReferenceRefused
from openrr.model.trimesh_import import read_model
from openrr.protocol.redaction import redact

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

TRIMESH_FORMATS = {".glb": "GLB", ".gltf": "glTF", ".obj": "OBJ", ".ply": "PLY", ".stl": "STL"}
POINT_CLOUD_FORMATS = {".xyz": "XYZ", ".las": "LAS", ".laz": "LAZ", ".e57": "E57"}
FORMAT_NAMES = {**TRIMESH_FORMATS, ".fbx": "FBX", **POINT_CLOUD_FORMATS}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".tif", ".tiff", ".webp", ".dds", ".ktx"})
ASSIMP_TIMEOUT_S = 600.0
MAX_INPUT_BYTES = 8 * 1024**3


class InputError(Exception):
    """The input cannot be converted (corrupt, empty, unsupported); the message says what and where."""


class ToolMissingError(Exception):
    """A tool this server needs for the input's format is not installed: the server's fault, not the input's."""


# formats whose reader takes colours to be sRGB display values and makes them linear (as three.js's loaders do):
# the gammaToLinear settings say whether that stays (true) or is undone (false)
LINEARISED_MATERIAL = frozenset({".obj"})
LINEARISED_VERTEX = frozenset({".obj", ".ply", ".stl"})
SIDEDNESS_FORMATS = frozenset({".glb", ".gltf"})
"""Formats whose materials say whether they are double-sided; for the others opaqueMaterialDefaultSidedness does."""


@dataclass
class SourceModel:
    model: ModelData
    info: InputInfo
    statistics: InputStatistics
    point_cloud: bool
    """True for point-cloud inputs, to which ARR applies only a subset of the settings."""
    warnings: list[ConversionWarning] = field(default_factory=list)
    precise: dict[int, F64] = field(default_factory=dict)
    """Mesh index → its positions in float64, where the reader had them (point clouds): recentering far-away scans
    must not lose their millimetres to float32 first."""


def extension_of(relative_input: str) -> str:
    return PurePosixPath(relative_input).suffix.lower()


def read_source(path: Path, display: str, settings: ConversionSettings) -> SourceModel:
    """Read the model at `path` (named `display` in messages) with the reader its extension picks."""
    extension = extension_of(path.name)
    if extension in TRIMESH_FORMATS:
        return _read_mesh_file(path, display, _info(path, extension))
    if extension == ".fbx":
        return _read_fbx(path, display, settings)
    if extension in POINT_CLOUD_FORMATS:
        return _read_point_cloud(path, display, extension)
    shown = f"'{extension}'" if extension else "(no extension)"
    raise InputError(f"unsupported input format {shown} for {display}: supported are {', '.join(FORMAT_NAMES)}")


# --- trimesh formats ----------------------------------------------------------------------------------------


class _RecordingResolver(DirectoryResolver):
    """Resolves referenced files beside the model (openrr's own containment: inside the model's directory, after
    decoding, `..` and symlinks) and remembers the ones that are missing or refused."""

    def __init__(self, source: Path, display: str) -> None:
        super().__init__(source, display, MAX_INPUT_BYTES)
        self.missing: list[str] = []

    def get(self, name: str) -> bytes:
        try:
            data: bytes = super().get(name)
        except (OSError, KeyError, ReferenceRefused):
            if name not in self.missing:
                self.missing.append(name)
            raise
        return data


def _read_mesh_file(
    path: Path, display: str, info: InputInfo, resolve_beside: Path | None = None, name: str | None = None
) -> SourceModel:
    resolver = _RecordingResolver(resolve_beside or path, display)
    try:
        model = read_model(path, display, max_bytes=MAX_INPUT_BYTES, resolver=resolver, scrub=redact)
    except ModelLoadError as e:
        raise InputError(str(e)) from None
    if name is not None:
        model.name = name
        if model.nodes:
            model.nodes[0].name = name
    warnings = [_missing_warning(missing, display) for missing in resolver.missing]
    point_cloud = info.extension == ".ply" and all(m.indices is None for m in model.meshes)
    return SourceModel(model, info, _model_statistics(model), point_cloud, warnings)


def _missing_warning(name: str, display: str) -> ConversionWarning:
    folder = str(PurePosixPath(display).parent)
    where = "the input container" if folder == "." else f"'{folder}/' in the input container"
    if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
        return ConversionWarning.of(
            MISSING_TEXTURE,
            f"texture '{name}' referenced by {display} was not found in {where}; its material is converted without it",
            texture=name,
            referencedBy=display,
        )
    return ConversionWarning.of(
        MISSING_FILE,
        f"'{name}' referenced by {display} was not found in {where}; the model is converted without it",
        file=name,
        referencedBy=display,
    )


def _model_statistics(model: ModelData) -> InputStatistics:
    faces = [len(m.indices) for m in model.meshes if m.indices is not None and len(m.indices)]
    nodes = model.tree()
    depths = [0] * len(nodes)
    for index, node in enumerate(nodes):
        if node.parent >= 0:
            depths[index] = depths[node.parent] + 1  # parents come before their children
    return InputStatistics(
        meshes=len(model.meshes),
        faces=sum(faces),
        vertices=sum(len(m.positions) for m in model.meshes),
        materials=len(model.materials),
        faces_smallest_mesh=min(faces, default=0),
        faces_biggest_mesh=max(faces, default=0),
        nodes=len(nodes),
        mesh_usages=len(model.meshes),
        max_node_depth=max(depths, default=0),
        points=sum(len(m.positions) for m in model.meshes if m.indices is None),
    )


def _info(path: Path, extension: str) -> InputInfo:
    """Format version and generator from the file's header, where the format keeps them cheaply."""
    name = FORMAT_NAMES[extension]
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return InputInfo(extension, name)
    version, generator = "", ""
    if extension in (".glb", ".gltf"):
        asset = _gltf_asset(path, head, extension)
        version, generator = str(asset.get("version", "")), str(asset.get("generator", ""))
    elif extension == ".ply":
        match = re.search(rb"^format (\S+) (\S+)", head, re.MULTILINE)
        version = f"{match[1].decode()} {match[2].decode()}" if match else ""
    elif extension == ".fbx":
        if head.startswith(b"Kaydara FBX Binary"):
            version = str(int.from_bytes(head[23:27], "little"))
        else:
            match = re.search(rb"FBXVersion:\s*(\d+)", head)
            version = match[1].decode() if match else ""
        match = re.search(rb"Creator:\s*\"([^\"]*)\"", head)
        generator = match[1].decode(errors="replace") if match else ""
    return InputInfo(extension, name, version, generator)


def _gltf_asset(path: Path, head: bytes, extension: str) -> dict[str, Any]:
    try:
        if extension == ".glb":
            length = int.from_bytes(head[12:16], "little")
            document = json.loads(head[20 : 20 + length]) if head[16:20] == b"JSON" and length <= len(head) - 20 else {}
        else:
            document = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, OSError):
        return {}
    asset = document.get("asset") if isinstance(document, dict) else None
    return asset if isinstance(asset, dict) else {}


# --- FBX through assimp ---------------------------------------------------------------------------------------


def _read_fbx(path: Path, display: str, settings: ConversionSettings) -> SourceModel:
    assimp = shutil.which("assimp")
    if assimp is None:
        raise ToolMissingError(
            f"cannot convert {display}: FBX input needs the assimp command-line tool "
            "(Debian package assimp-utils), which is not installed on this conversion server"
        )
    info = _info(path, ".fbx")
    with tempfile.TemporaryDirectory(prefix="openrr-fbx-") as work:
        glb = Path(work) / (path.stem + ".glb")
        try:
            done = subprocess.run(
                [assimp, "export", str(path), str(glb), "-tri"],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=ASSIMP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InputError(f"cannot parse {display} as FBX: assimp took over {ASSIMP_TIMEOUT_S:g} s") from None
        if done.returncode != 0 or not glb.is_file():
            raise InputError(f"cannot parse {display} as FBX: {_assimp_reason(done.stdout + done.stderr)}")
        _tidy_assimp_glb(glb)
        # textures stay referenced by their paths relative to the FBX file: resolve them there
        source = _read_mesh_file(glb, display, info, resolve_beside=path, name=path.name)
    _hoist_assimp_root(source.model)
    source.statistics = _model_statistics(source.model)
    try:
        properties = read_fbx_properties(path)
    except (OSError, FbxPropertyError, struct.error, IndexError) as e:
        # assimp read the file, so its geometry is good; only the materials' Phong inputs and metadata are lost
        logger.warning("cannot read the properties of %s: %s", display, e)
        properties = FbxProperties()
    _fbx_materials(source.model, properties, settings)
    _fbx_metadata(source.model, properties, settings.metadata_keys)
    return source


ASSIMP_ROOT = "RootNode"


def _hoist_assimp_root(model: ModelData) -> None:
    """assimp wraps an FBX's top-level models in a node of its own, "RootNode", which the FBX does not have: its
    children move up to the model's root (its transform composed into theirs), so the tree is the file's."""
    nodes = model.nodes
    if len(nodes) < 2 or nodes[1].name != ASSIMP_ROOT or nodes[1].parent != 0:
        return
    if any(m.node == 1 for m in model.meshes) or any(n.parent == 0 for n in nodes[2:]):
        return  # not only a wrapper: keep it
    wrapper = np.asarray(nodes[1].local, dtype=np.float64)
    kept = [nodes[0]]
    for node in nodes[2:]:
        if node.parent == 1:
            node.local = wrapper @ np.asarray(node.local, dtype=np.float64)
        node.parent = 0 if node.parent <= 1 else node.parent - 1
        kept.append(node)
    model.nodes = kept
    for mesh in model.meshes:
        if mesh.node >= 2:
            mesh.node -= 1


def _tidy_assimp_glb(glb: Path) -> None:
    """Keep only the metallic-roughness description of assimp's materials, with factors glTF allows.

    assimp describes FBX's Phong materials twice, also as KHR_materials_pbrSpecularGlossiness, which would take
    precedence; and its roughness, from its own formula, can be negative. The FBX's own values replace both where
    the material is found in the file (`_fbx_materials`).
    """
    import pygltflib  # type: ignore[import-untyped]

    gltf = pygltflib.GLTF2().load_binary(str(glb))
    extension = "KHR_materials_pbrSpecularGlossiness"
    for material in gltf.materials:
        if isinstance(material.extensions, dict):
            material.extensions.pop(extension, None)
        pbr = material.pbrMetallicRoughness
        if pbr is not None:
            pbr.roughnessFactor = min(max(pbr.roughnessFactor if pbr.roughnessFactor is not None else 1.0, 0.0), 1.0)
            pbr.metallicFactor = min(max(pbr.metallicFactor if pbr.metallicFactor is not None else 1.0, 0.0), 1.0)
    gltf.extensionsUsed = [name for name in gltf.extensionsUsed or [] if name != extension]
    gltf.extensionsRequired = [name for name in gltf.extensionsRequired or [] if name != extension]
    gltf.save_binary(str(glb))


def _fbx_materials(model: ModelData, properties: FbxProperties, settings: ConversionSettings) -> None:
    """Each material assimp kept, by name, mapped from the FBX's Phong values with ARR's formulas."""
    for index, material in enumerate(model.materials):
        props = properties.materials.get(material.name)
        if props is None:
            continue
        pbr = phong_to_pbr(props, settings.fbx_assume_metallic, textured=material.base_color_texture is not None)
        model.materials[index] = replace(
            material,
            base_color=pbr.base_color,
            metallic=pbr.metallic,
            roughness=pbr.roughness,
            emissive=pbr.emissive,
            alpha_mode="BLEND" if pbr.base_color[3] < 1.0 else material.alpha_mode,
        )


METADATA_TYPES = (bool, int, float, str)
"""What ARR keeps of node metadata: booleans, integers, floats and strings."""


def _fbx_metadata(model: ModelData, properties: FbxProperties, keys: list[str]) -> None:
    """FBX user properties → node metadata, the keys `metadataKeys` names (exactly, or `ABC*` for a prefix) only;
    no keys, no metadata, as in ARR. Nodes are matched by name, in file order where names repeat."""
    if not keys:
        return
    by_name: dict[str, deque[dict[str, Any]]] = {}
    for name, user in properties.models:
        by_name.setdefault(name, deque()).append(user)
    for node in model.nodes[1:]:
        queue = by_name.get(node.name)
        if not queue:
            continue
        kept = {
            key: value
            for key, value in queue.popleft().items()
            if isinstance(value, METADATA_TYPES) and any(_key_matches(key, pattern) for pattern in keys)
        }
        if kept:
            node.metadata = {**node.metadata, **kept}


def _key_matches(key: str, pattern: str) -> bool:
    # ARR's wildcard is a trailing `*` only: anything else in the pattern is literal
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern


def _assimp_reason(output: str) -> str:
    errors = [line.removeprefix("ERROR:").strip() for line in output.splitlines() if line.startswith("ERROR")]
    reason = errors[-1] if errors else (output.strip().splitlines() or ["assimp failed without a message"])[-1]
    return reason.replace("Failed to load file: ", "")[:300]


# --- point clouds ---------------------------------------------------------------------------------------------


def _read_point_cloud(path: Path, display: str, extension: str) -> SourceModel:
    try:
        if extension == ".xyz":
            positions, colors, version, generator = _read_xyz(path, display)
        elif extension in (".las", ".laz"):
            positions, colors, version, generator = _read_las(path, display)
        else:
            positions, colors, version, generator = _read_e57(path, display)
    except OSError as e:
        raise InputError(f"cannot read {display}: {e.strerror or e}") from None
    n = len(positions)
    if n == 0:
        raise InputError(f"{display} contains no points")
    if not np.all(np.isfinite(positions)):
        raise InputError(f"{display} has points with non-finite coordinates (NaN or infinity)")
    rgba = np.ones((n, 4), dtype=np.float32)
    if colors is not None:
        # as the file has them: the converter applies gammaToLinearVertex, as for every format
        rgba[:, :3] = np.clip(colors, 0.0, 1.0)
    mesh = MeshData(positions.astype(np.float32), np.zeros((n, 3), dtype=np.float32), rgba, None)
    low, high = positions.min(axis=0), positions.max(axis=0)
    model = ModelData(
        path.name, [mesh], low.astype(np.float32), high.astype(np.float32), 0, n, materials=[default_material()]
    )
    info = InputInfo(extension, FORMAT_NAMES[extension], version, generator)
    statistics = InputStatistics(1, 0, n, 0, 0, 0, 1, 1, 0, points=n)
    return SourceModel(model, info, statistics, point_cloud=True, precise={0: positions})


Cloud = tuple[F64, F64 | None, str, str]
"""(positions (N, 3), colours (N, 3) in 0..1 or None, format version, generator)."""


def _read_xyz(path: Path, display: str) -> Cloud:
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", "//"))]
    if not lines:
        raise InputError(f"{display} contains no points")
    rows = [line.replace(",", " ").split() for line in lines]
    columns = len(rows[0])
    if columns < 3:
        raise InputError(f"{display}: a line needs at least 3 numbers (x y z), the first has {columns}")
    try:
        if any(len(row) != columns for row in rows):
            raise ValueError("ragged")
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        raise InputError(f"cannot parse {display} as XYZ: {_xyz_problem(text, columns)}") from None
    del rows
    colors = None
    if columns >= 6:
        rgb = data[:, 3:6]
        # 8-bit values are the norm; a file whose colours all lie in 0..1 wrote them as fractions
        colors = rgb if float(rgb.max(initial=0.0)) <= 1.0 else rgb / 255.0
    return np.ascontiguousarray(data[:, :3]), colors, "", ""


def _xyz_problem(text: str, columns: int) -> str:
    for number, line in _numbered(text):
        fields = line.replace(",", " ").split()
        if len(fields) != columns:
            return f"line {number} has {len(fields)} values, the first line has {columns}"
        for value in fields:
            try:
                float(value)
            except ValueError:
                return f"line {number}: '{value[:40]}' is not a number"
    return "the values do not form rows of equal length"


def _numbered(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith(("#", "//")):
            yield number, line


def _read_las(path: Path, display: str) -> Cloud:
    import laspy  # type: ignore[import-untyped]  # imported on use: only LAS/LAZ conversions need it

    try:
        las = laspy.read(str(path))
    except laspy.errors.LaspyException as e:
        kind = "LAZ" if path.suffix.lower() == ".laz" else "LAS"
        raise InputError(f"cannot parse {display} as {kind}: {e}") from None
    positions = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)]).astype(np.float64)
    names = set(las.point_format.dimension_names)
    colors = None
    if {"red", "green", "blue"} <= names and len(positions):
        rgb = np.column_stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)]).astype(np.float64)
        # LAS stores 16-bit colour, but many writers put 8-bit values in it
        colors = rgb / (255.0 if float(rgb.max()) <= 255.0 else 65535.0)
    header = las.header
    return positions, colors, f"{header.version.major}.{header.version.minor}", str(header.generating_software)


def _read_e57(path: Path, display: str) -> Cloud:
    import pye57  # type: ignore[import-untyped]  # imported on use: only E57 conversions need it

    try:
        e57 = pye57.E57(str(path))
    except Exception as e:  # libE57's own exception type is not exported by pye57
        raise InputError(f"cannot parse {display} as E57: {_first_line(e)}") from None
    try:
        positions: list[F64] = []
        colors: list[F64] = []
        for index in range(e57.scan_count):
            scan = e57.read_scan(index, colors=True, ignore_missing_fields=True, transform=True)
            xyz = np.column_stack([scan["cartesianX"], scan["cartesianY"], scan["cartesianZ"]]).astype(np.float64)
            positions.append(xyz)
            if {"colorRed", "colorGreen", "colorBlue"} <= set(scan):
                rgb = np.column_stack([scan["colorRed"], scan["colorGreen"], scan["colorBlue"]]).astype(np.float64)
                colors.append(rgb / _e57_color_scale(e57, index, rgb))
            else:
                colors.append(np.ones_like(xyz))
    except Exception as e:
        raise InputError(f"cannot read the points of {display} (E57): {_first_line(e)}") from None
    finally:
        e57.close()
    if not positions:
        raise InputError(f"{display} has no scans (no data3d)")
    return np.concatenate(positions), np.concatenate(colors), "", ""


def _e57_color_scale(e57: Any, index: int, rgb: F64) -> float:
    """The scan's colorLimits maximum when it has one; else the full range of the values' width."""
    try:
        limit = float(e57.get_header(index).node["colorLimits"]["colorRedMaximum"].value())
        if limit > 0:
            return limit
    except Exception:  # absent or of an unexpected node type: fall back on the values
        logger.debug("no usable colorLimits in scan %d", index)
    return 255.0 if float(rgb.max(initial=0.0)) <= 255.0 else 65535.0


def _first_line(error: Exception) -> str:
    """libE57's messages go on with debug lines that name the work directory: keep the reason only."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:300]
