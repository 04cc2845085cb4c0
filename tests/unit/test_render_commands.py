"""The render protocol's commands (render/commands.py) without a render server: parsing, who is blamed for a
failure, and that the protocol document and the viewer's JavaScript say what the models say."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from openrr.protocol import render as wire
from openrr.render import commands
from openrr.render.commands import (
    BAD_REQUEST,
    BY_TYPE,
    FORBIDDEN,
    INTERNAL_ERROR,
    MUTATING,
    Command,
    CommandError,
    GetStats,
    Handler,
    SetCamera,
    answer,
)

ROOT = Path(__file__).resolve().parents[2]


async def _ok(ctx: list[Command], command: Any) -> dict[str, Any]:
    ctx.append(command)
    return {"echo": command.type}


def _answer(message: dict[str, Any], handlers: dict[type[Command], Handler[list[Command]]] | None = None,
            role: str = "controller") -> dict[str, Any]:  # fmt: skip
    table: dict[type[Command], Handler[list[Command]]] = {c: _ok for c in commands.COMMANDS}
    return asyncio.run(answer([], role, message, {**table, **(handlers or {})}))


def test_a_bug_in_a_handler_is_an_internal_error_not_the_clients(caplog: pytest.LogCaptureFixture) -> None:
    async def buggy(ctx: list[Command], command: GetStats) -> dict[str, Any]:
        stats: dict[str, float] = {}
        return {"stats": stats["fps"]}  # KeyError: our mistake, whatever the client sent

    reply = _answer({"id": 3, "type": "getStats"}, {GetStats: buggy})
    assert reply["ok"] is False and reply["id"] == 3
    assert reply["error"]["code"] == INTERNAL_ERROR != BAD_REQUEST
    assert "fps" not in reply["error"]["message"], "a bug's details stay in the server's log"
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[0] is KeyError


@pytest.mark.parametrize("error", [ValueError("bad"), TypeError("bad"), RuntimeError("bad")])
def test_no_exception_of_ours_becomes_a_bad_request(error: Exception) -> None:
    async def buggy(ctx: list[Command], command: SetCamera) -> dict[str, Any]:
        raise error

    reply = _answer({"id": 1, "type": "setCamera", "fovY": 50}, {SetCamera: buggy})
    assert reply["error"]["code"] == INTERNAL_ERROR


def test_a_declared_command_error_reaches_the_client_as_declared() -> None:
    async def refuses(ctx: list[Command], command: GetStats) -> dict[str, Any]:
        raise CommandError(BAD_REQUEST, "no entity 9 is loaded")

    reply = _answer({"id": 2, "type": "getStats"}, {GetStats: refuses})
    assert reply["error"] == {"code": BAD_REQUEST, "message": "no entity 9 is loaded"}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "setCamera", "position": [0, "x", 5]}, "'position' must be an array of 3 numbers."),
        ({"type": "setCamera", "position": None}, "'position' must be an array of 3 numbers."),
        ({"type": "setCamera", "target": [0, float("nan"), 5]}, "'target' must be an array of 3 numbers."),
        ({"type": "setCamera", "fovY": 171}, "'fovY' must be a number between 1 and 170 (degrees)."),
        ({"type": "setCamera", "fovY": True}, "'fovY' must be a number between 1 and 170 (degrees)."),
        ({"type": "setCamera", "id": -1}, "'id' must be a non-negative integer."),
        ({"type": "setCamera", "id": True}, "'id' must be a non-negative integer."),
        ({"type": "loadModel"}, "'url' is required."),
        ({"type": "loadModel", "url": ""}, "'url' must be a non-empty string."),
        ({"type": "loadModel", "url": "a.glb", "transform": [1] * 15}, "'transform' must be an array of 16 numbers"),
        ({"type": "unloadModel", "entityId": "1"}, "'entityId' must be an integer."),
        ({"type": "unloadModel", "entityId": 1.0}, "'entityId' must be an integer."),
        ({"type": "setTransform", "entityId": 1}, "'matrix' is required."),
        (
            {"type": "setOverride", "entityId": 1, "hidden": "yes"},
            "'hidden' must be true, false or \"inherit\", not 'yes'.",
        ),
        (
            {"type": "setOverride", "entityId": 1, "tint": "none"},
            "'tint' must be an array of 4 numbers between 0 and 1 (RGBA), or \"inherit\".",
        ),
        ({"type": "setCamera", "near": 0}, "'near' must be a number > 0, or null."),
        ({"type": "setCamera", "far": "far"}, "'far' must be a number > 0, or null."),
        ({"type": "getEntity"}, "'entityId' is required."),
        ({"type": "getChildren", "entityId": 1, "limit": 1001}, "'limit' must be an integer within 1 .. 1000."),
        ({"type": "getChildren", "entityId": 1, "offset": -1}, "'offset' must be a non-negative integer."),
        ({"type": "getBounds", "entityId": 1, "space": "model"}, "'space' must be 'local' or 'world'."),
        ({"type": "setEntityTransform", "entityId": 1, "local": [1] * 9}, "'local' must be an array of 16 numbers"),
        ({"type": "setMaterial", "entityId": 1}, "'material' is required."),
        (
            {"type": "setMaterial", "entityId": 1, "material": 0, "metallic": 1.5},
            "'metallic' must be a number between 0 and 1.",
        ),
        (
            {"type": "setMaterial", "entityId": 1, "material": 0, "baseColor": [1, 0, 0]},
            "'baseColor' must be an array of 4 numbers between 0 and 1 (linear RGBA).",
        ),
        (
            {"type": "setMaterial", "entityId": 1, "material": 0, "emissive": [-1, 0, 0]},
            "'emissive' must be an array of 3 numbers >= 0 (linear RGB).",
        ),
        (
            {"type": "setMaterial", "entityId": 1, "material": 0, "alphaMode": "blend"},
            "'alphaMode' must be 'OPAQUE', 'MASK' or 'BLEND'.",
        ),
        ({"type": "setEnvironment", "cubeUrls": ["a.png"] * 5}, "'cubeUrls' must be an array of 6 non-empty strings"),
        ({"type": "setEnvironment", "intensity": -1}, "'intensity' must be a number >= 0."),
        ({"type": "setOutput", "exposure": 0}, "'exposure' must be a number > 0."),
        ({"type": "setOutput", "toneMapping": "filmic"}, "'toneMapping' must be 'none', 'aces' or 'neutral'."),
        ({"type": "setOutput", "antialiasing": "smaa"}, "'antialiasing' must be 'none', 'fxaa' or 'msaa'."),
        ({"type": "addLight"}, "'kind' is required."),
        ({"type": "addLight", "kind": "area"}, "'kind' must be 'directional', 'point' or 'spot'."),
        ({"type": "addLight", "kind": "point", "intensity": -2}, "'intensity' must be a number >= 0."),
        ({"type": "addLight", "kind": "point", "range": 0}, "'range' must be a number > 0, or null."),
        (
            {"type": "addLight", "kind": "spot", "outerConeAngle": 2},
            "'outerConeAngle' must be a number between 0 and pi/2 (radians).",
        ),
        (
            {"type": "addLight", "kind": "point", "color": [1, 1, float("inf")]},
            "'color' must be an array of 3 numbers >= 0 (linear RGB).",
        ),
        ({"type": "setLight", "kind": "point"}, "'lightId' is required."),
        ({"type": "setOverride", "entityId": 1, "tint": [0, 0, 1.5, 1]}, "'tint' must be an array of 4 numbers"),
        ({"type": "setCutPlanes", "planes": {}}, "'planes' must be an array."),
        ({"type": "setCutPlanes", "planes": [[1, 0, 0]]}, "'planes[0]' must be an object."),
        ({"type": "setCutPlanes", "planes": [{"normal": [1, 0, 0], "point": [0, 0]}]}, "'planes[0].point' must be"),
        ({"type": "setCutPlanes", "planes": [{"normal": [1, 0, 0], "point": [0] * 3}] * 9}, "at most 8 items"),
        ({"type": "setStream", "width": 8, "height": 100}, "'width' must be an integer within 16 .. 3840."),
        ({"type": "setStream", "width": 64, "height": 64, "fps": "30"}, "'fps' must be a number."),
        ({"type": "rayCast", "origin": [0, 0, 0]}, "'direction' is required."),
        ({"type": "webrtcOffer", "sdp": "v=0", "flush": "yes"}, "'flush' must be true or false, not 'yes'."),
        ({"type": "webrtcOffer", "sdp": "v=0", "sdpType": "answer"}, "'sdpType' must be 'offer'."),
        ({"type": "explode"}, "Unknown command type 'explode'."),
        ({"id": 1}, "Unknown command type 'None'."),
    ],
)
def test_a_malformed_command_is_a_bad_request_that_names_the_field(message: dict[str, Any], expected: str) -> None:
    reply = _answer(message)
    assert reply["ok"] is False and reply["error"]["code"] == BAD_REQUEST
    assert expected in reply["error"]["message"]


def test_every_bad_field_is_named_and_the_id_is_echoed_as_sent() -> None:
    reply = _answer({"id": "seven", "type": "setStream", "width": 1e9, "height": None})
    assert reply["id"] == "seven"
    message = reply["error"]["message"]
    assert all(f"'{field}'" in message for field in ("id", "width", "height")), message


def test_well_formed_commands_parse_to_their_models() -> None:
    ctx: list[Command] = []
    message = {"id": 4, "type": "setOverride", "entityId": 2, "hidden": None, "tint": [0, 0, 1, 1], "extra": 1}
    reply = asyncio.run(answer(ctx, "controller", message, {c: _ok for c in commands.COMMANDS}))
    assert reply == {"type": "result", "id": 4, "ok": True, "echo": "setOverride"}
    (command,) = ctx
    assert isinstance(command, commands.SetOverride)
    assert (command.entity_id, command.hidden, command.tint, command.see_through) == (2, None, (0, 0, 1, 1), None)
    ray = commands.PARSER.validate_python({"type": "rayCast", "origin": [0, 0, 1], "direction": [0, 0, -1]})
    assert isinstance(ray, commands.RayCast) and ray.max_distance == float("inf") and ray.id == 0


def test_watchers_may_not_change_the_scene_but_may_ask() -> None:
    for kind in MUTATING:
        reply = _answer({"type": kind, "id": 1}, role="watcher")
        assert reply["error"]["code"] == FORBIDDEN, kind  # before its fields are looked at
    assert _answer({"type": "getScene"}, role="watcher")["ok"] is True
    assert _answer({"type": "webrtcClose"}, role="watcher")["ok"] is True


def test_the_protocol_document_lists_every_command_with_its_fields() -> None:
    doc = (ROOT / "docs/render-protocol.md").read_text()
    documented = commands.documented_table(doc)
    assert documented == commands.markdown_table(), (
        "docs/render-protocol.md's command table differs from the models: "
        "run `python -m openrr.render.commands docs/render-protocol.md`"
    )
    cells = [line.strip("|").split("|") for line in documented.splitlines() if line.startswith("| `")]
    rows = [(kind.strip(" `"), fields.strip()) for kind, fields, _result in cells]
    assert [t for t, _ in rows] == list(BY_TYPE)
    for kind, fields in rows:  # the generator's own output, checked once more against the models' fields
        named = set(re.findall(r"`(\w+)`(?: \(|,|$)", fields))
        expected = {f.alias for name, f in BY_TYPE[kind].model_fields.items() if name not in ("id", "type")}
        assert named == expected, kind


def _js(name: str, source: str) -> str:
    found = re.search(rf"^export const {name} = (.*?);$", source, re.M | re.S)
    assert found, f"web/protocol.js has no `export const {name}`"
    return found.group(1)


def test_the_viewers_protocol_constants_are_the_servers() -> None:
    source = (ROOT / "src/openrr/web/protocol.js").read_text()
    assert _js("FRAME_MAGIC", source) == f'"{wire.FRAME_MAGIC.decode()}"'
    assert int(_js("HEADER_SIZE", source)) == wire.HEADER_SIZE
    assert int(_js("CODEC_JPEG", source)) == wire.CODEC_JPEG
    assert int(_js("CODEC_H264", source)) == wire.CODEC_H264
    assert int(_js("KEYFRAME", source), 0) == wire.KEYFRAME
    assert set(re.findall(r'"(\w+)"', _js("MUTATING", source))) == MUTATING
    close_codes = {int(code): name for code, name in re.findall(r'(\d{4}): "(\w+)"', _js("CLOSE_CODES", source))}
    assert close_codes == wire.CLOSE_CODES
    # The header the JS decodes by hand: u32 frame at 4, u32 commandId at 8, u32 flags at 12, little-endian.
    offsets = dict(re.findall(r"(frame|commandId): view\.getUint32\((\d+), true\)", source))
    flags_at = re.search(r"const flags = view\.getUint32\((\d+), true\)", source)
    header = wire.pack_frame(wire.FrameHeader(frame=11, command_id=22, codec=wire.CODEC_H264, keyframe=True), b"")
    assert flags_at and int.from_bytes(header[int(flags_at.group(1)) :][:4], "little") == 2 | wire.KEYFRAME
    assert {k: int.from_bytes(header[int(v) :][:4], "little") for k, v in offsets.items()} == {
        "frame": 11,
        "commandId": 22,
    }


def test_stamped_commands_are_the_models_stamped_ones() -> None:
    assert {t for t, c in BY_TYPE.items() if c.stamped} == wire.STAMPED_COMMANDS
    assert MUTATING <= wire.STAMPED_COMMANDS
