"""The converter: one model file (+ its textures and settings) in a local directory → an .arrAsset beside reports.

`convert` never raises for bad input. Every failure becomes a Failed outcome with an ARR error code and a message
that says what went wrong and in which file; `<name>.result.json` is written whatever happens. Error codes, from
those the reference names for conversions:

- `ConversionProcessFailed`: the input is at fault: model file missing, unsupported extension, corrupt or empty
  file, invalid settings file (ARR reports a missing input with this code too).
- `InternalServerError`: this server is at fault: a tool the format needs is not installed, the output cannot be
  written, or an unexpected exception (logged with its traceback).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np

import openrr
from openrr.conversions.formats import (
    FORMAT_NAMES,
    LINEARISED_MATERIAL,
    LINEARISED_VERTEX,
    SIDEDNESS_FORMATS,
    InputError,
    SourceModel,
    ToolMissingError,
    extension_of,
    read_source,
)
from openrr.conversions.report import (
    SETTING_IGNORED,
    ConversionWarning,
    OutputStatistics,
    info_document,
    result_document,
)
from openrr.conversions.settings import (
    ConversionSettings,
    SettingsError,
    find_settings_file,
    for_format,
    ignored_for_point_clouds,
    parse_settings_file,
)
from openrr.model.arrasset import write_asset
from openrr.model.colour import srgb_to_linear
from openrr.model.mesh import ImageData, Material, MeshData, ModelData, TextureRef
from openrr.model.raycast import TriangleChunks, triangle_chunks
from openrr.model.scene_graph import apply_scene_graph_mode
from openrr.util.atomic import write_atomic
from openrr.util.progress import MonotonicProgress

logger = logging.getLogger(__name__)

ASSET_SUFFIX = ".arrAsset"
INPUT_FAILED = "ConversionProcessFailed"
INTERNAL = "InternalServerError"
TOOL_VERSION = f"openrr {openrr.__version__}"


@dataclass(frozen=True)
class ConversionOutcome:
    succeeded: bool
    error_code: str | None
    """ARR error code when failed: ConversionProcessFailed (the input's fault) or InternalServerError (ours)."""
    error_message: str | None
    """What went wrong and in which file, naming files by their path in the input container."""
    warnings: list[str]
    """Each warning's message, as in result.json."""
    output_files: list[str]
    """Files written into output_dir, relative, `/`-separated; the result.json always among them."""


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def convert(
    input_dir: Path,
    relative_input: str,
    output_dir: Path,
    output_asset_name: str,
    progress: Callable[[float], None] | None = None,
) -> ConversionOutcome:
    """Convert `input_dir/relative_input` into `output_dir/output_asset_name` (e.g. "model.arrAsset")."""
    report = MonotonicProgress(progress)
    report(0.0)
    started = time.perf_counter()
    warnings: list[ConversionWarning] = []
    base = _base_name(output_asset_name)
    if not _is_relative(output_asset_name):
        # the report still goes into output_dir, under the bare file name
        base = _base_name(PurePosixPath(output_asset_name.replace("\\", "/")).name)
    result_name = f"{base}.result.json"
    try:
        written = _convert(input_dir, relative_input, output_dir, output_asset_name, base, warnings, report)
        error: tuple[str, str, str] | None = None
    except _Failure as failure:
        written, error = [], (failure.code, _title(failure.code), failure.message)
    except Exception as e:
        logger.exception("converting %s failed unexpectedly", relative_input)
        # the work directories mean nothing to the user
        reason = repr(e).replace(str(input_dir), "<input>").replace(str(output_dir), "<output>")
        written, error = (
            [],
            (INTERNAL, _title(INTERNAL), f"unexpected error converting {relative_input}: {reason}"[:500]),
        )
    if error is not None:
        _remove_outputs(output_dir, output_asset_name, base)
    try:
        write_atomic(output_dir / result_name, result_document(uuid.uuid4().hex, warnings, error))
    except OSError as e:
        # nowhere to say it but here: the caller sees the outcome, the output container sees nothing
        logger.error("cannot write %s: %s", result_name, e)
        message = f"cannot write {result_name} to the output: {e.strerror or e}"
        error = error or (INTERNAL, _title(INTERNAL), message)
        _remove_outputs(output_dir, output_asset_name, base)
        written = []
    else:
        written.append(result_name)
    report(1.0)
    logger.info(
        "converted %s in %.2f s: %s",
        relative_input,
        time.perf_counter() - started,
        "failed: " + error[2] if error else f"{len(warnings)} warnings",
    )
    return ConversionOutcome(
        succeeded=error is None,
        error_code=None if error is None else error[0],
        error_message=None if error is None else error[2],
        warnings=[w.message for w in warnings],
        output_files=written,
    )


def _convert(
    input_dir: Path,
    relative_input: str,
    output_dir: Path,
    asset_name: str,
    base: str,
    warnings: list[ConversionWarning],
    report: MonotonicProgress,
) -> list[str]:
    _check_relative(asset_name, "the output asset name")
    if not asset_name.lower().endswith(ASSET_SUFFIX.lower()):
        # a session recognises an asset by its suffix: without it the output could never be loaded
        raise _Failure(INPUT_FAILED, f"the output asset name '{asset_name}' must end in {ASSET_SUFFIX}")
    _check_relative(relative_input, "the input asset path")
    display = relative_input
    extension = extension_of(relative_input)
    if extension not in FORMAT_NAMES:
        shown = f"'{extension}'" if extension else "(no extension)"
        raise _Failure(
            INPUT_FAILED, f"unsupported input format {shown} for {display}: supported are {', '.join(FORMAT_NAMES)}"
        )
    source_path = input_dir.joinpath(*PurePosixPath(relative_input).parts)
    if not source_path.is_file():
        raise _Failure(INPUT_FAILED, _not_found(input_dir, relative_input))

    settings_path = find_settings_file(input_dir, relative_input)
    settings_file = None
    try:
        if settings_path is None:
            settings = for_format(extension)
        else:
            settings_display = settings_path.relative_to(input_dir).as_posix()
            settings_file = parse_settings_file(settings_path, settings_display, extension)
            settings = settings_file.settings
    except SettingsError as e:
        raise _Failure(INPUT_FAILED, str(e)) from None
    report(0.05)

    try:
        source = read_source(source_path, display, settings)
    except InputError as e:
        raise _Failure(INPUT_FAILED, str(e)) from None
    except ToolMissingError as e:
        raise _Failure(INTERNAL, str(e)) from None
    warnings.extend(source.warnings)
    if source.point_cloud and settings_file is not None:
        ignored = ignored_for_point_clouds(settings_file.keys)
        if ignored:
            warnings.append(
                ConversionWarning.of(
                    SETTING_IGNORED,
                    f"{', '.join(ignored)} in {settings_file.display} do not apply to point clouds: not applied",
                    settings=ignored,
                )
            )
    report(0.5)

    offset = _transform(source, settings)
    model = source.model
    name = PurePosixPath(relative_input).name
    model.name = name
    if model.nodes:
        model.nodes[0].name = name
    report(0.6)
    _apply_colour_settings(model, extension, settings, source.point_cloud)
    model = apply_scene_graph_mode(model, settings.scene_graph_mode)
    model = _merged(model, settings.deduplicate_materials)
    report(0.7)
    model.collision = _collision(model) if settings.generate_collision_mesh else TriangleChunks.empty()
    report(0.85)

    info_name = f"{base}.info.json"
    try:
        size = write_asset(
            output_dir / asset_name,
            model,
            {"source": relative_input, "converter": TOOL_VERSION, "settings": settings.as_json()},
        )
        report(0.95)
        statistics = OutputStatistics(
            mesh_parts=len(model.meshes),
            recentering_offset=(float(offset[0]), float(offset[1]), float(offset[2])),
            bounds_min=_triple(model.bounds_min),
            bounds_max=_triple(model.bounds_max),
            triangles=model.triangles,
            points=model.points,
            vertices=sum(len(m.positions) for m in model.meshes),
            asset_bytes=size,
        )
        info = info_document(
            relative_input,
            asset_name,
            settings.as_json(),
            source.info,
            source.statistics,
            statistics,
            TOOL_VERSION,
            _conversion_hash(source_path, settings),
        )
        write_atomic(output_dir / info_name, info)
    except OSError as e:
        raise _Failure(INTERNAL, f"cannot write the converted asset to the output: {e.strerror or e}") from None
    return [asset_name, info_name]


def _transform(source: SourceModel, settings: ConversionSettings) -> np.ndarray:
    """Scale, remap axes and recenter the model in place; returns the recentering offset that was added.

    Positions are in the model's rest pose, so the same affine map goes onto the root node's local transform:
    every node's rest world then still places its part where its geometry is."""
    model = source.model
    axes = settings.axis_matrix()
    linear = axes * settings.scaling
    mirrored = np.linalg.det(axes) < 0
    same_linear = np.array_equal(linear, np.eye(3))
    moved: dict[int, np.ndarray] = {}
    for index, mesh in enumerate(model.meshes):
        precise = source.precise.get(index)
        if precise is None and same_linear and not settings.recenter_to_origin:
            continue
        positions = mesh.positions.astype(np.float64) if precise is None else precise
        moved[index] = positions if same_linear else positions @ linear.T
    offset = np.zeros(3, dtype=np.float64)
    if settings.recenter_to_origin:
        every = [moved.get(i, m.positions) for i, m in enumerate(model.meshes)]
        low = np.min([p.min(axis=0) for p in every], axis=0)
        high = np.max([p.max(axis=0) for p in every], axis=0)
        offset = -(low + high) / 2.0
    for index, positions in moved.items():
        model.meshes[index].positions = (positions + offset).astype(np.float32)
    if not np.array_equal(axes, np.eye(3)):
        # a signed permutation is orthonormal: normals and tangents turn with it and stay unit length
        turn = axes.T.astype(np.float32)
        for mesh in model.meshes:
            mesh.normals = (mesh.normals @ turn).astype(np.float32)
            if mesh.tangents is not None:
                sign = mesh.tangents[:, 3:] * np.float32(-1.0 if mirrored else 1.0)
                mesh.tangents = np.hstack([mesh.tangents[:, :3] @ turn, sign]).astype(np.float32)
            if mirrored and mesh.indices is not None:
                # a mirroring remap turns counter-clockwise triangles clockwise: swap two corners back
                mesh.indices = np.ascontiguousarray(mesh.indices[:, [0, 2, 1]])
    if model.nodes and (not same_linear or offset.any()):
        affine = np.identity(4)
        affine[:3, :3] = linear
        affine[:3, 3] = offset
        model.nodes[0].local = affine @ np.asarray(model.nodes[0].local, dtype=np.float64)
    model.bounds_min = np.min([m.positions.min(axis=0) for m in model.meshes], axis=0).astype(np.float32)
    model.bounds_max = np.max([m.positions.max(axis=0) for m in model.meshes], axis=0).astype(np.float32)
    return offset


def _apply_colour_settings(model: ModelData, extension: str, settings: ConversionSettings, point_cloud: bool) -> None:
    """gammaToLinearMaterial/Vertex, unlitMaterials and opaqueMaterialDefaultSidedness on the model's materials
    and vertex colours (point clouds: gammaToLinearVertex only, as in ARR). Where the reader already made colours
    linear (it reads them as sRGB display values), a setting of false takes them back to the file's values."""
    material = _gamma_step(extension in LINEARISED_MATERIAL, settings.gamma_to_linear_material)
    vertex = _gamma_step(extension in LINEARISED_VERTEX, settings.gamma_to_linear_vertex)
    for index, m in enumerate([] if point_cloud else model.materials):
        changes: dict[str, object] = {}
        if material is not None:
            r, g, b = (float(c) for c in material(m.base_color[:3]))
            changes["base_color"] = (r, g, b, m.base_color[3])
            er, eg, eb = (float(c) for c in material(m.emissive))
            changes["emissive"] = (er, eg, eb)
        if settings.unlit_materials:
            changes["unlit"] = True
        if extension not in SIDEDNESS_FORMATS:
            changes["double_sided"] = settings.double_sided
        model.materials[index] = replace(m, **changes)  # type: ignore[arg-type]
    if vertex is not None:
        for mesh in model.meshes:
            colors = np.asarray(mesh.colors, dtype=np.float32)
            if not np.all(colors[:, :3] == 1.0):  # white is white in both encodings
                mesh.colors = np.column_stack((vertex(colors[:, :3]), colors[:, 3])).astype(np.float32)


def _gamma_step(linearised: bool, wanted: bool) -> Callable[[object], np.ndarray] | None:
    if linearised == wanted:
        return None
    return srgb_to_linear if wanted else _srgb_encode  # type: ignore[return-value]


def _srgb_encode(values: object) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), the inverse of colour.srgb_to_linear."""
    c = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055).astype(np.float32)


def _merged(model: ModelData, deduplicate: bool) -> ModelData:
    """Primitives of one node with one material merged into one mesh (triangles and points apart): fewer, larger
    buffers draw faster, and every part keeps its own geometry. `deduplicate`: identical images, then identical
    materials, become one first, so that more primitives merge."""
    if deduplicate:
        _deduplicate(model)
    groups: dict[tuple[int, int, bool, bool, bool, bool], list[MeshData]] = {}
    for mesh in model.meshes:
        key = (
            mesh.node,
            mesh.material,
            mesh.indices is not None,
            mesh.uvs is not None,
            mesh.uvs1 is not None,
            mesh.tangents is not None,
        )
        groups.setdefault(key, []).append(mesh)
    model.meshes = [group[0] if len(group) == 1 else _merge(group) for group in groups.values()]
    model.triangles = sum(len(m.indices) for m in model.meshes if m.indices is not None)
    model.points = sum(len(m.positions) for m in model.meshes if m.indices is None)
    return model


def _deduplicate(model: ModelData) -> None:
    image_of: dict[tuple[tuple[int, ...], str], int] = {}
    image_map: list[int] = []
    images: list[ImageData] = []
    for image in model.images:
        pixels = (
            image.pixels.shape,
            hashlib.blake2b(np.ascontiguousarray(image.pixels).data, digest_size=16).hexdigest(),
        )
        if pixels not in image_of:
            image_of[pixels] = len(images)
            images.append(image)
        image_map.append(image_of[pixels])
    material_of: dict[str, int] = {}
    material_map: list[int] = []
    materials: list[Material] = []
    for material in model.materials:
        remapped = _remap_images(material, image_map)
        key = repr(replace(remapped, name=""))  # names differ between copies of one material
        if key not in material_of:
            material_of[key] = len(materials)
            materials.append(remapped)
        material_map.append(material_of[key])
    model.images, model.materials = images, materials
    for mesh in model.meshes:
        mesh.material = material_map[mesh.material]


def _remap_images(material: Material, image_map: list[int]) -> Material:
    def ref(texture: TextureRef | None) -> TextureRef | None:
        return None if texture is None else replace(texture, image=image_map[texture.image])

    return replace(
        material,
        base_color_texture=ref(material.base_color_texture),
        metallic_roughness_texture=ref(material.metallic_roughness_texture),
        normal_texture=ref(material.normal_texture),
        occlusion_texture=ref(material.occlusion_texture),
        emissive_texture=ref(material.emissive_texture),
    )


def _merge(meshes: list[MeshData]) -> MeshData:
    first = meshes[0]
    starts = np.cumsum([0, *(len(m.positions) for m in meshes[:-1])])
    indices = None
    if first.indices is not None:
        indices = np.concatenate(
            [m.indices + np.uint32(start) for m, start in zip(meshes, starts, strict=True) if m.indices is not None]
        ).astype(np.uint32, copy=False)

    def joined(field: str, width: int) -> np.ndarray | None:
        if getattr(first, field) is None:
            return None
        parts = [np.broadcast_to(np.asarray(getattr(m, field), np.float32), (len(m.positions), width)) for m in meshes]
        return np.concatenate(parts).astype(np.float32, copy=False)

    return MeshData(
        positions=np.concatenate([m.positions for m in meshes]).astype(np.float32, copy=False),
        normals=np.concatenate([m.normals for m in meshes]).astype(np.float32, copy=False),
        colors=joined("colors", 4),  # type: ignore[arg-type]
        indices=indices,
        uvs=joined("uvs", 2),
        uvs1=joined("uvs1", 2),
        tangents=joined("tangents", 4),
        material=first.material,
        node=first.node,
    )


def _collision(model: ModelData) -> TriangleChunks:
    chunks = triangle_chunks(model)
    triangle_meshes = [m for m in model.meshes if m.indices is not None]
    if len(triangle_meshes) == 1 and chunks.positions is triangle_meshes[0].positions:
        # draw in the ray caster's order too (any order draws the same picture): the asset then stores one
        # index buffer for both, and a session that loads it holds one copy
        triangle_meshes[0].indices = chunks.corners
    return chunks


def _conversion_hash(source: Path, settings: ConversionSettings) -> str:
    """Same model file, same settings, same converter → same hash."""
    digest = hashlib.blake2b(digest_size=16)
    with source.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    digest.update(settings.model_dump_json(by_alias=True).encode())
    digest.update(TOOL_VERSION.encode())
    return digest.hexdigest()


def _base_name(asset_name: str) -> str:
    name = asset_name
    if name.lower().endswith(ASSET_SUFFIX.lower()):
        name = name[: -len(ASSET_SUFFIX)]
    return name or "output"


def _is_relative(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def _check_relative(name: str, what: str) -> None:
    if not _is_relative(name):
        raise _Failure(INPUT_FAILED, f"{what} '{name}' must be a relative path inside its container without '..'")


def _not_found(input_dir: Path, relative_input: str) -> str:
    folder = PurePosixPath(relative_input).parent
    here = input_dir.joinpath(*folder.parts)
    where = "the input container" if str(folder) == "." else f"'{folder}/' in the input container"
    try:
        nearby = sorted(p.name for p in here.iterdir() if p.is_file() and extension_of(p.name) in FORMAT_NAMES)
    except OSError:
        nearby = []
    hint = f"; models there: {', '.join(nearby[:10])}" if nearby else ""
    return f"input asset '{relative_input}' was not found in {where}{hint}"


def _remove_outputs(output_dir: Path, asset_name: str, base: str) -> None:
    """A failed conversion leaves no asset behind, not even one from an earlier run under the same name."""
    if not _is_relative(asset_name) or not asset_name.lower().endswith(ASSET_SUFFIX.lower()):
        return  # not a name this converter writes: whatever it is, it is not ours to delete
    for name in (asset_name, f"{base}.info.json"):
        with contextlib.suppress(OSError):
            (output_dir / name).unlink()


def _title(code: str) -> str:
    return "Conversion failed" if code == INPUT_FAILED else "Internal error"


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])
