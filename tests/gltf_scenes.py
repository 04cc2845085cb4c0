"""The small glTF scenes of issue 11's reference images, made on the spot (numpy, Pillow, pygltflib; no downloads).

Each scene is one .glb plus what both renderers must be told to draw it alike: the camera, the punctual lights,
whether the test environment map lights it, and where its known colour patches are. `write_scenes(root)` writes
every .glb and the environment (`ENVIRONMENT_FILE`, a Radiance .hdr) into `root` and returns the scenes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from openrr.model.mesh import CLAMP_TO_EDGE, LINEAR, MIRRORED_REPEAT, NEAREST, REPEAT
from openrr.render.lighting import Light

FloatArray = npt.NDArray[np.float32]
ENVIRONMENT_FILE = "environment.hdr"
PICTURE = (320, 240)
"""The size both renderers draw each scene at (width, height): small enough that llvmpipe and SwiftShader draw a
scene in well under a second, large enough that every feature (a texel of the wrap-mode textures, a bump of the
relief) spans several pixels."""
BACKGROUND_SRGB = (0.12, 0.12, 0.14)
"""openrr's clear colour as sRGB display values (render/renderer.py); three.js is given the same."""

# glTF accessor component types and element types
_COMPONENT = {
    np.dtype(np.float32): 5126,
    np.dtype(np.uint32): 5125,
    np.dtype(np.uint16): 5123,
    np.dtype(np.uint8): 5121,
}
_TYPE = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass(frozen=True)
class View:
    """A camera both renderers are given: position, look-at target, up, vertical field of view (degrees), planes."""

    position: tuple[float, float, float]
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov_y: float = 45.0
    near: float = 0.1
    far: float = 100.0

    def ndc(self, points: npt.ArrayLike, aspect: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """World points (N, 3) seen by this camera: normalized device x and y (-1..1 inside the picture, y up) and
        the depth along the view direction."""
        forward = np.subtract(self.target, self.position)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, self.up)
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        rel = np.atleast_2d(np.asarray(points, float)) - self.position
        depth = rel @ forward
        half = math.tan(math.radians(self.fov_y) / 2)
        return (rel @ right) / depth / (half * aspect), (rel @ up) / depth / half, depth


@dataclass(frozen=True)
class Patch:
    """A flat unlit patch whose picture is known: `srgb` (0–255) is what both renderers must show at `centre`."""

    name: str
    centre: tuple[float, float, float]
    srgb: tuple[float, float, float]


@dataclass(frozen=True)
class GltfScene:
    name: str
    file: str
    view: View
    lights: tuple[Light, ...] = ()
    environment: bool = True
    patches: tuple[Patch, ...] = ()


def srgb_encode(linear: float) -> float:
    """The sRGB transfer function (IEC 61966-2-1), as three.js's output encoding applies it; 0–255."""
    c = min(max(linear, 0.0), 1.0)
    return 255.0 * (12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055)


def srgb_decode(value: float) -> float:
    """Inverse of srgb_encode, from 0–255 to linear."""
    c = value / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


# --- a minimal glTF writer ------------------------------------------------------------------------------------


