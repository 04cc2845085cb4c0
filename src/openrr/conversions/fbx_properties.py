"""The properties of an FBX file's models (nodes) and materials, read from the file itself (binary or ASCII).

assimp turns the FBX into GLB for the geometry, tree and textures, but what it writes drops two things ARR's
converter used: user properties of nodes (assimp 5.2's glTF writer writes no node `extras`, and neither its
assjson nor its assxml dump carries node metadata), and the Phong inputs of materials (it writes a roughness
computed with its own, out-of-range formula and a metallic factor of 0). No maintained Python library reads FBX
without Autodesk's SDK, so this module reads the one part needed, `Objects` → `Model`/`Material` →
`Properties70`, and the `Definitions` templates that give a material its defaults. Everything else (geometry
arrays, connections) is skipped by offset in binary files and by line in ASCII ones.

Format: binary FBX is a tree of node records (end offset, property count, property bytes, name, typed
properties, children, a null record); ASCII FBX is the same tree as `Name: values {` blocks.
"""

from __future__ import annotations

import csv
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARY_MAGIC = b"Kaydara FBX Binary  \x00"
_SCALARS = {"Y": "<h", "C": "<B", "I": "<i", "F": "<f", "D": "<d", "L": "<q"}
_STRINGS = frozenset({"kstring", "string", "url", "xrefurl", "datetime"})
_INTEGERS = frozenset({"int", "integer", "enum", "short", "ushort", "uint", "longlong", "ulonglong", "ktime"})
_BOOLS = frozenset({"bool", "boolean"})


@dataclass
class FbxProperties:
    models: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(name, user properties) of every Model object, in file order."""
    materials: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Material name → every property it sets, over the Material template's defaults (the first of a name wins)."""


class FbxPropertyError(ValueError):
    """The file's structure is not what FBX's is: the message says where it broke."""


def read_fbx_properties(path: Path) -> FbxProperties:
    data = path.read_bytes()
    if data.startswith(BINARY_MAGIC):
        objects, definitions = _binary_tree(data)
    else:
        objects, definitions = _ascii_tree(data.decode("utf-8", errors="replace"))
    templates = {kind: props for kind, props in definitions}
    result = FbxProperties()
    for kind, name, props in objects:
        if kind == "Model":
            result.models.append((name, {key: value for key, (flags, value) in props.items() if "U" in flags}))
        elif kind == "Material" and name not in result.materials:
            defaults = {key: value for key, (_, value) in templates.get("Material", {}).items()}
            result.materials[name] = {**defaults, **{key: value for key, (_, value) in props.items()}}
    return result


Props = dict[str, tuple[str, Any]]
"""Property name → (flags, value)."""


def _value(kind: str, values: list[Any]) -> Any:
    """A P record's value as JSON: FBX's numeric types as numbers, vectors and colours as lists."""
    kind = kind.lower()
    if not values:
        return None
    if kind in _STRINGS:
        return str(values[0])
    if kind in _BOOLS:
        return bool(_number(values[0]))
    if kind in _INTEGERS:
        return int(_number(values[0]))
    numbers = [_number(v) for v in values]
    if all(isinstance(n, float | int) for n in numbers):
        floats = [float(n) if math.isfinite(float(n)) else None for n in numbers]
        return floats[0] if len(floats) == 1 else floats
    return values[0] if len(values) == 1 else [str(v) for v in values]


