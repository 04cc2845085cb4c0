"""Input formats: each reader turns one model file into `Part`s (placed geometry in float64) plus what info.json says.

glTF/GLB, OBJ, PLY and STL go through trimesh (via `openrr.model.trimesh_import`, so a converted asset looks like the
source loaded directly); FBX goes through Debian's assimp command-line tool, which rewrites it as GLB; point clouds come
from XYZ text, LAS/LAZ (laspy, with lazrs for LAZ) and E57 (pye57).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh
from trimesh.visual.color import DEFAULT_COLOR, ColorVisuals
from trimesh.visual.material import PBRMaterial, SimpleMaterial
from trimesh.visual.texture import TextureVisuals

from openrr.conversions.report import MISSING_FILE, MISSING_TEXTURE, ConversionWarning, InputInfo, InputStatistics
from openrr.conversions.settings import ConversionSettings
from openrr.model.mesh import ModelLoadError
from openrr.model.references import DirectoryResolver, ReferenceRefused
from openrr.model.trimesh_import import model_of_scene, read_scene
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


@dataclass
class Part:
    """One placed geometry, positions in float64 so that recentering far-away scans loses no precision."""

    positions: F64
    normals: F32
    colors: F32
    """(N, 4) in 0..1."""
    indices: npt.NDArray[np.uint32] | None
    uvs: F32 | None
    texture: npt.NDArray[np.uint8] | None


@dataclass
class SourceModel:
    parts: list[Part]
    info: InputInfo
    statistics: InputStatistics
    point_cloud: bool
    """True for point-cloud inputs, to which ARR applies only a subset of the settings."""
    warnings: list[ConversionWarning] = field(default_factory=list)


def extension_of(relative_input: str) -> str:
    return PurePosixPath(relative_input).suffix.lower()


def read_source(path: Path, display: str, settings: ConversionSettings) -> SourceModel:
    """Read the model at `path` (named `display` in messages) with the reader its extension picks."""
    extension = extension_of(path.name)
    if extension in TRIMESH_FORMATS:
        return _read_trimesh(path, display, settings, _info(path, extension))
    if extension == ".fbx":
        return _read_fbx(path, display, settings)
    if extension in POINT_CLOUD_FORMATS:
        return _read_point_cloud(path, display, extension, settings)
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


def _read_trimesh(
    path: Path, display: str, settings: ConversionSettings, info: InputInfo, resolve_beside: Path | None = None
) -> SourceModel:
    resolver = _RecordingResolver(resolve_beside or path, display)
    try:
        scene = read_scene(path, display, MAX_INPUT_BYTES, resolver, scrub=redact)
        _linearise(scene, settings.gamma_to_linear_material, settings.gamma_to_linear_vertex)
        model = model_of_scene(path.name, scene, display)
    except ModelLoadError as e:
        raise InputError(str(e)) from None
    warnings = [_missing_warning(name, display) for name in resolver.missing]
    parts = [
        Part(m.positions.astype(np.float64), m.normals, m.colors, m.indices, m.uvs, m.texture) for m in model.meshes
    ]
    point_cloud = info.extension == ".ply" and all(p.indices is None for p in parts)
    return SourceModel(parts, info, _scene_statistics(scene), point_cloud, warnings)


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


def _to_linear(values: npt.ArrayLike) -> F64:
    """sRGB transfer function undone, on colours in 0..1."""
    c = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_rgba8(colors: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """RGBA8 (or RGB8) colours with their colour channels made linear; alpha is not a colour and stays."""
    rgba = np.array(colors, dtype=np.float64, copy=True)
    rgba[..., :3] = _to_linear(rgba[..., :3] / 255.0) * 255.0
    return np.rint(rgba).astype(np.uint8)


def _linearise(scene: trimesh.Scene, material: bool, vertex: bool) -> None:
    """Apply gammaToLinearMaterial / gammaToLinearVertex to trimesh's materials and colours before flattening."""
    if not (material or vertex):
        return
    seen: set[int] = set()
    for geometry in scene.geometry.values():
        if isinstance(geometry, trimesh.PointCloud):
            if vertex and len(geometry.colors):
                geometry.colors = _linear_rgba8(geometry.colors)
            continue
        visual = getattr(geometry, "visual", None)
        if isinstance(visual, TextureVisuals):
            if material and id(visual.material) not in seen:
                seen.add(id(visual.material))
                _linearise_material(visual.material)
            raw = visual.vertex_attributes.get("color") if visual.vertex_attributes else None
            if vertex and raw is not None:
                colors = np.asarray(raw)
                if np.issubdtype(colors.dtype, np.integer):
                    scale = float(np.iinfo(colors.dtype).max)
                    visual.vertex_attributes["color"] = np.rint(_to_linear(colors / scale) * scale).astype(colors.dtype)
                else:
                    visual.vertex_attributes["color"] = _to_linear(colors).astype(colors.dtype)
        elif isinstance(visual, ColorVisuals) and vertex:
            if visual.kind == "face":
                visual.face_colors = _linear_rgba8(visual.face_colors)
            elif visual.kind == "vertex":
                visual.vertex_colors = _linear_rgba8(visual.vertex_colors)


