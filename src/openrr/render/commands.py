"""The commands a client sends over the session's WebSocket (docs/render-protocol.md, "Commands"), one pydantic
model each, parsed as one union discriminated by `type`.

Every field type here checks its JSON value itself and says, in the client's terms, what it must be: a number is an
int or a float, never a bool; vectors are arrays of finite numbers. Unknown fields are ignored. The models are also
the source of the protocol document's command table (`markdown_table`, checked by tests/unit/test_render_commands.py;
`python -m openrr.render.commands docs/render-protocol.md` rewrites it).
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from openrr.protocol.render import MAX_CUT_PLANES
from openrr.render.lighting import MAX_LIGHTS

logger = logging.getLogger(__name__)

BAD_REQUEST = "BadRequest"
FORBIDDEN = "Forbidden"
MODEL_LOAD_FAILED = "ModelLoadFailed"
ENVIRONMENT_LOAD_FAILED = "EnvironmentLoadFailed"
INTERNAL_ERROR = "InternalError"
"""A command failed on a bug of the server's own (logged there): not the client's fault, and not BadRequest."""
MIN_STREAM = (16, 16)
MAX_STREAM = (3840, 2160)
_W, _H = (f"{lo} .. {hi}" for lo, hi in zip(MIN_STREAM, MAX_STREAM, strict=True))


class CommandError(Exception):
    """A declared refusal of a command, answered to the client with `code` (e.g. an entity that is not loaded)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- field types: each validates the raw JSON value and names what it must be ----------------------------------

T = TypeVar("T")


def _checked(convert: Callable[[Any], T | None], must_be: str) -> PlainValidator:
    """A validator that takes the value `convert` returns, or refuses with "'field' must be <must_be>"."""

    def validate(value: Any) -> T:
        converted = convert(value)
        if converted is None:
            raise PydanticCustomError("invalid_field", "must be " + must_be, {"input": repr(value)[:40]})
        return converted

    return PlainValidator(validate)


def _number(v: Any, finite: bool = True) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or (finite and not math.isfinite(v)):
        return None
    return float(v)


def _numbers(n: int, lo: float = -math.inf, hi: float = math.inf) -> Callable[[Any], tuple[float, ...] | None]:
    def convert(v: Any) -> tuple[float, ...] | None:
        if not isinstance(v, list) or len(v) != n:
            return None
        out = tuple(_number(x) for x in v)
        return out if all(x is not None and lo <= x <= hi for x in out) else None  # type: ignore[return-value]

    return convert


def _in_range(lo: float, hi: float) -> Callable[[Any], float | None]:
    def convert(v: Any) -> float | None:
        x = _number(v)
        return x if x is not None and lo <= x <= hi else None

    return convert


def _positive(v: Any) -> float | None:
    x = _number(v)
    return x if x is not None and x > 0.0 else None


def _nullable(convert: Callable[[Any], T | None], must_be: str) -> PlainValidator:
    """As `_checked`, and null is a value of its own (None: "the default"; left out, the field keeps its default
    too, which the handler tells apart with `model_fields_set`)."""
    checked = _checked(convert, must_be).func
    return PlainValidator(lambda v: None if v is None else checked(v))  # type: ignore[call-arg]


def _int(v: Any, lo: float = -math.inf, hi: float = math.inf) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi else None


