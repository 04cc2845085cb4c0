"""JSON request bodies parsed with ARR-style, precise error messages."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from openrr.http.errors import ArrError, bad_request

M = TypeVar("M", bound=BaseModel)


def _too_large(max_bytes: int) -> ArrError:
    return ArrError(413, "PayloadTooLarge", f"The request body is larger than {max_bytes} bytes.")


# ARR's bodies nest four levels; 64 leaves room for `models` payloads and stays far below the recursion the
# C decoder would otherwise enter (a 20k-level body used to end in RecursionError, a 500).
MAX_DEPTH = 64
# A JSON string, or an unterminated one running to the end (so that a body of many stray quotes is still one
# linear scan, never a retry from every quote).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class _DuplicateKey(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Last-wins would let two readers of one body (a proxy, a log, this service) see different values.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (strings skipped), counted without recursion."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    return max(accumulate(1 if b in b"[{" else -1 for b in brackets))


def parse_json(raw: bytes) -> Any:
    """A JSON document, refused (ArrError 400) when invalid, nested deeper than MAX_DEPTH or with a repeated key."""
    if nesting_depth(raw) > MAX_DEPTH:
        raise bad_request(f"The request body nests JSON arrays and objects deeper than {MAX_DEPTH} levels.")
    try:
        return json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        key = str(e)[:64]
        raise bad_request(f"The request body has the key '{key}' more than once in one object.", key) from e
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"The request body is not valid JSON: {e}.") from e


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refusing it as soon as it is known to be too large (never buffering more than the limit)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    raw = await _read_limited(request, max_bytes)
    if not raw.strip():
        raise bad_request("The request body is empty; a JSON object is required.")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise bad_request(f"The request body must be a JSON object, not {_json_type(data)}.")
    return data


async def parse_body(request: Request, model: type[M], max_bytes: int) -> M:
    return validate_body(model, await read_json_object(request, max_bytes))


def validate_body(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        msg = first["msg"]
        if first["type"] == "missing":
            raise bad_request(f"The '{field}' field is required.", field) from e
        # Errors raised by our own validators carry the full sentence already.
        msg = msg.removeprefix("Value error, ")
        raise bad_request(f"Invalid value for '{field}': {msg}", field) from e


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
