"""The .arrAsset file: a converted model laid out so that loading it is mostly `np.frombuffer`.

Layout (all little-endian; docs/arrasset.md has the details):

    0   8 bytes   MAGIC
    8   uint32    format version
    12  uint32    length of the table of contents
    16  JSON      table of contents (UTF-8): counts, bounds, nodes, materials, and where each array lies
    ..  zero padding to the next multiple of ALIGN: the data section starts here
        arrays and encoded images, each at an offset (relative to the data section) that is a multiple of ALIGN

Version 2 holds a whole `ModelData`: the node tree (names, parents, local transforms, metadata), glTF
metallic-roughness materials with every texture reference, the images (PNG, lossless), and per primitive its
vertices (interleaved in `VERTEX_DTYPE`), optional second UV set and tangents, its node and its material. The
collision structure is the ray caster's `TriangleChunks` (Morton-ordered triangles, a box per chunk of 64, the node
of each triangle), so that adding a converted model to a session sorts nothing. When the model has one triangle
mesh, its index buffer is stored in that order and is the collision structure's too. Version 1 files (one material
per mesh: base colour, one texture, sidedness, unlit) still read (`_v1_materials`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from openrr.model.mesh import (
    ALPHA_MODES,
    MAG_FILTERS,
    MIN_FILTERS,
    SCENE_GRAPH_MODES,
    WRAP_MODES,
    ImageData,
    Material,
    MeshData,
    ModelData,
    Node,
    Sampler,
    SceneGraphMode,
    TextureRef,
)
from openrr.model.raycast import CHUNK, TriangleChunks
from openrr.util.atomic import atomic_file

MAGIC = b"ORRASSET"
VERSION = 2
READABLE_VERSIONS = (1, 2)
ALIGN = 64  # every array starts on a cache line, so numpy's SIMD loops see aligned data
HEADER = np.dtype([("magic", "S8"), ("version", "<u4"), ("toc_length", "<u4")])
VERTEX_DTYPE = np.dtype([("position", "<f4", 3), ("normal", "<f4", 3), ("color", "u1", 4), ("uv", "<f4", 2)])
"""36 bytes per vertex: position, normal, RGBA8 COLOR_0, glTF-convention uv (TEXCOORD_0)."""
VERTEX_FIELDS = ("position", "normal", "color", "uv")
TRIANGLES, POINTS = "triangles", "points"
# textures whose texels are colours (sampled as sRGB); every other use is data (sampled as linear)
SRGB_USES = ("baseColor", "emissive")
TEXTURE_SLOTS = ("baseColor", "metallicRoughness", "normal", "occlusion", "emissive")
COLOR_EXACT = 1e-6
"""How far a float colour may lie from k/255 and still be stored as the byte k: float32 division of a byte by 255
rounds differently in different readers, by far less than this."""


class AssetFormatError(ValueError):
    """The bytes are not a readable .arrAsset; the message says what is wrong and where."""


# --- writing --------------------------------------------------------------------------------------------------


class _Blobs:
    """The data section being laid out: each blob at a multiple of ALIGN."""

    def __init__(self) -> None:
        self.items: list[bytes | npt.NDArray[Any]] = []
        self.cursor = 0

    def place(self, blob: bytes | npt.NDArray[Any]) -> dict[str, int]:
        length = len(blob) if isinstance(blob, bytes) else blob.nbytes
        entry = {"offset": self.cursor, "length": length}
        self.items.append(blob)
        self.cursor += length + (-length % ALIGN)
        return entry


def write_asset(path: Path, model: ModelData, metadata: dict[str, Any] | None = None) -> int:
    """Write `model` to `path` atomically; returns the file size. `model.collision` None stores none."""
    blobs = _Blobs()
    images = [_image_entry(i, image, model.materials, blobs) for i, image in enumerate(model.images)]
    meshes = [_mesh_entry(mesh, blobs) for mesh in model.meshes]
    toc = {
        "name": model.name,
        "bounds": {"min": _floats(model.bounds_min), "max": _floats(model.bounds_max)},
        "triangles": model.triangles,
        "points": model.points,
        "sceneGraphMode": model.scene_graph_mode,
        "vertexLayout": [[name, VERTEX_DTYPE[name].base.str, VERTEX_DTYPE[name].shape[0]] for name in VERTEX_FIELDS],
        "nodes": [_node_entry(node) for node in model.nodes],
        "nodeLocals": _node_locals(model.nodes, blobs),
        "images": images,
        "materials": [_material_entry(material) for material in model.materials],
        "meshes": meshes,
        "collision": _collision_entry(model, blobs),
        "metadata": metadata or {},
    }
    table = json.dumps(toc, separators=(",", ":"), allow_nan=False).encode()
    header = np.array([(MAGIC, VERSION, len(table))], dtype=HEADER).tobytes()
    with atomic_file(path) as out:
        out.write(header + table + bytes(-(len(header) + len(table)) % ALIGN))
        for blob in blobs.items:
            if isinstance(blob, bytes):
                out.write(blob)
            else:
                blob.tofile(out)
            out.write(bytes(-out.tell() % ALIGN))
        return out.tell()


def _node_entry(node: Node) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": node.name, "parent": node.parent}
    if node.metadata:
        entry["metadata"] = node.metadata
    return entry


def _node_locals(nodes: list[Node], blobs: _Blobs) -> dict[str, int] | None:
    """Every node's local transform, K × 16 float64 row-major: an array rather than JSON text, which a tree of
    10,000s of parts would spend most of its table-of-contents parsing on."""
    if not nodes:
        return None
    return blobs.place(np.stack([np.asarray(n.local, dtype="<f8").reshape(16) for n in nodes]))


def _image_entry(index: int, image: ImageData, materials: list[Material], blobs: _Blobs) -> dict[str, Any]:
    uses = sorted(
        {slot for m in materials for slot, ref in _slots(m) if ref is not None and ref.image == index},
        key=TEXTURE_SLOTS.index,
    )
    srgb = {use in SRGB_USES for use in uses}
    space = "srgb" if srgb == {True} else "linear" if srgb == {False} else "mixed" if srgb else "unused"
    height, width = image.pixels.shape[:2]
    return {
        "name": image.name,
        "mimeType": "image/png",
        "width": int(width),
        "height": int(height),
        "uses": uses,
        "colorSpace": space,
        "data": blobs.place(_encode_png(image.pixels)),
    }


def _slots(material: Material) -> list[tuple[str, TextureRef | None]]:
    return [
        ("baseColor", material.base_color_texture),
        ("metallicRoughness", material.metallic_roughness_texture),
        ("normal", material.normal_texture),
        ("occlusion", material.occlusion_texture),
        ("emissive", material.emissive_texture),
    ]


def _material_entry(material: Material) -> dict[str, Any]:
    textures = {f"{slot}Texture": None if ref is None else _texture_entry(ref) for slot, ref in _slots(material)}
    return {
        "name": material.name,
        "baseColor": _floats(material.base_color),
        "metallic": float(material.metallic),
        "roughness": float(material.roughness),
        "normalScale": float(material.normal_scale),
        "occlusionStrength": float(material.occlusion_strength),
        "emissive": _floats(material.emissive),
        "emissiveStrength": float(material.emissive_strength),
        "alphaMode": material.alpha_mode,
        "alphaCutoff": float(material.alpha_cutoff),
        "doubleSided": bool(material.double_sided),
        "unlit": bool(material.unlit),
        **textures,
    }


def _texture_entry(ref: TextureRef) -> dict[str, Any]:
    sampler = ref.sampler
    return {
        "image": ref.image,
        "texCoord": ref.tex_coord,
        "sampler": {
            "wrapS": sampler.wrap_s,
            "wrapT": sampler.wrap_t,
            "magFilter": sampler.mag_filter,
            "minFilter": sampler.min_filter,
        },
        "transform": None if ref.transform is None else _floats(ref.transform),
    }


def _mesh_entry(mesh: MeshData, blobs: _Blobs) -> dict[str, Any]:
    n = len(mesh.positions)
    vertices = np.zeros(n, dtype=VERTEX_DTYPE)
    vertices["position"] = mesh.positions
    vertices["normal"] = mesh.normals
    colors = np.broadcast_to(np.asarray(mesh.colors, dtype=np.float32), (n, 4))
    quantised = np.rint(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
    vertices["color"] = quantised
    if mesh.uvs is not None:
        vertices["uv"] = mesh.uvs
    # bytes where they hold the colours (8-bit sources, white), else the floats too: COLOR_0 may be float in glTF
    exact = bool(np.all(np.abs(quantised / np.float32(255.0) - colors) <= COLOR_EXACT))
    indices = None if mesh.indices is None else np.ascontiguousarray(mesh.indices, dtype="<u4").reshape(-1, 3)
    return {
        "primitive": POINTS if indices is None else TRIANGLES,
        "material": int(mesh.material),
        "node": int(mesh.node),
        "vertexCount": n,
        "triangleCount": 0 if indices is None else len(indices),
        "hasUvs": mesh.uvs is not None,
        "vertices": blobs.place(vertices),
        "indices": None if indices is None else blobs.place(indices),
        "colors": None if exact else blobs.place(np.ascontiguousarray(colors, dtype="<f4")),
        "uvs1": None if mesh.uvs1 is None else blobs.place(np.ascontiguousarray(mesh.uvs1, dtype="<f4")),
        "tangents": None if mesh.tangents is None else blobs.place(np.ascontiguousarray(mesh.tangents, dtype="<f4")),
    }


def _collision_entry(model: ModelData, blobs: _Blobs) -> dict[str, Any]:
    collision = model.collision if model.collision is not None else TriangleChunks.empty()
    entry: dict[str, Any] = {"chunkSize": CHUNK, "triangles": collision.count, "chunks": collision.chunks}
    shared = _sharing_mesh(model, collision)
    if shared is not None:
        # the converter orders the mesh's index buffer for ray casts: the renderer and the caster share it
        entry["mesh"] = shared
    else:
        entry["positions"] = blobs.place(np.ascontiguousarray(collision.positions, dtype="<f4"))
        entry["corners"] = blobs.place(np.ascontiguousarray(collision.corners, dtype="<u4"))
    entry["boxMin"] = blobs.place(np.ascontiguousarray(collision.box_min, dtype="<f4"))
    entry["boxMax"] = blobs.place(np.ascontiguousarray(collision.box_max, dtype="<f4"))
    if collision.nodes is not None and collision.count:
        nodes = np.asarray(collision.nodes, dtype=np.uint32)
        starts = np.flatnonzero(np.diff(nodes, prepend=np.uint32(nodes[0]) + np.uint32(1)))
        if len(starts) <= 64:
            # triangles come grouped by mesh, so by node: a few runs say it in the table, without an array
            counts = np.diff(np.append(starts, len(nodes)))
            entry["nodeRuns"] = [[int(nodes[s]), int(c)] for s, c in zip(starts, counts, strict=True)]
        else:
            entry["nodes"] = blobs.place(np.ascontiguousarray(nodes, dtype="<u4"))
    return entry


def _sharing_mesh(model: ModelData, collision: TriangleChunks) -> int | None:
    """The mesh whose own position and index arrays the collision structure uses, if one does."""
    for index, mesh in enumerate(model.meshes):
        if collision.count and mesh.indices is collision.corners and mesh.positions is collision.positions:
            return index
    return None


def _encode_png(pixels: npt.NDArray[np.uint8]) -> bytes:
    """PNG, lossless; RGB when every texel is opaque, which makes the file smaller."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGBA")
    if bool(np.all(pixels[..., 3] == 255)):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _floats(values: npt.ArrayLike) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


