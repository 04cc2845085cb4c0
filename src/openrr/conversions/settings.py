"""`<modelName>.ConversionSettings.json`: ARR's per-model conversion settings, validated like its JSON schema.

The schema has `additionalProperties: false`, so an unknown key is an error, as are wrong types and enum values;
every message names the file and the key. Some defaults depend on the input format (gamma for FBX and point
clouds), so parsing takes the format into account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

LEGACY_NAME = "conversionSettings.json"
SUFFIX = ".ConversionSettings.json"

AxisName = Literal["default", "+x", "-x", "+y", "-y", "+z", "-z"]
DEFAULT_AXES: tuple[AxisName, AxisName, AxisName] = ("+x", "+y", "+z")
# ARR applies only these to point clouds; the others are accepted and recorded but have no effect there
POINT_CLOUD_KEYS = frozenset({"scaling", "recenterToOrigin", "axis", "gammaToLinearVertex", "generateCollisionMesh"})
# formats whose colours ARR takes to be in gamma space unless told otherwise (the reference's table), and OBJ and
# STL, which ARR does not read: openrr reads their colours as sRGB display values, as three.js's loaders do
GAMMA_MATERIAL_FORMATS = frozenset({".fbx", ".e57", ".ply", ".las", ".laz", ".xyz", ".obj"})
GAMMA_VERTEX_FORMATS = frozenset({".fbx", ".e57", ".ply", ".las", ".laz", ".xyz", ".obj", ".stl"})

NormalFormat = Literal["8_8_8_8_SIGNED_NORMALIZED", "16_16_16_16_FLOAT", "NONE", "AUTO"]
TexcoordFormat = Literal["32_32_FLOAT", "16_16_FLOAT", "NONE"]
ColorFormat = Literal["8_8_8_8_UNSIGNED_NORMALIZED", "NONE"]


class SettingsError(ValueError):
    """The settings file is not valid JSON or breaks the schema; the message names the file and the key."""


class _Strict(BaseModel):
    # strict: "true" is not a bool and 1 is not a string, as in JSON schema; extra="forbid" is additionalProperties
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class VertexFormat(_Strict):
    position: Literal["32_32_32_FLOAT", "16_16_16_16_FLOAT"] = "32_32_32_FLOAT"
    color0: ColorFormat = "8_8_8_8_UNSIGNED_NORMALIZED"
    color1: ColorFormat = "NONE"
    normal: NormalFormat = "8_8_8_8_SIGNED_NORMALIZED"
    tangent: NormalFormat = "8_8_8_8_SIGNED_NORMALIZED"
    binormal: NormalFormat = "8_8_8_8_SIGNED_NORMALIZED"
    texcoord0: TexcoordFormat = "32_32_FLOAT"
    texcoord1: TexcoordFormat = "32_32_FLOAT"


class ConversionSettings(_Strict):
    """The settings in force for one conversion (file values over the format's defaults)."""

    scaling: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    recenter_to_origin: bool = Field(False, alias="recenterToOrigin")
    opaque_material_default_sidedness: Literal["SingleSided", "DoubleSided"] = Field(
        "DoubleSided", alias="opaqueMaterialDefaultSidedness"
    )
    material_override: str = Field("", alias="material-override")
    gamma_to_linear_material: bool = Field(False, alias="gammaToLinearMaterial")
    gamma_to_linear_vertex: bool = Field(False, alias="gammaToLinearVertex")
    scene_graph_mode: Literal["none", "static", "dynamic"] = Field("dynamic", alias="sceneGraphMode")
    generate_collision_mesh: bool = Field(True, alias="generateCollisionMesh")
    unlit_materials: bool = Field(False, alias="unlitMaterials")
    deduplicate_materials: bool = Field(True, alias="deduplicateMaterials")
    fbx_assume_metallic: bool = Field(True, alias="fbxAssumeMetallic")
    axis: Annotated[list[AxisName], Field(min_length=3, max_length=3)] = Field(default_factory=lambda: [*DEFAULT_AXES])
    vertex: VertexFormat = Field(default_factory=VertexFormat)
    metadata_keys: list[str] = Field(default_factory=list, alias="metadataKeys")

    @property
    def double_sided(self) -> bool:
        return self.opaque_material_default_sidedness == "DoubleSided"

    def axis_matrix(self) -> npt.NDArray[np.float64]:
        """3×3 signed permutation: output axis i = sign × the input axis named at position i."""
        matrix = np.zeros((3, 3), dtype=np.float64)
        for row, given in enumerate(self.axis):
            name = DEFAULT_AXES[row] if given == "default" else given
            matrix[row, "xyz".index(name[1])] = 1.0 if name[0] == "+" else -1.0
        return matrix

    def as_json(self) -> dict[str, Any]:
        """With ARR's key names, as recorded in info.json."""
        return self.model_dump(by_alias=True, mode="json")


def for_format(extension: str, document: dict[str, Any] | None = None, source: str = "settings") -> ConversionSettings:
    """Validate `document` (a parsed settings file, or None for none) for an input of `extension` (".fbx")."""
    extension = extension.lower()
    # the format's defaults first: what the file says wins
    values = {
        "gammaToLinearMaterial": extension in GAMMA_MATERIAL_FORMATS,
        "gammaToLinearVertex": extension in GAMMA_VERTEX_FORMATS,
        **(document or {}),
    }
    try:
        settings = ConversionSettings.model_validate(values)
    except ValidationError as e:
        raise SettingsError(_describe(e, source)) from None
    resolved = [DEFAULT_AXES[i] if name == "default" else name for i, name in enumerate(settings.axis)]
    if len({name[1] for name in resolved}) != 3:
        raise SettingsError(
            f"{source}: 'axis' must name each of x, y and z once (with a sign, or 'default' for the file's own), "
            f"got {settings.axis}"
        )
    return settings


def find_settings_file(input_dir: Path, relative_input: str) -> Path | None:
    """`<modelName>.ConversionSettings.json` beside the model, else the legacy `conversionSettings.json` there."""
    model = PurePosixPath(relative_input)
    folder = input_dir.joinpath(*model.parent.parts)
    for name in (model.stem + SUFFIX, LEGACY_NAME):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class SettingsFile:
    settings: ConversionSettings
    display: str
    """The file's path in the input container."""
    keys: frozenset[str]
    """The keys the file sets, by ARR's names."""


def parse_settings_file(path: Path, display: str, extension: str) -> SettingsFile:
    """Read and validate a settings file; `display` names it in messages (its path in the input container)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # editors on Windows like to start JSON with a BOM
    except UnicodeDecodeError as e:
        raise SettingsError(f"{display} is not UTF-8 text: {e}") from None
    except OSError as e:
        raise SettingsError(f"cannot read {display}: {e.strerror or e}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise SettingsError(f"{display} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{display} must hold a JSON object, got {type(document).__name__}")
    return SettingsFile(for_format(extension, document, display), display, frozenset(document))


def ignored_for_point_clouds(keys: frozenset[str]) -> list[str]:
    """Keys set in a settings file that ARR does not apply to point clouds."""
    return sorted(keys - POINT_CLOUD_KEYS)


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown setting '{where}'")
        else:
            problems.append(f"'{where}': {item['msg']} (got {json.dumps(item['input'])})")
    hint = ""
    if any(item["type"] == "extra_forbidden" and len(item["loc"]) == 1 for item in error.errors()):
        allowed = ", ".join(sorted(field.alias or name for name, field in ConversionSettings.model_fields.items()))
        hint = f"; allowed settings are {allowed}"
    return f"{source}: " + "; ".join(problems) + hint