class _Gltf:
    """Accumulates one binary buffer and the JSON that indexes it; `write()` saves a .glb. Geometry arrays shared
    between meshes (the 25 spheres) are stored once."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "openrr tests/gltf_scenes.py"},
            "scene": 0,
            "scenes": [{"nodes": []}],
            **{key: [] for key in ("nodes", "meshes", "materials", "accessors", "bufferViews")},
        }
        self.blob = bytearray()
        self._stored: dict[int, tuple[npt.NDArray[Any], int]] = {}  # id(array) -> (array kept alive, accessor)

    def _view(self, data: bytes, target: int | None = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))  # accessors need 4-byte alignment
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob.extend(data)
        return self._add("bufferViews", view)

    def _add(self, key: str, item: dict[str, Any]) -> int:
        self.doc.setdefault(key, []).append(item)
        return len(self.doc[key]) - 1

    def _extension(self, name: str) -> None:
        used = self.doc.setdefault("extensionsUsed", [])
        if name not in used:
            used.append(name)

    def accessor(self, array: npt.NDArray[Any], *, indices: bool = False, normalized: bool = False) -> int:
        if id(array) in self._stored:
            return self._stored[id(array)][1]
        data = np.ascontiguousarray(array)
        width = 1 if data.ndim == 1 else data.shape[1]
        accessor: dict[str, Any] = {
            "bufferView": self._view(data.tobytes(), ELEMENT_ARRAY_BUFFER if indices else ARRAY_BUFFER),
            "componentType": _COMPONENT[data.dtype],
            "count": len(data),
            "type": _TYPE[width],
        }
        if normalized:
            accessor["normalized"] = True
        if not indices:  # POSITION must carry min/max; the others may, and it helps validation
            accessor["min"] = np.atleast_1d(data.min(axis=0)).astype(float).tolist()
            accessor["max"] = np.atleast_1d(data.max(axis=0)).astype(float).tolist()
        self._stored[id(array)] = (array, self._add("accessors", accessor))
        return self._stored[id(array)][1]

    def texture(self, rgba: npt.NDArray[np.uint8], sampler: dict[str, int] | None = None) -> int:
        png = io.BytesIO()
        Image.fromarray(rgba).save(png, format="PNG")
        image = self._add("images", {"bufferView": self._view(png.getvalue()), "mimeType": "image/png"})
        texture: dict[str, Any] = {"source": image}
        if sampler is not None:
            texture["sampler"] = self._add("samplers", sampler)
        return self._add("textures", texture)

    def material(self, name: str, **material: Any) -> int:
        for extension in material.get("extensions", {}):
            self._extension(extension)
        for slot in ("baseColorTexture", "metallicRoughnessTexture"):
            for extension in material.get("pbrMetallicRoughness", {}).get(slot, {}).get("extensions", {}):
                self._extension(extension)
        for slot in ("normalTexture", "occlusionTexture", "emissiveTexture"):
            for extension in material.get(slot, {}).get("extensions", {}):
                self._extension(extension)
        return self._add("materials", {"name": name, **material})

    def mesh(self, name: str, geometry: dict[str, npt.NDArray[Any]], material: int) -> int:
        attributes = {key: self.accessor(value) for key, value in geometry.items() if key != "indices"}
        for key, value in geometry.items():
            if key.startswith("COLOR_") and value.dtype != np.float32:
                self.doc["accessors"][attributes[key]]["normalized"] = True
        primitive = {"attributes": attributes, "indices": self.accessor(geometry["indices"], indices=True)}
        return self._add("meshes", {"name": name, "primitives": [{**primitive, "material": material}]})

    def node(self, name: str, mesh: int, **transform: Any) -> int:
        node = self._add("nodes", {"name": name, "mesh": mesh, **{k: list(v) for k, v in transform.items()}})
        self.doc["scenes"][0]["nodes"].append(node)
        return node

    def write(self, path: Path) -> None:
        """The binary glTF container (spec section 4.4): header, JSON chunk, BIN chunk, each chunk 4-byte aligned.
        Written here rather than through pygltflib, whose dict decoding warns on buffer-view images; the unit test
        reads every file back with pygltflib."""
        self.blob.extend(b"\0" * (-len(self.blob) % 4))
        self.doc["buffers"] = [{"byteLength": len(self.blob)}]
        text = json.dumps(self.doc, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        chunks = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(self.blob), 0x004E4942)
        chunks += bytes(self.blob)
        path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks)


# --- geometry ---------------------------------------------------------------------------------------------------


def quad(
    width: float, height: float, uv: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
) -> dict[str, npt.NDArray[Any]]:
    """A rectangle in the XY plane facing +Z (counter-clockwise seen from +Z), centred on the origin. `uv` =
    (u0, v0, u1, v1): u0 at the left edge, v0 at the TOP edge (glTF's UV origin is the image's top left)."""
    w, h = width / 2, height / 2
    u0, v0, u1, v1 = uv
    return {
        "POSITION": np.array([[-w, -h, 0], [w, -h, 0], [w, h, 0], [-w, h, 0]], np.float32),
        "NORMAL": np.tile(np.array([0, 0, 1], np.float32), (4, 1)),
        "TEXCOORD_0": np.array([[u0, v1], [u1, v1], [u1, v0], [u0, v0]], np.float32),
        "indices": np.array([0, 1, 2, 0, 2, 3], np.uint16),
    }


def uv_sphere(radius: float, segments: int = 48, rings: int = 24) -> dict[str, npt.NDArray[Any]]:
    theta = np.linspace(0, np.pi, rings + 1)  # from the north pole
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    normals = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], axis=-1).reshape(-1, 3)
    uvs = np.stack([p / (2 * np.pi), t / np.pi], axis=-1).reshape(-1, 2)
    row = segments + 1
    a = (np.arange(rings)[:, None] * row + np.arange(segments)[None, :]).reshape(-1)
    b, c, d = a + row, a + row + 1, a + 1
    indices = np.concatenate([np.stack([a, b, d], -1), np.stack([d, b, c], -1)]).reshape(-1)
    return {
        "POSITION": (normals * radius).astype(np.float32),
        "NORMAL": normals.astype(np.float32),
        "TEXCOORD_0": uvs.astype(np.float32),
        "indices": indices.astype(np.uint16),
    }


def cube(size: float) -> dict[str, npt.NDArray[Any]]:
    """24 vertices (flat faces), each face counter-clockwise seen from outside."""
    positions: list[npt.NDArray[np.float64]] = []
    normals: list[npt.NDArray[np.float64]] = []
    indices: list[int] = []
    for axis in range(3):
        for sign in (1.0, -1.0):
            n = np.zeros(3)
            n[axis] = sign
            u = np.roll(n, 1) if sign > 0 else -np.roll(n, 1)  # u × v = n keeps the winding outward
            v = np.cross(n, u)
            base = len(positions)
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                positions.append((n + du * u + dv * v) * size / 2)
                normals.append(n)
            indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return {
        "POSITION": np.array(positions, np.float32),
        "NORMAL": np.array(normals, np.float32),
        "indices": np.array(indices, np.uint16),
    }


def _axis_angle(axis: tuple[float, float, float], degrees: float) -> tuple[float, float, float, float]:
    """A glTF rotation quaternion (x, y, z, w)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    s = math.sin(math.radians(degrees) / 2)
    return (float(a[0] * s), float(a[1] * s), float(a[2] * s), math.cos(math.radians(degrees) / 2))