# --- reading --------------------------------------------------------------------------------------------------


def read_asset(data: bytes, name: str) -> ModelData:
    """The model in `data` (an .arrAsset's bytes); its arrays are read-only views into `data` where possible."""
    toc, start, version = _table_of_contents(data)
    reader = _Reader(data, start)
    try:
        images = [reader.image(i, entry) for i, entry in enumerate(toc.get("images", toc.get("textures", [])))]
        if version == 1:
            materials, mesh_materials = _v1_materials(toc["materials"], toc["meshes"], len(images))
            nodes: list[Node] = []
            mode = "dynamic"
        else:
            materials = [_material(i, entry, len(images)) for i, entry in enumerate(toc["materials"])]
            mesh_materials = [int(m["material"]) for m in toc["meshes"]]
            nodes = _nodes(toc["nodes"], reader.node_locals(toc["nodeLocals"], len(toc["nodes"])))
            mode = toc["sceneGraphMode"]
            if mode not in SCENE_GRAPH_MODES:
                raise AssetFormatError(f"sceneGraphMode '{mode}' is not one of {', '.join(SCENE_GRAPH_MODES)}")
        meshes = [
            reader.mesh(i, entry, material, len(materials), max(len(nodes), 1))
            for i, (entry, material) in enumerate(zip(toc["meshes"], mesh_materials, strict=True))
        ]
        collision = reader.collision(toc["collision"], meshes, max(len(nodes), 1))
        bounds = toc["bounds"]
        return ModelData(
            name=name,
            meshes=meshes,
            bounds_min=np.asarray(bounds["min"], dtype=np.float32).reshape(3),
            bounds_max=np.asarray(bounds["max"], dtype=np.float32).reshape(3),
            triangles=int(toc["triangles"]),
            points=int(toc["points"]),
            materials=materials,
            images=images,
            nodes=nodes,
            collision=collision,
            scene_graph_mode=cast("SceneGraphMode", mode),
        )
    except (KeyError, TypeError, IndexError, ValueError) as e:
        if isinstance(e, AssetFormatError):
            raise
        raise AssetFormatError(f"malformed table of contents: {type(e).__name__}: {e}") from None


