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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

import openrr
from openrr.conversions.formats import (
    FORMAT_NAMES,
    InputError,
    Part,
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
from openrr.model.mesh import MeshData, ModelData
from openrr.model.raycast import TriangleChunks, triangle_chunks
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

    offset = _transform(source.parts, settings)
    report(0.6)
    model = _merged_model(PurePosixPath(relative_input).name, source, settings)
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


def _transform(parts: list[Part], settings: ConversionSettings) -> np.ndarray:
    """Scale, remap axes and recenter every part in place; returns the recentering offset that was added."""
    axes = settings.axis_matrix()
    linear = axes * settings.scaling
    mirrored = np.linalg.det(axes) < 0
    identity = np.array_equal(linear, np.eye(3))
    for part in parts:
        if not identity:
            part.positions = part.positions @ linear.T
        if not np.array_equal(axes, np.eye(3)):
            # a signed permutation is orthonormal: normals turn with it and stay unit length
            part.normals = (part.normals @ axes.T.astype(np.float32)).astype(np.float32)
        if mirrored and part.indices is not None:
            # a mirroring remap turns counter-clockwise triangles clockwise: swap two corners back
            part.indices = np.ascontiguousarray(part.indices[:, [0, 2, 1]])
    offset = np.zeros(3, dtype=np.float64)
    if settings.recenter_to_origin:
        low = np.min([p.positions.min(axis=0) for p in parts], axis=0)
        high = np.max([p.positions.max(axis=0) for p in parts], axis=0)
        offset = -(low + high) / 2.0
        for part in parts:
            part.positions = part.positions + offset
    return offset


def _merged_model(name: str, source: SourceModel, settings: ConversionSettings) -> ModelData:
    """One mesh per material (texture), triangles and points apart: fewer, larger buffers draw faster."""
    groups: dict[tuple[bool, str | None], list[Part]] = {}
    textures: dict[str, np.ndarray] = {}
    for part in source.parts:
        key = None
        if part.texture is not None and part.uvs is not None:
            if settings.deduplicate_materials:
                key = hashlib.blake2b(np.ascontiguousarray(part.texture).data, digest_size=16).hexdigest()
            else:
                key = f"part-{id(part)}"
            textures.setdefault(key, part.texture)
        groups.setdefault((part.indices is not None, key), []).append(part)
    meshes = [_merge(parts, textures.get(key or ""), settings) for (_, key), parts in groups.items()]
    lows = np.min([p.positions.min(axis=0) for p in source.parts], axis=0)
    highs = np.max([p.positions.max(axis=0) for p in source.parts], axis=0)
    return ModelData(
        name=name,
        meshes=meshes,
        bounds_min=lows.astype(np.float32),
        bounds_max=highs.astype(np.float32),
        triangles=sum(len(m.indices) for m in meshes if m.indices is not None),
        points=sum(len(m.positions) for m in meshes if m.indices is None),
    )


def _merge(parts: list[Part], texture: np.ndarray | None, settings: ConversionSettings) -> MeshData:
    triangles = parts[0].indices is not None
    counts = [len(p.positions) for p in parts]
    starts = np.cumsum([0, *counts[:-1]])
    indices = None
    if triangles:
        indices = np.concatenate(
            [p.indices + np.uint32(start) for p, start in zip(parts, starts, strict=True) if p.indices is not None]
        ).astype(np.uint32, copy=False)
    uvs = None
    if texture is not None:
        uvs = np.concatenate([p.uvs for p in parts if p.uvs is not None]).astype(np.float32, copy=False)
    return MeshData(
        positions=np.concatenate([p.positions for p in parts]).astype(np.float32),
        normals=np.concatenate([p.normals for p in parts]).astype(np.float32, copy=False),
        colors=np.concatenate([p.colors for p in parts]).astype(np.float32, copy=False),
        indices=indices,
        uvs=uvs,
        texture=texture,
        # sidedness means nothing to points
        double_sided=settings.double_sided or not triangles,
        unlit=settings.unlit_materials,
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