def _pbr(color: tuple[float, ...], metallic: float = 0.0, roughness: float = 1.0, **more: Any) -> dict[str, Any]:
    return {"baseColorFactor": [*color, 1.0][:4], "metallicFactor": metallic, "roughnessFactor": roughness, **more}


# --- textures ----------------------------------------------------------------------------------------------------


def _marker_texture(size: int = 16) -> npt.NDArray[np.uint8]:
    """Asymmetric in u and v (a red ramp along u, a green ramp along v, a blue top-left corner), so that repeat,
    clamp and mirror wrap, and a texture transform, each give a visibly different picture."""
    ramp = np.linspace(30, 240, size)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = ramp[None, :]
    rgba[..., 1] = ramp[:, None]
    rgba[..., 2] = 40
    rgba[: size // 4, : size // 4, 2] = 230
    rgba[..., 3] = 255
    return rgba


def _checker(size: int, cells: int, dark: int = 40, light: int = 215) -> npt.NDArray[np.uint8]:
    cell = (np.arange(size) * cells // size) % 2
    value = np.where(cell[:, None] ^ cell[None, :], light, dark).astype(np.uint8)
    return np.dstack([value, value, value, np.full_like(value, 255)])


def _relief_normals(size: int = 128, bumps: int = 4) -> npt.NDArray[np.uint8]:
    """A tangent-space normal texture of the relief h(x, y) = 0.05·sin(2π·bumps·x)·sin(2π·bumps·y) over the unit
    square (x right, y up, as glTF's normal textures are), encoded n·0.5 + 0.5."""
    x = (np.arange(size) + 0.5) / size
    y = 1.0 - x  # image rows run downward, y up
    k = 2 * np.pi * bumps
    dhdx = 0.05 * k * np.cos(k * x)[None, :] * np.sin(k * y)[:, None]
    dhdy = 0.05 * k * np.sin(k * x)[None, :] * np.cos(k * y)[:, None]
    n = np.dstack([-dhdx, -dhdy, np.ones_like(dhdx)])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    rgb = np.round((n * 0.5 + 0.5) * 255).astype(np.uint8)
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])