def read_metadata(data: bytes) -> dict[str, Any]:
    """The table of contents' `metadata` object (what the converter recorded), without reading any array."""
    toc, _, _ = _table_of_contents(data)
    metadata = toc.get("metadata", {})
    return metadata if isinstance(metadata, dict) else {}


def _table_of_contents(data: bytes) -> tuple[dict[str, Any], int, int]:
    if len(data) < HEADER.itemsize or data[:8] != MAGIC:
        raise AssetFormatError(f"it does not start with the {MAGIC.decode()} magic bytes")
    header = np.frombuffer(data, dtype=HEADER, count=1)[0]
    version, length = int(header["version"]), int(header["toc_length"])
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise AssetFormatError(f"format version {version}, this server reads versions {readable}")
    end = HEADER.itemsize + length
    if end > len(data):
        raise AssetFormatError(f"truncated: the table of contents ends at byte {end}, the file has {len(data)}")
    try:
        toc = json.loads(data[HEADER.itemsize : end])
    except (ValueError, UnicodeDecodeError) as e:
        raise AssetFormatError(f"the table of contents is not valid JSON: {e}") from None
    if not isinstance(toc, dict):
        raise AssetFormatError("the table of contents is not a JSON object")
    return toc, end + (-end % ALIGN), version


def _nodes(entries: list[dict[str, Any]], locals_: npt.NDArray[np.float64]) -> list[Node]:
    nodes = []
    for index, entry in enumerate(entries):
        parent = int(entry["parent"])
        # parents before children, one root: what every consumer of the tree relies on
        if (index == 0) != (parent == -1) or parent >= index or parent < -1:
            raise AssetFormatError(f"nodes[{index}] has parent {parent}: the root is node 0, parents come first")
        metadata = entry.get("metadata", {})
        if not isinstance(metadata, dict):
            raise AssetFormatError(f"nodes[{index}].metadata is not a JSON object")
        nodes.append(Node(str(entry["name"]), parent, locals_[index], metadata))
    return nodes


