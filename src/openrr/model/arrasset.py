"""The .arrAsset file: a converted model laid out so that loading it is mostly `np.frombuffer`.

Layout (all little-endian; docs/arrasset.md has the details):

    0   8 bytes   MAGIC
    8   uint32    format version
    12  uint32    length of the table of contents
    16  JSON      table of contents (UTF-8): counts, bounds, materials, and where each array lies
    ..  zero padding to the next multiple of ALIGN: the data section starts here
        arrays and encoded textures, each at an offset (relative to the data section) that is a multiple of ALIGN

Vertices are interleaved in `VERTEX_DTYPE`, the record the renderer uploads; the collision structure is the
ray caster's `TriangleChunks` (Morton-ordered triangles and a box per chunk of 64), so that adding a converted model
to a session sorts nothing. When the model has one triangle mesh, its index buffer is stored in that order and
is the collision structure's too.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from openrr.model.mesh import MeshData, ModelData
from openrr.model.raycast import CHUNK, TriangleChunks
from openrr.util.atomic import atomic_file

MAGIC = b"ORRASSET"
VERSION = 1
ALIGN = 64  # every array starts on a cache line, so numpy's SIMD loops see aligned data
HEADER = np.dtype([("magic", "S8"), ("version", "<u4"), ("toc_length", "<u4")])
VERTEX_DTYPE = np.dtype([("position", "<f4", 3), ("normal", "<f4", 3), ("color", "u1", 4), ("uv", "<f4", 2)])
"""36 bytes per vertex, the renderer's own vertex record: position, normal, RGBA8 colour, glTF-convention uv."""
VERTEX_FIELDS = ("position", "normal", "color", "uv")
TRIANGLES, POINTS = "triangles", "points"


class AssetFormatError(ValueError):
    """The bytes are not a readable .arrAsset; the message says what is wrong and where."""


@dataclass(frozen=True)
class _Material:
    base_color: tuple[float, float, float, float]
    texture: int | None
    double_sided: bool
    unlit: bool


def write_asset(path: Path, model: ModelData, metadata: dict[str, Any] | None = None) -> int:
    """Write `model` to `path` atomically; returns the file size. `model.collision` None stores none."""
    blobs: list[bytes | npt.NDArray[Any]] = []
    cursor = 0

    def place(blob: bytes | npt.NDArray[Any]) -> dict[str, int]:
        nonlocal cursor
        length = len(blob) if isinstance(blob, bytes) else blob.nbytes
        entry = {"offset": cursor, "length": length}
        blobs.append(blob)
        cursor += length + (-length % ALIGN)
        return entry

    textures: list[dict[str, Any]] = []
    texture_index: dict[int, int] = {}  # id(texture array) → index: meshes sharing an image store it once
    meshes: list[dict[str, Any]] = []
    materials: list[dict[str, Any]] = []
    for mesh in model.meshes:
        texture = None
        if mesh.texture is not None and mesh.uvs is not None:
            key = id(mesh.texture)
            if key not in texture_index:
                mime, encoded = _encode_texture(mesh.texture)
                height, width = mesh.texture.shape[:2]
                textures.append({"mimeType": mime, "width": width, "height": height, "data": place(encoded)})
                texture_index[key] = len(textures) - 1
            texture = texture_index[key]
        base, colors = _split_colors(mesh.colors)
        vertices = np.zeros(len(mesh.positions), dtype=VERTEX_DTYPE)
        vertices["position"] = mesh.positions
        vertices["normal"] = mesh.normals
        vertices["color"] = colors
        if mesh.uvs is not None:
            vertices["uv"] = mesh.uvs
        material = _Material(base, texture, mesh.double_sided, mesh.unlit)
        materials.append(
            {
                "baseColor": list(material.base_color),
                "texture": material.texture,
                "doubleSided": material.double_sided,
                "unlit": material.unlit,
            }
        )
        indices = None if mesh.indices is None else np.ascontiguousarray(mesh.indices, dtype="<u4").reshape(-1, 3)
        meshes.append(
            {
                "primitive": POINTS if indices is None else TRIANGLES,
                "material": len(materials) - 1,
                "vertexCount": len(vertices),
                "triangleCount": 0 if indices is None else len(indices),
                "hasUvs": mesh.uvs is not None,
                "vertices": place(vertices),
                "indices": None if indices is None else place(indices),
            }
        )
    collision = model.collision if model.collision is not None else TriangleChunks.empty()
    collision_entry: dict[str, Any] = {"chunkSize": CHUNK, "triangles": collision.count, "chunks": collision.chunks}
    shared = _sharing_mesh(model, collision)
    if shared is not None:
        # the converter orders the mesh's index buffer for ray casts: the renderer and the caster share it
        collision_entry["mesh"] = shared
    else:
        collision_entry["positions"] = place(np.ascontiguousarray(collision.positions, dtype="<f4"))
        collision_entry["corners"] = place(np.ascontiguousarray(collision.corners, dtype="<u4"))
    collision_entry["boxMin"] = place(np.ascontiguousarray(collision.box_min, dtype="<f4"))
    collision_entry["boxMax"] = place(np.ascontiguousarray(collision.box_max, dtype="<f4"))
    toc = {
        "name": model.name,
        "bounds": {"min": _floats(model.bounds_min), "max": _floats(model.bounds_max)},
        "triangles": model.triangles,
        "points": model.points,
        "vertexLayout": [[name, VERTEX_DTYPE[name].base.str, VERTEX_DTYPE[name].shape[0]] for name in VERTEX_FIELDS],
        "textures": textures,
        "materials": materials,
        "meshes": meshes,
        "collision": collision_entry,
        "metadata": metadata or {},
    }
    table = json.dumps(toc, separators=(",", ":")).encode()
    header = np.array([(MAGIC, VERSION, len(table))], dtype=HEADER).tobytes()
    with atomic_file(path) as out:
        out.write(header + table + bytes(-(len(header) + len(table)) % ALIGN))
        for blob in blobs:
            if isinstance(blob, bytes):
                out.write(blob)
            else:
                blob.tofile(out)
            out.write(bytes(-out.tell() % ALIGN))
        return out.tell()