def _disc_alpha(size: int = 64) -> npt.NDArray[np.uint8]:
    """Orange with alpha falling from 1 at the centre to 0 at the edge: MASK cuts a disc, BLEND fades."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2) / (size / 2)
    alpha = np.clip(1.0 - r, 0.0, 1.0) * 255
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 235, 140, 30
    rgba[..., 3] = alpha.astype(np.uint8)
    return rgba


# --- the scenes ---------------------------------------------------------------------------------------------------

KEY_LIGHT = Light("directional", color=(1.0, 0.96, 0.9), intensity=1.2, direction=(-0.4, -0.6, -0.7))


def _spheres(g: _Gltf, broken: bool) -> GltfScene:
    """5×5 spheres: metallic steps 0 → 1 left to right, roughness 0 → 1 bottom to top."""
    sphere = uv_sphere(0.42)
    for row in range(5):
        for col in range(5):
            metallic, roughness = (0.0, 0.5) if broken else (col / 4, row / 4)  # broken: one plastic for all
            m = g.material(f"m{col}r{row}", pbrMetallicRoughness=_pbr((0.9, 0.55, 0.25), metallic, roughness))
            g.node(f"sphere_{col}_{row}", g.mesh(f"sphere_{col}_{row}", sphere, m), translation=(col - 2, row - 2, 0))
    return GltfScene("spheres", "spheres.glb", View((0, 0, 7.4), fov_y=40), lights=(KEY_LIGHT,))


def _normal_map(g: _Gltf, broken: bool) -> GltfScene:
    """A plane with a normal texture of a known relief (no tangents in the file: generated), lit at a slant."""
    normal = g.texture(_relief_normals(), {"wrapS": REPEAT, "wrapT": REPEAT})
    relief = {} if broken else {"normalTexture": {"index": normal, "scale": 1.0}}  # broken: a flat plane
    m = g.material("relief", pbrMetallicRoughness=_pbr((0.8, 0.8, 0.8), 0.0, 0.6), **relief)
    g.node("plane", g.mesh("plane", quad(3, 3), m))
    grazing = Light("directional", intensity=3.0, direction=(0.8, -0.3, -0.5))
    return GltfScene("normal_map", "normal_map.glb", View((0, -1.2, 4.6)), lights=(grazing,))


def _wrap_modes(g: _Gltf, broken: bool) -> GltfScene:
    """Three quads with UVs from -1 to 2: repeat, clamp to edge, mirrored repeat (left to right)."""
    for i, (name, wrap) in enumerate((("repeat", REPEAT), ("clamp", CLAMP_TO_EDGE), ("mirror", MIRRORED_REPEAT))):
        wrap = REPEAT if broken else wrap  # broken: always repeat
        sampler = {"wrapS": wrap, "wrapT": wrap, "magFilter": NEAREST, "minFilter": LINEAR}
        tex = g.texture(_marker_texture(), sampler)
        m = g.material(name, pbrMetallicRoughness=_pbr((1, 1, 1), baseColorTexture={"index": tex}))
        g.node(name, g.mesh(name, quad(1.2, 1.2, (-1, -1, 2, 2)), m), translation=(1.35 * (i - 1), 0, 0))
    return GltfScene("wrap_modes", "wrap_modes.glb", View((0, 0, 4.4), fov_y=40))


def _alpha(g: _Gltf, broken: bool) -> GltfScene:
    """A checkerboard wall, and in front of it an alpha MASK quad (left) and a BLEND quad (right)."""
    wall = g.material(
        "wall", pbrMetallicRoughness=_pbr((1, 1, 1), baseColorTexture={"index": g.texture(_checker(64, 8))})
    )
    g.node("wall", g.mesh("wall", quad(4, 2.5), wall))
    disc = _disc_alpha()
    mask = g.material(
        "mask",
        pbrMetallicRoughness=_pbr((1, 1, 1), baseColorTexture={"index": g.texture(disc)}),
        alphaMode="OPAQUE" if broken else "MASK",  # broken: alpha ignored
        alphaCutoff=0.5,
    )
    blend = g.material(
        "blend",
        pbrMetallicRoughness=_pbr((0.3, 0.6, 1.0, 0.9), baseColorTexture={"index": g.texture(disc)}),
        alphaMode="OPAQUE" if broken else "BLEND",
    )
    g.node("mask", g.mesh("mask", quad(1.6, 1.6), mask), translation=(-1.0, 0, 0.4))
    g.node("blend", g.mesh("blend", quad(1.6, 1.6), blend), translation=(1.0, 0, 0.4))
    return GltfScene("alpha", "alpha.glb", View((0, 0, 4.6), fov_y=40))


EMISSIVE = (0.2, 0.09, 0.03)
EMISSIVE_STRENGTHS = (0.5, 1.0, 2.0, 4.0)


def _emissive(g: _Gltf, broken: bool) -> GltfScene:
    """Four black cubes glowing at emissive strength 0.5, 1, 2 and 4 (KHR_materials_emissive_strength), with no
    other light: each shows exactly the sRGB encoding of emissive × strength (all below 1, so nothing clips)."""
    box = cube(0.8)
    patches = []
    for i, strength in enumerate(EMISSIVE_STRENGTHS):
        m = g.material(
            f"glow{i}",
            pbrMetallicRoughness=_pbr((0.0, 0.0, 0.0), 0.0, 0.7),
            emissiveFactor=list(EMISSIVE),
            extensions={"KHR_materials_emissive_strength": {"emissiveStrength": 1.0 if broken else strength}},
        )
        centre = (1.3 * (i - 1.5), 0.0, 0.0)
        rotation = _axis_angle((1, 1, 0), 35)
        g.node(f"cube{i}", g.mesh(f"cube{i}", box, m), translation=centre, rotation=rotation)
        # every face glows alike, so the cube's centre shows the colour whichever face is in front there
        patches.append(Patch(f"cube{i}", centre, tuple(srgb_encode(c * strength) for c in EMISSIVE)))  # type: ignore[arg-type]
    view = View((0, 0.6, 6.2), fov_y=40)
    return GltfScene("emissive", "emissive.glb", view, environment=False, patches=tuple(patches))


def _vertex_colors(g: _Gltf, broken: bool) -> GltfScene:
    """Triangles coloured per vertex (COLOR_0 as float RGB, and as normalized unsigned bytes RGBA), under the
    environment and a point light close in front (its fall-off shows)."""
    m = g.material("white", pbrMetallicRoughness=_pbr((1, 1, 1), 0.0, 1.0))
    triangle = np.array([[-0.9, -0.8, 0], [0.9, -0.8, 0], [0.0, 0.85, 0]], np.float32)
    common: dict[str, npt.NDArray[Any]] = {
        "NORMAL": np.tile(np.array([0, 0, 1], np.float32), (3, 1)),
        "indices": np.array([0, 1, 2], np.uint16),
    }
    rgb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    if broken:  # COLOR_0 ignored: white
        rgb = np.ones_like(rgb)
    g.node("rgb", g.mesh("rgb", {"POSITION": triangle, "COLOR_0": rgb, **common}, m), translation=(-1.0, 0, 0))
    bytes_rgba = np.array([[255, 220, 0, 255], [0, 200, 220, 255], [200, 0, 180, 255]], np.uint8)
    if broken:
        bytes_rgba = np.full_like(bytes_rgba, 255)
    g.node("ymc", g.mesh("ymc", {"POSITION": triangle, "COLOR_0": bytes_rgba, **common}, m), translation=(1.0, 0, 0))
    lamp = Light("point", color=(1.0, 0.95, 0.85), intensity=2.5, position=(0.0, 0.4, 1.4), range=8.0)
    return GltfScene("vertex_colors", "vertex_colors.glb", View((0, 0, 4.2), fov_y=40), lights=(lamp,))


PATCH_COLORS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("issue_blue", (0.089, 0.179, 0.640)),  # the example: shows as about (84, 117, 209)
    ("mid_grey", (0.5, 0.5, 0.5)),
    ("dark", (0.02, 0.03, 0.05)),
    ("green", (0.1, 0.7, 0.2)),
    ("red", (1.0, 0.0, 0.0)),
    ("white", (1.0, 1.0, 1.0)),
)
TEXTURE_PATCH_SRGB = (200, 100, 50)
"""The sRGB value stored in the textured patch's image: decoded to linear on sampling, encoded back on output."""