Int = Annotated[int, _checked(_int, "an integer")]
CommandId = Annotated[int, _checked(lambda v: _int(v, 0), "a non-negative integer")]
SomeNumber = Annotated[float | None, _checked(_number, "a number")]
AnyNumber = Annotated[float, _checked(lambda v: _number(v, finite=False), "a number")]
Text = Annotated[str, _checked(lambda v: v if isinstance(v, str) and v else None, "a non-empty string")]
Bool = Annotated[bool, _checked(lambda v: v if isinstance(v, bool) else None, "true or false")]
VEC3 = "an array of 3 numbers"
MATRIX = "an array of 16 numbers (4x4, row-major)"
Vec3 = Annotated[tuple[float, float, float], _checked(_numbers(3), VEC3)]
Matrix = Annotated[tuple[float, ...], _checked(_numbers(16), MATRIX)]
# Left out: None. Sent as null: refused, as before the models (null is not "unchanged" for these).
SomeVec3 = Annotated[tuple[float, float, float] | None, _checked(_numbers(3), VEC3)]
SomeMatrix = Annotated[tuple[float, ...] | None, _checked(_numbers(16), MATRIX)]
Rgba = Annotated[tuple[float, ...], _checked(_numbers(4, 0.0, 1.0), "an array of 4 numbers between 0 and 1 (RGBA)")]
SomeFovY = Annotated[float | None, _checked(_in_range(1.0, 170.0), "a number between 1 and 170 (degrees)")]
Width = Annotated[int, _checked(lambda v: _int(v, MIN_STREAM[0], MAX_STREAM[0]), f"an integer within {_W}")]
Height = Annotated[int, _checked(lambda v: _int(v, MIN_STREAM[1], MAX_STREAM[1]), f"an integer within {_H}")]
INHERIT = "inherit"
# null: left as it is, as before overrides had "inherit"
Flag = Annotated[
    bool | Literal["inherit"] | None,
    _nullable(lambda v: v if isinstance(v, bool) or v == INHERIT else None, 'true, false or "inherit"'),
]
Tint = Annotated[
    tuple[float, ...] | Literal["inherit"] | None,
    _nullable(
        lambda v: INHERIT if v == INHERIT else _numbers(4, 0.0, 1.0)(v),
        'an array of 4 numbers between 0 and 1 (RGBA), or "inherit"',
    ),
]
Index = Annotated[int, _checked(lambda v: _int(v, 0), "a non-negative integer")]
Limit = Annotated[int, _checked(lambda v: _int(v, 1, 1000), "an integer within 1 .. 1000")]
Unit = Annotated[float | None, _checked(_in_range(0.0, 1.0), "a number between 0 and 1")]
NonNegative = Annotated[float | None, _checked(_in_range(0.0, math.inf), "a number >= 0")]
Positive = Annotated[float | None, _checked(lambda v: _positive(v), "a number > 0")]
Angle = Annotated[float | None, _checked(_in_range(0.0, math.pi / 2), "a number between 0 and pi/2 (radians)")]
UnitRgba = Annotated[
    tuple[float, ...] | None, _checked(_numbers(4, 0.0, 1.0), "an array of 4 numbers between 0 and 1 (linear RGBA)")
]
NonNegativeRgb = Annotated[
    tuple[float, float, float] | None, _checked(_numbers(3, 0.0), "an array of 3 numbers >= 0 (linear RGB)")
]
NullablePositive = Annotated[float | None, _nullable(_positive, "a number > 0, or null")]
NullableText = Annotated[
    str | None, _nullable(lambda v: v if isinstance(v, str) and v else None, "a non-empty string, or null")
]
CubeUrls = Annotated[
    tuple[str, ...] | None,
    _checked(
        lambda v: (
            tuple(v) if isinstance(v, list) and len(v) == 6 and all(isinstance(u, str) and u for u in v) else None
        ),
        "an array of 6 non-empty strings (+x, -x, +y, -y, +z, -z)",
    ),
]


# --- the commands -----------------------------------------------------------------------------------------------


class Command(BaseModel):
    """`{"id": <non-negative integer, unique per connection>, "type": ..., ...}`."""

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore", frozen=True)
    mutating: ClassVar[bool] = False
    """Changes the scene: watchers may not send it."""
    stamped: ClassVar[bool] = False
    """A frame stamped with its id follows (protocol.render.STAMPED_COMMANDS): every scene change, and
    requestKeyframe."""
    result: ClassVar[str] = ""
    """What an ok result carries besides `type`, `id` and `ok` (for the protocol document)."""

    id: CommandId = 0


