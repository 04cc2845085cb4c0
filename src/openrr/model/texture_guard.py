"""Texture size limits, enforced before a single pixel is decoded.

A 21 KB PNG can declare 13000×13000 pixels and cost gigabytes once decoded. trimesh opens every texture it
meets (glTF images embedded or referenced, OBJ `map_Kd`, PLY `TextureFile`) with `PIL.Image.open`, which
reads only the header; the pixels are decoded later, by trimesh's material conversions or by openrr's own
flattening. So the check sits on `PIL.Image.open` itself: while a model is parsed on this thread (and only
then), an image whose header is over the limits is refused and the refusal is remembered, because trimesh
swallows errors from image loading and would otherwise carry on with an untextured model.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from PIL import Image

DEFAULT_MAX_DIMENSION = 16384
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024


@dataclass(frozen=True)
class TextureLimits:
    max_dimension: int = DEFAULT_MAX_DIMENSION
    """Width or height, in pixels."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Width × height."""

    def problem(self, name: str, width: int, height: int) -> str | None:
        if max(width, height) <= self.max_dimension and width * height <= self.max_pixels:
            return None
        return (
            f"texture {name} is {width}x{height}, over the limit of {self.max_dimension} px per side / "
            f"{self.max_pixels} pixels"
        )


class TextureRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Parse:
    limits: TextureLimits
    refused: list[str] = field(default_factory=list)
    names: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    """id of the bytes a resolver returned → (those bytes, kept alive so the id stays theirs; the reference's name)."""


_state = threading.local()
_original_open = Image.open


def _current() -> _Parse | None:
    return getattr(_state, "parse", None)


def remember_name(data: bytes, name: str) -> None:
    """A resolver hands out `data` for reference `name`: name it if it turns out to be an oversized texture."""
    parse = _current()
    if parse is not None:
        parse.names[id(data)] = (data, name)


def fail_parse(message: str) -> None:
    """Fail the model being parsed on this thread, whatever trimesh does with the exception its caller raises
    (it carries on without a texture or material it could not get)."""
    parse = _current()
    if parse is not None:
        parse.refused.append(message)


def _name_of(fp: Any, parse: _Parse) -> str:
    if isinstance(fp, io.BytesIO):
        # trimesh wraps a resolver's bytes in BytesIO, whose getvalue() is that very object while unmodified
        found = parse.names.get(id(fp.getvalue()))
        if found is not None:
            return f"'{found[1]}'"
    return "(embedded)"


def _guarded_open(fp: Any, mode: Literal["r"] = "r", formats: Any = None) -> Image.Image:
    parse = _current()
    if parse is None:
        return _original_open(fp, mode, formats)
    try:
        image = _original_open(fp, mode, formats)
    except Image.DecompressionBombError as e:
        # Pillow's own ceiling (twice MAX_IMAGE_PIXELS) struck before ours could: still a size refusal
        message = f"texture {_name_of(fp, parse)} is over the limit of {parse.limits.max_pixels} pixels ({e})"
        parse.refused.append(message)
        raise TextureRefused(message) from None
    width, height = image.size
    problem = parse.limits.problem(_name_of(fp, parse), width, height)
    if problem is not None:
        image.close()
        parse.refused.append(problem)
        raise TextureRefused(problem)
    return image


DEFAULT_TEXTURES = TextureLimits()

# Installed once, for every thread: without an armed parse on the calling thread it is Pillow's own open.
Image.open = _guarded_open  # type: ignore[assignment]


@contextmanager
def texture_limits(limits: TextureLimits) -> Iterator[_Parse]:
    """Arm the check for this thread while a model is parsed; afterwards `.refused` lists what was refused."""
    outer = _current()
    parse = _Parse(limits)
    _state.parse = parse
    try:
        yield parse
    finally:
        _state.parse = outer


def open_image(fp: IO[bytes]) -> Image.Image:
    """Pillow's own open, for code that must not be subject to an armed parse's limits."""
    return _original_open(fp)