def _patches(g: _Gltf, broken: bool) -> GltfScene:
    """Unlit (KHR_materials_unlit) patches of known linear colour, and one whose sRGB texture holds a known value:
    the picture must show exactly the sRGB encoding of the colour (no light, no tone mapping)."""
    unlit: dict[str, Any] = {"KHR_materials_unlit": {}}
    patches = []
    for i, (name, linear) in enumerate(PATCH_COLORS):
        centre = (1.1 * (i % 4 - 1.5), 0.6 if i < 4 else -0.6, 0.0)
        # broken: the colour encoded twice (what a renderer that takes linear factors for sRGB shows)
        factor = tuple(srgb_encode(c) / 255 for c in linear) if broken else linear
        m = g.material(name, pbrMetallicRoughness=_pbr(factor), extensions=unlit)
        g.node(name, g.mesh(name, quad(1.0, 1.0), m), translation=centre)
        patches.append(Patch(name, centre, tuple(srgb_encode(c) for c in linear)))  # type: ignore[arg-type]
    image = np.zeros((8, 8, 4), np.uint8)
    image[..., :3], image[..., 3] = TEXTURE_PATCH_SRGB, 255
    m = g.material(
        "textured", pbrMetallicRoughness=_pbr((1, 1, 1), baseColorTexture={"index": g.texture(image)}), extensions=unlit
    )
    centre = (1.1 * 0.5, -0.6, 0.0)
    g.node("textured", g.mesh("textured", quad(1.0, 1.0), m), translation=centre)
    patches.append(Patch("textured", centre, tuple(float(c) for c in TEXTURE_PATCH_SRGB)))  # type: ignore[arg-type]
    return GltfScene("patches", "patches.glb", View((0, 0, 4.8), fov_y=40), environment=False, patches=tuple(patches))