class LoadModel(Command):
    mutating = stamped = True
    result = (
        "`entityId`, `name`, `bounds {min,max}`, `triangles`, `points`, `meshes`, ... (+ `warnings` if this load "
        "took a Standard session over 20 million primitives, `openrr serve --standard-primitive-limit`: a "
        "checkerboard is shown until models are unloaded, as in ARR; Premium has no fixed cap)"
    )
    type: Literal["loadModel"]
    url: Text = Field(
        description="a local path or `file://` URL inside the session account's area `<local storage root>/"
        "<accountId>/`, or a path relative to it; `http(s)://` to public addresses and what `--fetch-allow` allows; "
        "blob SAS URL"
    )
    transform: SomeMatrix = Field(None, description="16 numbers, row-major 4×4, model→world")


class UnloadModel(Command):
    mutating = stamped = True
    type: Literal["unloadModel"]
    entity_id: Int


class SetTransform(Command):
    mutating = stamped = True
    type: Literal["setTransform"]
    entity_id: Int
    matrix: Matrix = Field(description="16 numbers")


class SetOverride(Command):
    mutating = stamped = True
    type: Literal["setOverride"]
    entity_id: Int = Field(
        description="any entity: the override applies to its subtree, where a descendant's own value wins"
    )
    hidden: Flag = Field(None, description='bool, or `"inherit"` to drop the entity\'s own value')
    tint: Tint = Field(
        None,
        description='[r,g,b,a] 0..1; alpha blends it over the base colour, `[0,0,0,0]` is no tint; `"inherit"`',
    )
    see_through: Flag = Field(None, description='bool or `"inherit"`')
    selected: Flag = Field(None, description='bool (outline) or `"inherit"`')


class SetCamera(Command):
    mutating = stamped = True
    type: Literal["setCamera"]
    position: SomeVec3 = Field(None, description="3 numbers")
    target: SomeVec3 = Field(None, description="3 numbers")
    up: SomeVec3 = Field(None, description="3 numbers")
    fov_y: SomeFovY = Field(None, description="degrees, 1–170")
    near: NullablePositive = Field(None, description="near plane > 0, or `null`: follow the scene's bounds (default)")
    far: NullablePositive = Field(None, description="far plane > near, or `null`: follow the scene's bounds (default)")


