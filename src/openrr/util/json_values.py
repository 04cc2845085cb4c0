"""How an error message names a JSON value it did not expect (API validation, the render server's control bodies)."""

from __future__ import annotations

from typing import Any


def describe(value: Any) -> str:
    """A JSON value as an error message names it: `got the string 'x'`, `got 5`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string '{value[:40]}'"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return str(value)