def read_asset(data: bytes, name: str) -> ModelData:
    """The model in `data` (an .arrAsset's bytes); its arrays are read-only views into `data` where possible."""
    toc, start = _table_of_contents(data)
    reader = _Reader(data, start)
    try:
        textures = [reader.texture(i, t) for i, t in enumerate(toc["textures"])]
        materials = toc["materials"]
        meshes = [reader.mesh(i, m, materials, textures) for i, m in enumerate(toc["meshes"])]
        collision = reader.collision(toc["collision"], meshes)
        bounds = toc["bounds"]
        return ModelData(
            name=name,
            meshes=meshes,
            bounds_min=np.asarray(bounds["min"], dtype=np.float32).reshape(3),
            bounds_max=np.asarray(bounds["max"], dtype=np.float32).reshape(3),
            triangles=int(toc["triangles"]),
            points=int(toc["points"]),
            collision=collision,
        )
    except (KeyError, TypeError, IndexError, ValueError) as e:
        if isinstance(e, AssetFormatError):
            raise
        raise AssetFormatError(f"malformed table of contents: {type(e).__name__}: {e}") from None


def read_metadata(data: bytes) -> dict[str, Any]:
    """The table of contents' `metadata` object (what the converter recorded), without reading any array."""
    toc, _ = _table_of_contents(data)
    metadata = toc.get("metadata", {})
    return metadata if isinstance(metadata, dict) else {}


def _table_of_contents(data: bytes) -> tuple[dict[str, Any], int]:
    if len(data) < HEADER.itemsize or data[:8] != MAGIC:
        raise AssetFormatError(f"it does not start with the {MAGIC.decode()} magic bytes")
    header = np.frombuffer(data, dtype=HEADER, count=1)[0]
    version, length = int(header["version"]), int(header["toc_length"])
    if version != VERSION:
        raise AssetFormatError(f"format version {version}, this server reads version {VERSION}")
    end = HEADER.itemsize + length
    if end > len(data):
        raise AssetFormatError(f"truncated: the table of contents ends at byte {end}, the file has {len(data)}")
    try:
        toc = json.loads(data[HEADER.itemsize : end])
    except (ValueError, UnicodeDecodeError) as e:
        raise AssetFormatError(f"the table of contents is not valid JSON: {e}") from None
    if not isinstance(toc, dict):
        raise AssetFormatError("the table of contents is not a JSON object")
    return toc, end + (-end % ALIGN)