class CutPlane(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    normal: Vec3
    point: Vec3


class SetCutPlanes(Command):
    mutating = stamped = True
    type: Literal["setCutPlanes"]
    planes: list[CutPlane] = Field(
        max_length=MAX_CUT_PLANES,
        description=f"up to {MAX_CUT_PLANES} `{{normal, point}}`; geometry where `dot(normal, p - point) < 0` is cut "
        "away; `[]` clears",
    )


class SetStream(Command):
    mutating = stamped = True
    type: Literal["setStream"]
    width: Width = Field(description=f"{MIN_STREAM[0]}…{MAX_STREAM[0]}")
    height: Height = Field(description=f"{MIN_STREAM[1]}…{MAX_STREAM[1]}")
    fps: SomeNumber = Field(None, description="frames per second, clamped to 1–120")


class RayCast(Command):
    result = (
        "`hit`: `{entityId, name, path, modelEntityId, position, normal, distance}` or `null` (closest hit; "
        "`entityId` is the part hit, `path` its names from the model's root; hidden parts ignored)"
    )
    type: Literal["rayCast"]
    origin: Vec3
    direction: Vec3
    max_distance: AnyNumber = math.inf


class RequestKeyframe(Command):
    result = "(an H.264 client is sent a keyframe next, e.g. after a decoder error)"
    stamped = True
    type: Literal["requestKeyframe"]


class GetStats(Command):
    result = (
        "`stats`: `fps`, `frameTimeMs`, `renderTimeMs`, `encodeTimeMs`, `trianglesDrawn`, `framesSent`, "
        "`connectedClients`, `latencyMs {p50, p90}` (command received → frame sent), `renderer`, `width`, "
        "`height`, `webrtcPeers`"
    )
    type: Literal["getStats"]


class GetScene(Command):
    result = "`entities` (the models), `camera`, `environment`, `output`, `lights`"
    type: Literal["getScene"]


class GetEntity(Command):
    result = (
        "`entityId`, `name`, `parentId`, `path`, `childCount`, `local`, `world` (16 numbers each), `overrides` "
        "(its own), `effective`, `materials` (indices), `modelEntityId`"
    )
    type: Literal["getEntity"]
    entity_id: Int


class GetChildren(Command):
    result = (
        "`children`: `[{entityId, name, childCount, overrides}]` (own overrides, as getEntity has them) from "
        "`offset`, `total`"
    )
    type: Literal["getChildren"]
    entity_id: Int
    offset: Index = Field(0, description="default 0")
    limit: Limit = Field(100, description="1–1000, default 100")


class SetEntityTransform(Command):
    mutating = stamped = True
    type: Literal["setEntityTransform"]
    entity_id: Int
    local: SomeMatrix = Field(None, description="16 numbers, parent → entity")
    world: SomeMatrix = Field(None, description="16 numbers, entity → world; one of `local`, `world`")


class GetBounds(Command):
    result = "`bounds`: `{min, max}`, or `null` when the subtree has no geometry"
    type: Literal["getBounds"]
    entity_id: Int
    space: Literal["local", "world"] = Field("world", description='`"local"` or `"world"` (default)')


class GetMetadata(Command):
    result = "`metadata` (the node's properties from the source)"
    type: Literal["getMetadata"]
    entity_id: Int


class ListMaterials(Command):
    result = (
        "`materials`: `[{index, name, baseColor, metallic, roughness, emissive, emissiveStrength, alphaMode, "
        "alphaCutoff, doubleSided, unlit, textures}]` of the entity's model"
    )
    type: Literal["listMaterials"]
    entity_id: Int = Field(description="any entity of the model")


class SetMaterial(Command):
    mutating = stamped = True
    type: Literal["setMaterial"]
    entity_id: Int = Field(description="any entity of the model")
    material: Index = Field(description="index (listMaterials)")
    base_color: UnitRgba = Field(None, description="linear [r,g,b,a] 0..1")
    metallic: Unit = Field(None, description="0..1")
    roughness: Unit = Field(None, description="0..1")
    emissive: NonNegativeRgb = Field(None, description="linear [r,g,b] >= 0")
    emissive_strength: NonNegative = Field(None, description=">= 0")
    alpha_mode: Literal["OPAQUE", "MASK", "BLEND"] | None = Field(None, description="OPAQUE, MASK or BLEND")
    alpha_cutoff: Unit = Field(None, description="0..1")
    unlit: Bool | None = Field(None, description="bool")
    double_sided: Bool | None = Field(None, description="bool")


class SetEnvironment(Command):
    mutating = stamped = True
    type: Literal["setEnvironment"]
    url: NullableText = Field(
        None, description="equirectangular `.hdr`, `.png` or `.jpg`, where loadModel may read; `null`: the built-in"
    )
    cube_urls: CubeUrls = Field(None, description="6 images +x, -x, +y, -y, +z, -z")
    intensity: NonNegative = Field(None, description=">= 0, default 1")


class SetOutput(Command):
    mutating = stamped = True
    type: Literal["setOutput"]
    exposure: Positive = Field(None, description="> 0, default 1")
    tone_mapping: Literal["none", "aces", "neutral"] | None = Field(None, description="none (default), aces or neutral")
    antialiasing: Literal["none", "fxaa", "msaa"] | None = Field(None, description="none, fxaa or msaa")


class LightFields(Command):
    color: NonNegativeRgb = Field(None, description="linear [r,g,b] >= 0")
    intensity: NonNegative = Field(None, description="lux (directional) or candela")
    range: NullablePositive = Field(None, description="> 0, or `null`: infinite")
    position: SomeVec3 = None
    direction: SomeVec3 = Field(None, description="non-zero, the way the light travels")
    inner_cone_angle: Angle = Field(None, description="radians")
    outer_cone_angle: Angle = Field(None, description="radians, inner < outer <= pi/2")


class AddLight(LightFields):
    mutating = stamped = True
    result = "`lightId`"
    type: Literal["addLight"]
    kind: Literal["directional", "point", "spot"] = Field(description=f"up to {MAX_LIGHTS} lights")


class SetLight(LightFields):
    mutating = stamped = True
    type: Literal["setLight"]
    light_id: Int
    kind: Literal["directional", "point", "spot"] | None = None


class RemoveLight(Command):
    mutating = stamped = True
    type: Literal["removeLight"]
    light_id: Int


class ListLights(Command):
    result = (
        "`lights`: `[{lightId, kind, color, intensity, range, position, direction, innerConeAngle, outerConeAngle}]`"
    )
    type: Literal["listLights"]


class WebrtcOffer(Command):
    result = "`sdp`, `sdpType`: `answer`, `codec`: `H264` or `VP8` (see WebRTC below)"
    type: Literal["webrtcOffer"]
    sdp: Text = Field(description="the client's SDP offer, asking to receive one video track")
    sdp_type: Literal["offer"] = Field("offer", description='`"offer"`')
    flush: Bool = Field(False, description="bool: also repeat each picture once ~12 ms later, see WebRTC below")


class WebrtcClose(Command):
    result = "(frames come over the WebSocket again)"
    type: Literal["webrtcClose"]


COMMANDS: tuple[type[Command], ...] = (
    LoadModel, UnloadModel, SetTransform, SetOverride, SetCamera, SetCutPlanes, SetStream, RayCast,
    RequestKeyframe, GetStats, GetScene, GetEntity, GetChildren, SetEntityTransform, GetBounds, GetMetadata,
    ListMaterials, SetMaterial, SetEnvironment, SetOutput, AddLight, SetLight, RemoveLight, ListLights,
    WebrtcOffer, WebrtcClose,
)  # fmt: skip
AnyCommand = Annotated[
    LoadModel
    | UnloadModel
    | SetTransform
    | SetOverride
    | SetCamera
    | SetCutPlanes
    | SetStream
    | RayCast
    | RequestKeyframe
    | GetStats
    | GetScene
    | GetEntity
    | GetChildren
    | SetEntityTransform
    | GetBounds
    | GetMetadata
    | ListMaterials
    | SetMaterial
    | SetEnvironment
    | SetOutput
    | AddLight
    | SetLight
    | RemoveLight
    | ListLights
    | WebrtcOffer
    | WebrtcClose,
    Field(discriminator="type"),
]
PARSER: TypeAdapter[AnyCommand] = TypeAdapter(AnyCommand)
BY_TYPE: dict[str, type[Command]] = {get_args(c.model_fields["type"].annotation)[0]: c for c in COMMANDS}
MUTATING = frozenset(t for t, c in BY_TYPE.items() if c.mutating)


def parse(message: dict[str, Any], role: str) -> Command:
    """The command in `message`, checked for `role`; raises CommandError, or ValidationError for a bad field."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in BY_TYPE:
        raise CommandError(BAD_REQUEST, f"Unknown command type '{str(kind)[:40]}'.")
    if kind in MUTATING and role != "controller":  # before its fields: a watcher learns nothing from them
        raise CommandError(FORBIDDEN, "Watchers cannot change the scene.")
    command: Command = PARSER.validate_python(message)
    return command


_MUST_BE = {
    "list_type": "must be an array",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be {expected}",
    "too_long": "must have at most {max_length} items",
    "missing": "is required",
}
"""pydantic's own checks (containers, literals, lengths), said in JSON's words rather than Python's."""


def explain(error: ValidationError) -> str:
    """A ValidationError in the protocol's words, one sentence per field: "'planes[1].normal' must be an array of
    3 numbers." (the first element of each location is the command's type, which the union dispatched on)."""
    parts = []
    for e in error.errors(include_url=False):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"][1:]).lstrip(".")
        ctx = e.get("ctx", {})
        if e["type"] == "invalid_field":
            shown = ctx.get("input") if e["msg"].startswith("must be true") else None  # which word was meant
            parts.append(f"'{path}' {e['msg']}" + (f", not {shown}." if shown else "."))
        elif e["type"] in _MUST_BE:
            parts.append(f"'{path}' " + _MUST_BE[e["type"]].format(**ctx) + ".")
        else:
            parts.append(f"'{path}': {e['msg']}.")
    return " ".join(parts)


# --- answering a command ----------------------------------------------------------------------------------------

Reply = dict[str, Any]
Ctx = TypeVar("Ctx")
Handler = Callable[[Ctx, Any], Awaitable[Reply]]
"""Runs one kind of command (its model is the second argument) for a connection (`Ctx`); returns the result's
fields. Raises CommandError to refuse it; any other exception is a bug of ours."""


async def answer(
    ctx: Ctx,
    role: str,
    message: dict[str, Any],
    handlers: Mapping[type[Command], Handler[Ctx]],
    accepted: Callable[[Command], None] = lambda command: None,
) -> Reply:
    """The `result` message for `message`: parsed, checked for `role`, then run by its handler (after `accepted`).
    Only a malformed command and a CommandError are the client's to hear about as such; anything else a handler
    raises is logged with its traceback and answered as INTERNAL_ERROR, which blames nobody's input."""
    mid = message.get("id", 0)  # echoed as sent, even when it is not a valid id
    try:
        command = parse(message, role)
    except ValidationError as e:
        return _refusal(mid, BAD_REQUEST, explain(e))
    except CommandError as e:
        return _refusal(mid, e.code, e.message)
    accepted(command)
    try:
        result = await handlers[type(command)](ctx, command)
    except CommandError as e:
        return _refusal(mid, e.code, e.message)
    except Exception:
        kind = message["type"]
        logger.exception("the %s command %d failed", kind, command.id)
        return _refusal(
            mid,
            INTERNAL_ERROR,
            f"The render server failed to run this {kind} command (a fault of its own, logged there).",
        )
    return {"type": "result", "id": mid, "ok": True, **result}


def _refusal(mid: Any, code: str, message: str) -> Reply:
    return {"type": "result", "id": mid, "ok": False, "error": {"code": code, "message": message}}


# --- the protocol document's command table -----------------------------------------------------------------------

TABLE_BEGIN = "<!-- commands: generated from src/openrr/render/commands.py -->"
TABLE_END = "<!-- end of commands -->"


def _fields(command: type[Command]) -> str:
    required: list[str] = []
    optional: list[str] = []
    for name, info in command.model_fields.items():
        if name in ("id", "type"):
            continue
        text = f"`{info.alias or name}`" + (f" ({info.description})" if info.description else "")
        (required if info.is_required() else optional).append(text)
    if optional:
        required.append(("any of " if len(optional) > 1 else "optional ") + ", ".join(optional))
    return ", ".join(required)


def markdown_table() -> str:
    rows = [
        "|" + "|".join(f" {x} " if x else " " for x in (f"`{t}`", _fields(c), c.result)) + "|"
        for t, c in BY_TYPE.items()
    ]
    return "\n".join([TABLE_BEGIN, "| type | fields | result |", "|---|---|---|", *rows, TABLE_END])


def documented_table(markdown: str) -> str:
    """The command table as the document has it (between TABLE_BEGIN and TABLE_END), or "" if it has none."""
    found = re.search(re.escape(TABLE_BEGIN) + r".*?" + re.escape(TABLE_END), markdown, re.S)
    return found.group(0) if found else ""


if __name__ == "__main__":  # rewrite the table in the document named on the command line
    doc = Path(sys.argv[1])
    text = doc.read_text()
    doc.write_text(text.replace(documented_table(text), markdown_table()))