def _linearise_material(material: object) -> None:
    if isinstance(material, PBRMaterial) and material.baseColorFactor is not None:
        material.baseColorFactor = _linear_rgba8(material.baseColorFactor)
    elif isinstance(material, SimpleMaterial):
        diffuse = getattr(material, "diffuse", None)
        # trimesh's stand-in for a missing Kd is shown white by the scene loader: it is no colour to convert
        if diffuse is not None and not np.array_equal(diffuse, DEFAULT_COLOR):
            material.diffuse = _linear_rgba8(diffuse)


def _scene_statistics(scene: trimesh.Scene) -> InputStatistics:
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh | trimesh.PointCloud)]
    faces = [len(g.faces) for g in meshes if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    materials: set[int] = set()
    plain = False
    for geometry in meshes:
        visual = getattr(geometry, "visual", None)
        if isinstance(visual, TextureVisuals) and visual.material is not None:
            materials.add(id(visual.material))
        else:
            plain = True  # geometry without a material shares the default one
    parents: dict[str, str] = dict(scene.graph.transforms.parents)
    depths: dict[str, int] = {}

    def depth(node: str) -> int:
        # iterative: a deep hierarchy must not hit Python's recursion limit
        chain = []
        while node not in depths and node in parents:
            chain.append(node)
            node = parents[node]
        known = depths.get(node, 0)
        for child in reversed(chain):
            known += 1
            depths[child] = known
        return known  # the last one set is the first node's

    nodes = list(scene.graph.nodes)
    return InputStatistics(
        meshes=len(meshes),
        faces=sum(faces),
        vertices=sum(len(g.vertices) for g in meshes),
        materials=len(materials) + int(plain),
        faces_smallest_mesh=min(faces, default=0),
        faces_biggest_mesh=max(faces, default=0),
        nodes=len(nodes),
        mesh_usages=len(scene.graph.nodes_geometry),
        max_node_depth=max((depth(str(n)) for n in nodes), default=0),
        points=sum(len(g.vertices) for g in meshes if not (isinstance(g, trimesh.Trimesh) and len(g.faces))),
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
        _drop_specular_glossiness(glb)
        # textures stay referenced by their paths relative to the FBX file: resolve them there
        return _read_trimesh(glb, display, settings, info, resolve_beside=path)


def _drop_specular_glossiness(glb: Path) -> None:
    """Keep only the metallic-roughness description of assimp's materials.

    assimp describes FBX's Phong materials twice, also as KHR_materials_pbrSpecularGlossiness; trimesh prefers that
    one and bakes the specular colour into the base-colour texture, which washes it out.
    """
    import pygltflib  # type: ignore[import-untyped]

    gltf = pygltflib.GLTF2().load_binary(str(glb))
    extension = "KHR_materials_pbrSpecularGlossiness"
    if extension not in (gltf.extensionsUsed or []):
        return
    for material in gltf.materials:
        if isinstance(material.extensions, dict):
            material.extensions.pop(extension, None)
    gltf.extensionsUsed = [name for name in gltf.extensionsUsed if name != extension]
    gltf.save_binary(str(glb))


def _assimp_reason(output: str) -> str:
    errors = [line.removeprefix("ERROR:").strip() for line in output.splitlines() if line.startswith("ERROR")]
    reason = errors[-1] if errors else (output.strip().splitlines() or ["assimp failed without a message"])[-1]
    return reason.replace("Failed to load file: ", "")[:300]


# --- point clouds ---------------------------------------------------------------------------------------------


def _read_point_cloud(path: Path, display: str, extension: str, settings: ConversionSettings) -> SourceModel:
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
        rgb = _to_linear(colors) if settings.gamma_to_linear_vertex else np.clip(colors, 0.0, 1.0)
        rgba[:, :3] = rgb
    part = Part(positions, np.zeros((n, 3), dtype=np.float32), rgba, None, None, None)
    info = InputInfo(extension, FORMAT_NAMES[extension], version, generator)
    statistics = InputStatistics(1, 0, n, 0, 0, 0, 1, 1, 0, points=n)
    return SourceModel([part], info, statistics, point_cloud=True)


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
