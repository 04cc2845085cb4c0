"""pyproject.toml's layer extras stay in step with the core dependencies (see the comment above them there)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
LAYERS = ("control", "model", "render", "convert", "client")
RENDER_STACK = {"moderngl", "aiortc", "av", "opencv-python-headless", "simplejpeg", "trimesh", "scipy"}


def _project() -> dict[str, Any]:
    with PYPROJECT.open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower()


def _layer(extras: dict[str, list[str]], layer: str) -> set[str]:
    """A layer's requirements as written, its `openrr[...]` references expanded."""
    out: set[str] = set()
    for req in extras[layer]:
        if _name(req) == "openrr":
            for inner in re.findall(r"\w+", req.partition("[")[2]):
                out |= _layer(extras, inner)
        else:
            out.add(req)
    return out


def test_core_dependencies_are_the_union_of_the_layer_extras_as_written() -> None:
    project = _project()
    core = set(project["dependencies"])
    extras = project["optional-dependencies"]
    layers = {layer: _layer(extras, layer) for layer in LAYERS}
    union = set().union(*layers.values())
    assert union - core == set(), "a layer names a requirement that core lacks or writes differently"
    assert core - union == set(), "a core dependency belongs to no layer"


def test_the_control_plane_needs_none_of_the_render_stack() -> None:
    extras = _project()["optional-dependencies"]
    assert {_name(r) for r in _layer(extras, "control")} & RENDER_STACK == set()