def _material(index: int, entry: dict[str, Any], images: int) -> Material:
    where = f"materials[{index}]"
    alpha = entry["alphaMode"]
    if alpha not in ALPHA_MODES:
        raise AssetFormatError(f"{where}.alphaMode '{alpha}' is not one of {', '.join(ALPHA_MODES)}")

    def texture(slot: str) -> TextureRef | None:
        ref = entry.get(f"{slot}Texture")
        return None if ref is None else _texture(f"{where}.{slot}Texture", ref, images)

    return Material(
        name=str(entry["name"]),
        base_color=cast("tuple[float, float, float, float]", _numbers(f"{where}.baseColor", entry["baseColor"], 4)),
        base_color_texture=texture("baseColor"),
        metallic=float(entry["metallic"]),
        roughness=float(entry["roughness"]),
        metallic_roughness_texture=texture("metallicRoughness"),
        normal_texture=texture("normal"),
        normal_scale=float(entry["normalScale"]),
        occlusion_texture=texture("occlusion"),
        occlusion_strength=float(entry["occlusionStrength"]),
        emissive=cast("tuple[float, float, float]", _numbers(f"{where}.emissive", entry["emissive"], 3)),
        emissive_texture=texture("emissive"),
        emissive_strength=float(entry["emissiveStrength"]),
        alpha_mode=alpha,
        alpha_cutoff=float(entry["alphaCutoff"]),
        double_sided=bool(entry["doubleSided"]),
        unlit=bool(entry["unlit"]),
    )