def _texcoord1(g: _Gltf, broken: bool) -> GltfScene:
    """A quad with a base colour texture on UV set 0 and an emissive checker on UV set 1 (a different layout)."""
    geometry = quad(2.4, 2.4)
    geometry["TEXCOORD_1"] = np.array([[0, 0], [0, 2], [2, 2], [2, 0]], np.float32)  # turned a quarter, 2×2 tiles
    emissive = g.texture(_checker(32, 4, 0, 255), {"wrapS": REPEAT, "wrapT": REPEAT})
    base = g.texture(_marker_texture())
    m = g.material(
        "two_sets",
        pbrMetallicRoughness=_pbr((0.6, 0.6, 0.6), 0.0, 0.8, baseColorTexture={"index": base}),
        emissiveTexture={"index": emissive, "texCoord": 0 if broken else 1},
        emissiveFactor=[0.2, 0.5, 0.9],
    )
    g.node("quad", g.mesh("quad", geometry, m))
    return GltfScene("texcoord1", "texcoord1.glb", View((0, 0, 4.0), fov_y=40))


def _texture_transform(g: _Gltf, broken: bool) -> GltfScene:
    """A quad whose base colour texture is offset, rotated and scaled by KHR_texture_transform.

    The scale is uniform: three.js composes rotation and scale in the other order from the extension's
    translation · rotation · scale, which gives the same matrix only when u and v scale alike (openrr follows the
    extension; a non-uniform scale with a rotation would compare two readings of the spec, not two renderers)."""
    tex = g.texture(_marker_texture(), {"wrapS": REPEAT, "wrapT": REPEAT, "magFilter": NEAREST})
    transform = {"KHR_texture_transform": {"offset": [0.25, 0.1], "rotation": 0.4, "scale": [1.75, 1.75]}}
    m = g.material(
        "transformed",
        pbrMetallicRoughness=_pbr(
            (1, 1, 1), baseColorTexture={"index": tex, **({} if broken else {"extensions": transform})}
        ),
    )
    g.node("quad", g.mesh("quad", quad(2.4, 2.4), m))
    return GltfScene("texture_transform", "texture_transform.glb", View((0, 0, 4.0), fov_y=40))