class _Reader:
    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.start = start

    def array(self, where: str, blob: dict[str, Any], dtype: npt.DTypeLike, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        offset, length = self.start + int(blob["offset"]), int(blob["length"])
        if length != count * dtype.itemsize:
            raise AssetFormatError(f"{where} is {length} bytes, expected {count * dtype.itemsize} for shape {shape}")
        if offset + length > len(self.data):
            raise AssetFormatError(f"truncated: {where} ends at byte {offset + length}, the file has {len(self.data)}")
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=offset).reshape(shape)

    def texture(self, index: int, entry: dict[str, Any]) -> npt.NDArray[np.uint8]:
        blob = entry["data"]
        offset, length = self.start + int(blob["offset"]), int(blob["length"])
        if offset + length > len(self.data):
            raise AssetFormatError(
                f"truncated: texture {index} ends at byte {offset + length}, the file has {len(self.data)}"
            )
        encoded = self.data[offset : offset + length]
        try:
            with Image.open(io.BytesIO(encoded)) as image:
                return np.asarray(image.convert("RGBA"), dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise AssetFormatError(f"texture {index} cannot be decoded: {e}") from None

    def mesh(
        self, index: int, entry: dict[str, Any], materials: list[dict[str, Any]], textures: list[npt.NDArray[np.uint8]]
    ) -> MeshData:
        n = int(entry["vertexCount"])
        vertices = self.array(f"meshes[{index}].vertices", entry["vertices"], VERTEX_DTYPE, (n,))
        material = materials[int(entry["material"])]
        base = np.asarray(material["baseColor"], dtype=np.float32).reshape(4)
        # the one copy a load makes: the renderer's MeshData wants float colours
        colors = vertices["color"] * (base / np.float32(255.0))
        indices = None
        if entry["primitive"] == TRIANGLES:
            m = int(entry["triangleCount"])
            indices = self.array(f"meshes[{index}].indices", entry["indices"], "<u4", (m, 3))
        texture_index = material["texture"]
        return MeshData(
            positions=vertices["position"],
            normals=vertices["normal"],
            colors=colors.astype(np.float32, copy=False),
            indices=indices,
            uvs=vertices["uv"] if entry["hasUvs"] else None,
            texture=None if texture_index is None else textures[int(texture_index)],
            double_sided=bool(material["doubleSided"]),
            unlit=bool(material["unlit"]),
        )

    def collision(self, entry: dict[str, Any], meshes: list[MeshData]) -> TriangleChunks | None:
        count, chunks = int(entry["triangles"]), int(entry["chunks"])
        if count == 0:
            return TriangleChunks.empty()  # no triangles, or converted with generateCollisionMesh false
        if int(entry["chunkSize"]) != CHUNK:
            return None  # written for another chunk size: the ray caster builds its own
        if chunks != -(-count // CHUNK):
            raise AssetFormatError(f"collision has {chunks} chunks for {count} triangles")
        if "mesh" in entry:
            # the very arrays of the mesh, not equal copies: pickling the model sends them once
            mesh = meshes[int(entry["mesh"])]
            positions, corners = mesh.positions, mesh.indices
            if corners is None or len(corners) != count:
                raise AssetFormatError(f"collision.mesh {entry['mesh']} does not have the {count} triangles it should")
        else:
            vertices = int(entry["positions"]["length"]) // 12
            positions = self.array("collision.positions", entry["positions"], "<f4", (vertices, 3))
            corners = self.array("collision.corners", entry["corners"], "<u4", (count, 3))
            if int(corners.max()) >= vertices:
                raise AssetFormatError(f"collision.corners refers to vertex {int(corners.max())} of {vertices}")
        return TriangleChunks(
            count=count,
            positions=positions,
            corners=corners,
            box_min=self.array("collision.boxMin", entry["boxMin"], "<f4", (3, chunks)),
            box_max=self.array("collision.boxMax", entry["boxMax"], "<f4", (3, chunks)),
        )


def _sharing_mesh(model: ModelData, collision: TriangleChunks) -> int | None:
    """The mesh whose own position and index arrays the collision structure uses, if one does."""
    for index, mesh in enumerate(model.meshes):
        if collision.count and mesh.indices is collision.corners and mesh.positions is collision.positions:
            return index
    return None


def _split_colors(colors: npt.NDArray[np.float32]) -> tuple[tuple[float, float, float, float], npt.NDArray[np.uint8]]:
    """(material base colour, RGBA8 vertex colours): a uniform colour goes to the material, kept exact."""
    if len(colors) and bool(np.all(colors == colors[0])):
        r, g, b, a = (float(c) for c in colors[0])
        return (r, g, b, a), np.full((len(colors), 4), 255, dtype=np.uint8)
    quantised = np.rint(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
    return (1.0, 1.0, 1.0, 1.0), quantised


def _encode_texture(pixels: npt.NDArray[np.uint8]) -> tuple[str, bytes]:
    """PNG, lossless; RGB when every texel is opaque, which makes the file smaller."""
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGBA")
    if bool(np.all(pixels[..., 3] == 255)):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "image/png", out.getvalue()


def _floats(values: npt.ArrayLike) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