def _texture(where: str, entry: dict[str, Any], images: int) -> TextureRef:
    image, tex_coord = int(entry["image"]), int(entry["texCoord"])
    if not 0 <= image < images:
        raise AssetFormatError(f"{where} refers to image {image}, the asset has {images}")
    if tex_coord not in (0, 1):
        raise AssetFormatError(f"{where}.texCoord is {tex_coord}, only 0 and 1 exist")
    sampler = entry["sampler"]
    checks: list[tuple[str, tuple[int, ...], bool]] = [
        ("wrapS", WRAP_MODES, False),
        ("wrapT", WRAP_MODES, False),
        ("magFilter", MAG_FILTERS, True),
        ("minFilter", MIN_FILTERS, True),
    ]
    for key, allowed, optional in checks:
        value = sampler[key]
        if not (value is None and optional) and value not in allowed:
            raise AssetFormatError(f"{where}.sampler.{key} is {value}, not a glTF value for it")
    transform = entry["transform"]
    return TextureRef(
        image=image,
        tex_coord=tex_coord,
        sampler=Sampler(sampler["wrapS"], sampler["wrapT"], sampler["magFilter"], sampler["minFilter"]),
        transform=None if transform is None else _numbers(f"{where}.transform", transform, 9),
    )


def _numbers(where: str, values: Any, count: int) -> tuple[float, ...]:
    numbers = tuple(float(v) for v in values)
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise AssetFormatError(f"{where} is not {count} finite numbers")
    return numbers


def _v1_materials(
    entries: list[dict[str, Any]], meshes: list[dict[str, Any]], images: int
) -> tuple[list[Material], list[int]]:
    """Version 1 had one material per mesh: base colour (or white with the colour in the vertices), one base-colour
    texture, sidedness and unlit. Its colours were meant as linear already (glTF's own, or linearised by the
    gamma settings), so they are kept as they are. v1 shading was diffuse only: a rough dielectric is the PBR
    material that looks most like it. Vertex colours were stored without the base colour: they are COLOR_0."""
    materials = []
    for index, entry in enumerate(entries):
        texture = entry["texture"]
        if texture is not None and not 0 <= int(texture) < images:
            raise AssetFormatError(f"materials[{index}] refers to texture {texture}, the asset has {images}")
        materials.append(
            Material(
                name="",
                base_color=cast(
                    "tuple[float, float, float, float]",
                    _numbers(f"materials[{index}].baseColor", entry["baseColor"], 4),
                ),
                base_color_texture=None if texture is None else TextureRef(int(texture)),
                metallic=0.0,
                roughness=1.0,
                double_sided=bool(entry["doubleSided"]),
                unlit=bool(entry["unlit"]),
            )
        )
    return materials, [int(m["material"]) for m in meshes]


