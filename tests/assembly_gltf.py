"""A generated 3-level assembly in glTF, for the entity and scene API tests: named parts with distinct flat colours
(unlit, so every pixel of a part is exactly its colour), facing a camera on +z.

    assembly ─┬─ A (x = -0.5) ─┬─ A1 red     (y = +0.5)
              │                └─ A2 green   (y = -0.5)
              └─ B (x = +0.5) ─┬─ B1 blue    (y = +0.5)
                               └─ B2 yellow  (y = -0.5)

Each leaf is a 0.8 × 0.8 square in z = 0 (so the parts have gaps of 0.2 between them). Entity ids from a
loadModel answer R: R the file's root, R+1 assembly, R+2 A, R+3 A1, R+4 A2, R+5 B, R+6 B1, R+7 B2 (glTF nodes in
depth-first order after the file's own root).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

HALF = 0.4
COLOURS = {"A1": (1.0, 0.0, 0.0), "A2": (0.0, 1.0, 0.0), "B1": (0.0, 0.0, 1.0), "B2": (1.0, 1.0, 0.0)}
"""Linear base colours; sRGB-encoded they are the same 0/255 values on screen."""
CENTRES = {"A1": (-0.5, 0.5), "A2": (-0.5, -0.5), "B1": (0.5, 0.5), "B2": (0.5, -0.5)}
"""World x, y of each leaf's centre."""
ORDER = ["file", "assembly", "A", "A1", "A2", "B", "B1", "B2"]
"""Entity id offset of each name from the model's root id."""


def write_assembly(path: Path, *, unlit: bool = True) -> Path:
    """Write the assembly as a .gltf with its buffer embedded."""
    positions = np.array([[-HALF, -HALF, 0], [HALF, -HALF, 0], [HALF, HALF, 0], [-HALF, HALF, 0]], np.float32)
    normals = np.tile(np.array([0, 0, 1], np.float32), (4, 1))
    indices = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    blob = positions.tobytes() + normals.tobytes() + indices.tobytes()
    leaves = list(COLOURS)
    materials = []
    for name in leaves:
        material: dict[str, object] = {
            "name": f"{name}-paint",
            "pbrMetallicRoughness": {"baseColorFactor": [*COLOURS[name], 1.0], "metallicFactor": 0.0,
                                     "roughnessFactor": 1.0},
        }  # fmt: skip
        if unlit:
            material["extensions"] = {"KHR_materials_unlit": {}}
        materials.append(material)
    meshes = [
        {"name": name, "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": k}]}
        for k, name in enumerate(leaves)
    ]
    nodes = [
        {"name": "assembly", "children": [1, 4]},
        {"name": "A", "translation": [-0.5, 0, 0], "children": [2, 3]},
        {"name": "A1", "translation": [0, 0.5, 0], "mesh": 0, "extras": {"partNumber": "A-1"}},
        {"name": "A2", "translation": [0, -0.5, 0], "mesh": 1},
        {"name": "B", "translation": [0.5, 0, 0], "children": [5, 6]},
        {"name": "B1", "translation": [0, 0.5, 0], "mesh": 2},
        {"name": "B2", "translation": [0, -0.5, 0], "mesh": 3},
    ]
    doc = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_materials_unlit"] if unlit else [],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": materials,
        "buffers": [
            {"byteLength": len(blob), "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 48, "target": 34962},
            {"buffer": 0, "byteOffset": 48, "byteLength": 48, "target": 34962},
            {"buffer": 0, "byteOffset": 96, "byteLength": 12, "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
             "min": [-HALF, -HALF, 0], "max": [HALF, HALF, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    return path