def _leaves(g: _Gltf, broken: bool) -> GltfScene:
    """Two leaves facing away from the camera: the double-sided one shows its back (lit as a back face), the
    single-sided one is culled."""
    leaf = quad(1.4, 2.0)
    green = _pbr((0.2, 0.6, 0.15), 0.0, 0.7)
    double = g.material("double", pbrMetallicRoughness=green, doubleSided=not broken)
    single = g.material("single", pbrMetallicRoughness=green)
    g.node("double_sided", g.mesh("double_sided", leaf, double), translation=(-0.9, 0, 0))
    g.node("single_sided", g.mesh("single_sided", leaf, single), translation=(0.9, 0, 0))
    spot = Light(
        "spot",
        intensity=30.0,
        position=(0, 0.5, -3.0),
        direction=(0, -0.15, 1),
        inner_cone_angle=0.6,
        outer_cone_angle=0.9,
    )
    return GltfScene("leaves", "leaves.glb", View((0, 0, -4.0), fov_y=40), lights=(spot,))


SCENES: dict[str, Callable[[_Gltf, bool], GltfScene]] = {
    "spheres": _spheres,
    "normal_map": _normal_map,
    "wrap_modes": _wrap_modes,
    "alpha": _alpha,
    "emissive": _emissive,
    "vertex_colors": _vertex_colors,
    "patches": _patches,
    "texcoord1": _texcoord1,
    "texture_transform": _texture_transform,
    "leaves": _leaves,
}
"""Each builder returns its scene, named as its key here."""


def write_scene(root: Path, name: str, broken: bool = False) -> GltfScene:
    """`broken`: the scene with the feature it tests taken out (as a renderer lacking it would draw it), written
    as NAME_broken.glb: the test shows that its score tells that picture from the right one."""
    g = _Gltf()
    scene = SCENES[name](g, broken)
    if broken:
        scene = dataclasses.replace(scene, file=f"{name}_broken.glb")
    g.write(root / scene.file)
    return scene


def write_scenes(root: Path) -> list[GltfScene]:
    """Every scene's .glb and the environment map, written into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    write_environment(root / ENVIRONMENT_FILE)
    return [write_scene(root, name) for name in SCENES]


# --- the environment ----------------------------------------------------------------------------------------------


def environment_equirect(height: int = 128) -> FloatArray:
    """A studio-like sky as a linear equirect (H, 2H, 3), row 0 = straight up: a bluish sky brightening to the
    horizon, a warm dim floor, and a bright soft key patch, so that metals and gloss show structure. Its directions
    follow three.js's equirectUv (u = atan2(z, x)/2π + 0.5, v = asin(y)/π + 0.5, v up), which openrr shares."""
    v = 1.0 - (np.arange(height) + 0.5) / height  # texture v, 1 at the top row
    u = (np.arange(2 * height) + 0.5) / (2 * height)
    lat = (v - 0.5) * np.pi
    lon = (u - 0.5) * 2 * np.pi
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    direction = np.stack([np.cos(la) * np.cos(lo), np.sin(la), np.cos(la) * np.sin(lo)], axis=-1)
    up = np.clip(direction[..., 1], -1, 1)
    sky = np.array([0.35, 0.5, 0.85]) * (0.6 + 0.6 * (1 - up[..., None]))
    ground = np.array([0.25, 0.2, 0.15]) * (0.5 + 0.5 * (1 + up[..., None]))
    radiance = np.where(up[..., None] >= 0, sky, ground)
    key = np.array([-0.5, 0.6, 0.62])
    key /= np.linalg.norm(key)
    radiance += np.array([12.0, 11.0, 9.5]) * np.exp((direction @ key - 1.0) * 40)[..., None]
    out: FloatArray = radiance.astype(np.float32)
    return out


def write_environment(path: Path) -> None:
    """A Radiance .hdr (OpenCV writes RGBE, BGR order) that both renderers load."""
    rgb = environment_equirect()
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")


def light_fields(light: Light) -> dict[str, Any]:
    """A light as the scene API's addLight command takes it (docs/render-protocol.md); the reference page reads
    the same fields."""
    return {
        "kind": light.kind,
        "color": list(light.color),
        "intensity": light.intensity,
        "range": light.range,
        "position": list(light.position),
        "direction": list(light.direction),
        "innerConeAngle": light.inner_cone_angle,
        "outerConeAngle": light.outer_cone_angle,
    }