class _Reader:
    def __init__(self, data: bytes, start: int) -> None:
        self.data = data
        self.start = start

    def array(self, where: str, blob: dict[str, Any], dtype: npt.DTypeLike, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        offset, length = self.start + int(blob["offset"]), int(blob["length"])
        if length != count * dtype.itemsize:
            raise AssetFormatError(f"{where} is {length} bytes, expected {count * dtype.itemsize} for shape {shape}")
        if offset + length > len(self.data):
            raise AssetFormatError(f"truncated: {where} ends at byte {offset + length}, the file has {len(self.data)}")
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=offset).reshape(shape)

    def node_locals(self, blob: dict[str, Any] | None, count: int) -> npt.NDArray[np.float64]:
        """(K, 4, 4), writable (a session may change a part's transform in place): the one copy, of K × 128 bytes."""
        if count == 0:
            return np.zeros((0, 4, 4), dtype=np.float64)
        if blob is None:
            raise AssetFormatError(f"nodeLocals is missing for the {count} nodes")
        locals_ = self.array("nodeLocals", blob, "<f8", (count, 4, 4)).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(locals_).all(axis=(1, 2)))
        if len(bad):
            raise AssetFormatError(f"nodes[{int(bad[0])}] has a local transform that is not finite")
        return locals_

    def image(self, index: int, entry: dict[str, Any]) -> ImageData:
        blob = entry["data"]
        offset, length = self.start + int(blob["offset"]), int(blob["length"])
        if offset + length > len(self.data):
            raise AssetFormatError(
                f"truncated: image {index} ends at byte {offset + length}, the file has {len(self.data)}"
            )
        encoded = self.data[offset : offset + length]
        try:
            with Image.open(io.BytesIO(encoded)) as image:
                pixels = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise AssetFormatError(f"image {index} cannot be decoded: {e}") from None
        return ImageData(pixels, str(entry.get("name", "")))

    def mesh(self, index: int, entry: dict[str, Any], material: int, materials: int, nodes: int) -> MeshData:
        where = f"meshes[{index}]"
        n = int(entry["vertexCount"])
        vertices = self.array(f"{where}.vertices", entry["vertices"], VERTEX_DTYPE, (n,))
        node = int(entry.get("node", 0))
        if not 0 <= material < materials:
            raise AssetFormatError(f"{where} uses material {material}, the asset has {materials}")
        if not 0 <= node < nodes:
            raise AssetFormatError(f"{where} belongs to node {node}, the asset has {nodes}")
        indices = None
        if entry["primitive"] == TRIANGLES:
            m = int(entry["triangleCount"])
            indices = self.array(f"{where}.indices", entry["indices"], "<u4", (m, 3))
            if m and int(indices.max()) >= n:
                raise AssetFormatError(f"{where}.indices refers to vertex {int(indices.max())} of {n}")
        optional = self.optional(where, entry)
        floats = optional("colors", 4)
        # the one copy a load makes: MeshData wants float colours
        colors = floats if floats is not None else vertices["color"] * np.float32(1.0 / 255.0)
        return MeshData(
            positions=vertices["position"],
            normals=vertices["normal"],
            colors=colors.astype(np.float32, copy=False),
            indices=indices,
            uvs=vertices["uv"] if entry["hasUvs"] else None,
            uvs1=optional("uvs1", 2),
            tangents=optional("tangents", 4),
            material=material,
            node=node,
        )

    def optional(self, where: str, entry: dict[str, Any]) -> Callable[[str, int], npt.NDArray[np.float32] | None]:
        n = int(entry["vertexCount"])

        def read(key: str, width: int) -> npt.NDArray[np.float32] | None:
            blob = entry.get(key)
            return None if blob is None else self.array(f"{where}.{key}", blob, "<f4", (n, width))

        return read

    def collision(self, entry: dict[str, Any], meshes: list[MeshData], nodes: int) -> TriangleChunks | None:
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
        triangle_nodes = None
        if entry.get("nodes") is not None:
            triangle_nodes = self.array("collision.nodes", entry["nodes"], "<u4", (count,))
        elif entry.get("nodeRuns") is not None:
            runs = np.asarray(entry["nodeRuns"], dtype=np.int64).reshape(-1, 2)
            if runs.size == 0 or runs.min() < 0 or int(runs[:, 1].sum()) != count:
                raise AssetFormatError(f"collision.nodeRuns do not cover the {count} triangles")
            triangle_nodes = np.repeat(runs[:, 0], runs[:, 1]).astype(np.uint32)
        if triangle_nodes is not None and int(triangle_nodes.max()) >= nodes:
            raise AssetFormatError(f"collision.nodes refers to node {int(triangle_nodes.max())} of {nodes}")
        return TriangleChunks(
            count=count,
            positions=positions,
            corners=corners,
            box_min=self.array("collision.boxMin", entry["boxMin"], "<f4", (3, chunks)),
            box_max=self.array("collision.boxMax", entry["boxMax"], "<f4", (3, chunks)),
            nodes=triangle_nodes,
        )