def _number(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _record(values: list[Any]) -> tuple[str, tuple[str, Any]] | None:
    """One `P: name, type, label, flags, values...` record."""
    if len(values) < 4:
        return None
    name, kind, _label, flags, *rest = values
    return str(name), (str(flags), _value(str(kind), rest))


# --- binary ---------------------------------------------------------------------------------------------------


class _Binary:
    def __init__(self, data: bytes) -> None:
        self.data = data
        version = int.from_bytes(data[23:27], "little")
        # FBX 7.5 widened the record header to 64-bit offsets
        self.head = struct.Struct("<QQQB" if version >= 7500 else "<IIIB")

    def children(self, start: int, end: int) -> Iterator[tuple[str, int, int, int, int]]:
        """(name, properties offset, property count, children offset, end offset) of each record in [start, end)."""
        pos = start
        while pos + self.head.size <= end:
            end_offset, count, length, name_length = self.head.unpack_from(self.data, pos)
            if end_offset == 0:
                return  # the null record closing a list
            if not pos < end_offset <= end:
                raise FbxPropertyError(f"a record at byte {pos} ends at {end_offset}, outside its parent")
            name_at = pos + self.head.size
            name = self.data[name_at : name_at + name_length].decode("utf-8", errors="replace")
            props = name_at + name_length
            yield name, props, count, props + length, end_offset
            pos = end_offset

    def properties(self, pos: int, count: int) -> list[Any]:
        out: list[Any] = []
        for _ in range(count):
            code = chr(self.data[pos])
            pos += 1
            if code in _SCALARS:
                fmt = _SCALARS[code]
                out.append(struct.unpack_from(fmt, self.data, pos)[0])
                pos += struct.calcsize(fmt)
            elif code in "SR":
                (length,) = struct.unpack_from("<I", self.data, pos)
                raw = self.data[pos + 4 : pos + 4 + length]
                out.append(raw.decode("utf-8", errors="replace") if code == "S" else None)
                pos += 4 + length
            elif code in "fdlibc":
                _, _, length = struct.unpack_from("<III", self.data, pos)
                out.append(None)  # arrays (geometry) are not needed here
                pos += 12 + length
            else:
                raise FbxPropertyError(f"unknown property type {code!r} at byte {pos - 1}")
        return out

    def props70(self, start: int, end: int) -> Props:
        props: Props = {}
        for name, _, _, children, stop in self.children(start, end):
            if name == "Properties70":
                for record, p_at, p_count, _, _ in self.children(children, stop):
                    if record == "P":
                        parsed = _record(self.properties(p_at, p_count))
                        if parsed is not None:
                            props[parsed[0]] = parsed[1]
        return props


def _binary_tree(data: bytes) -> tuple[list[tuple[str, str, Props]], list[tuple[str, Props]]]:
    reader = _Binary(data)
    objects: list[tuple[str, str, Props]] = []
    definitions: list[tuple[str, Props]] = []
    for name, _, _, children, end in reader.children(27, len(data)):
        if name == "Objects":
            for kind, at, count, inner, stop in reader.children(children, end):
                if kind in ("Model", "Material"):
                    values = reader.properties(at, count)
                    # binary names are "name\x00\x01Class"
                    label = str(values[1]).split("\x00\x01")[0] if len(values) > 1 else ""
                    objects.append((kind, label, reader.props70(inner, stop)))
        elif name == "Definitions":
            for kind, at, count, inner, stop in reader.children(children, end):
                if kind == "ObjectType":
                    values = reader.properties(at, count)
                    for template, _, _, t_inner, t_stop in reader.children(inner, stop):
                        if template == "PropertyTemplate":
                            definitions.append((str(values[0]), reader.props70(t_inner, t_stop)))
    return objects, definitions


# --- ASCII ----------------------------------------------------------------------------------------------------


def _ascii_tree(text: str) -> tuple[list[tuple[str, str, Props]], list[tuple[str, Props]]]:
    objects: list[tuple[str, str, Props]] = []
    definitions: list[tuple[str, Props]] = []
    path: list[tuple[str, list[Any], Props | None]] = []  # the open blocks: name, values, the table they fill
    for raw in text.splitlines():
        line = raw.strip()
        if line == "}":
            if path:
                path.pop()
            continue
        key, _, rest = line.partition(":")
        rest = rest.strip()
        if key == "P" and path and path[-1][2] is not None:
            parsed = _record(_ascii_values(rest))
            if parsed is not None:
                path[-1][2][parsed[0]] = parsed[1]
        elif rest.endswith("{"):
            values = _ascii_values(rest.removesuffix("{"))
            table = _owner(path, objects, definitions) if key == "Properties70" else None
            path.append((key, values, table))
    return objects, definitions


def _owner(
    path: list[tuple[str, list[Any], Props | None]],
    objects: list[tuple[str, str, Props]],
    definitions: list[tuple[str, Props]],
) -> Props | None:
    """The property table a Properties70 block about to open belongs to, if it is one this module reads."""
    names = [name for name, _, _ in path]
    if names[:1] == ["Objects"] and len(path) == 2 and names[1] in ("Model", "Material"):
        values = path[1][1]
        label = str(values[1]).split("::", 1)[-1] if len(values) > 1 else ""
        props: Props = {}
        objects.append((names[1], label, props))
        return props
    if names[:1] == ["Definitions"] and len(path) == 3 and names[1:] == ["ObjectType", "PropertyTemplate"]:
        props = {}
        definitions.append((str(path[1][1][0]) if path[1][1] else "", props))
        return props
    return None


def _ascii_values(text: str) -> list[Any]:
    """Comma-separated values as strings, quoted ones kept whole (they may hold commas); `_value` types them."""
    return next(csv.reader([text.strip()], skipinitialspace=True), [])
