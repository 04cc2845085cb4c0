"""glTF 2.0 (.gltf with external or data-URI buffers and images, and .glb) → `ModelData`, complete: the node tree,
every primitive placed in the rest pose, metallic-roughness materials with their extensions, samplers and images.

Read with json + numpy rather than pygltflib: pygltflib gives the JSON as dataclasses but decodes no accessor (no
strides, sparse or normalised integers), so the numpy half would be ours anyway, and its dataclass parsing of a
large document costs more than the geometry. Buffers and images come through the same resolvers as trimesh's
(DirectoryResolver, the render server's), so containment and the byte budget are unchanged; every image is checked
against the texture limits from its header before it is decoded (texture_guard.py), decoded once, as RGBA.

Every failure is a `ModelLoadError` naming the file.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import unquote_to_bytes

import numpy as np
import numpy.typing as npt
from PIL import Image

from openrr.model.geometry import LocalPrimitive, assemble_model, place, unit, vertex_normals
from openrr.model.mesh import (
    ALPHA_MODES,
    MAG_FILTERS,
    MIN_FILTERS,
    WRAP_MODES,
    Float32Array,
    Float64Array,
    ImageData,
    Material,
    MeshData,
    ModelData,
    ModelLoadError,
    Node,
    Sampler,
    TextureRef,
    UInt32Array,
)
from openrr.model.tangents import generate_tangents
from openrr.model.texture_guard import DEFAULT_TEXTURES, TextureLimits, open_image, texture_limits

logger = logging.getLogger(__name__)

Scrub = Callable[[str], str]
"""What a parser's own message goes through before it is shown: the redactor, where it may quote a URL."""


class References(Protocol):
    """What fetches the files a .gltf references: references.DirectoryResolver, the render server's resolvers."""

    def get(self, key: str) -> bytes: ...


# extensions whose data this reader understands; a file requiring any other cannot be shown correctly
SUPPORTED_EXTENSIONS = frozenset(
    {
        "KHR_texture_transform",
        "KHR_materials_unlit",
        "KHR_materials_emissive_strength",
        "KHR_mesh_quantization",  # normalised and integer attributes: every component type is read
        "EXT_texture_webp",  # Pillow decodes WebP
    }
)
COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
COMPONENT_TYPES: dict[int, np.dtype[Any]] = {
    5120: np.dtype("<i1"),
    5121: np.dtype("<u1"),
    5122: np.dtype("<i2"),
    5123: np.dtype("<u2"),
    5125: np.dtype("<u4"),
    5126: np.dtype("<f4"),
}
INDEX_TYPES = (5121, 5123, 5125)
POINTS, LINES, LINE_LOOP, LINE_STRIP, TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN = range(7)
GLB_MAGIC, GLB_JSON, GLB_BIN = b"glTF", 0x4E4F534A, 0x004E4942
# Accessors without a buffer view are zeros (plus sparse values): nothing in the file bounds their size, this does.
MAX_ZERO_FILLED = 1 << 24
# Instancing multiplies geometry: a few KB of nodes can place one large mesh a million times.
MAX_PLACED_VERTICES = 1 << 28
MAX_NODES = 1 << 22


def read_gltf(
    data: bytes,
    binary: bool,
    name: str,
    display: str,
    resolver: References,
    textures: TextureLimits = DEFAULT_TEXTURES,
    scrub: Scrub = lambda text: text,
) -> ModelData:
    """The model in `data` (GLB when `binary`), references fetched through `resolver`. `name` becomes the model's
    and its root node's name; `display` names the file in messages."""
    if not data:
        raise ModelLoadError(f"{display} is empty (0 bytes)")
    # resolvers report a budget overrun through the armed parse (texture_guard.fail_parse) as well as by raising
    with texture_limits(textures) as checked:
        try:
            model = _Reader(data, binary, name, display, resolver, textures).model()
        except ModelLoadError:
            raise
        except Exception as e:
            # a shape this reader did not foresee is still this file's problem; the traceback stays in the log
            logger.exception("reading %s failed", display)
            kind = "GLB" if binary else "glTF"
            raise ModelLoadError(scrub(f"cannot parse {display} as {kind}: {type(e).__name__}: {e}")[:400]) from e
    if checked.refused:
        raise ModelLoadError(f"cannot load {display}: {checked.refused[0]}")
    return model


@dataclass
class _Accessor:
    values: npt.NDArray[Any]
    """(count, components) as stored: integer or float."""
    normalized: bool


@dataclass
class _Tree:
    nodes: list[Node] = field(default_factory=list)
    worlds: list[Float64Array] = field(default_factory=list)
    meshes: list[tuple[int, int]] = field(default_factory=list)
    """(glTF mesh index, our node index) of every node with a mesh, in node order."""


class _Reader:
    def __init__(
        self, data: bytes, binary: bool, name: str, display: str, resolver: References, textures: TextureLimits
    ) -> None:
        self.display = display
        self.name = name
        self.resolver = resolver
        self.limits = textures
        self.glb_bin: memoryview | None = None
        self.doc = self._glb(data) if binary else self._json(data)
        self.buffers: dict[int, bytes | memoryview] = {}
        self.accessors: dict[int, _Accessor] = {}
        self.primitives: dict[tuple[int, int], LocalPrimitive | None] = {}
        self.images: list[ImageData] = []
        self.image_index: dict[int, int | None] = {}
        self.materials: list[Material] = []
        self.default_material: int | None = None

    # -- containers ------------------------------------------------------------------------------------------

    def _fail(self, problem: str) -> ModelLoadError:
        return ModelLoadError(f"cannot load {self.display}: {problem}")

    def _json(self, data: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"cannot parse {self.display} as glTF: invalid JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("asset"), dict):
            raise ModelLoadError(f"cannot parse {self.display} as glTF: the JSON has no 'asset' object")
        version = str(doc["asset"].get("version", ""))
        if not version.startswith("2."):
            raise ModelLoadError(f"cannot parse {self.display} as glTF: version '{version}' is not glTF 2.x")
        return doc

    def _glb(self, data: bytes) -> dict[str, Any]:
        shown = f"cannot parse {self.display} as GLB"
        if data[:4] != GLB_MAGIC:
            raise ModelLoadError(f"{shown}: it does not start with the 'glTF' magic bytes")
        if len(data) < 20:
            raise ModelLoadError(f"{shown}: the file ends inside its header ({len(data)} bytes)")
        version, length = struct.unpack_from("<II", data, 4)
        if version != 2:
            raise ModelLoadError(f"{shown}: container version {version} is not 2")
        if length > len(data):
            raise ModelLoadError(f"{shown}: the header says {length} bytes, the file has {len(data)}")
        offset, doc = 12, None
        while offset + 8 <= length:
            size, kind = struct.unpack_from("<II", data, offset)
            start, offset = offset + 8, offset + 8 + size
            if offset > length:
                raise ModelLoadError(f"{shown}: a chunk of {size} bytes runs past the end of the file")
            if kind == GLB_JSON and doc is None:
                doc = self._json(data[start:offset])
            elif kind == GLB_BIN and self.glb_bin is None:
                self.glb_bin = memoryview(data)[start:offset]  # no copy of what may be GBs
        if doc is None:
            raise ModelLoadError(f"{shown}: it has no JSON chunk")
        return doc

    def _list(self, key: str) -> list[Any]:
        value = self.doc.get(key, [])
        if not isinstance(value, list):
            raise self._fail(f"'{key}' is not an array")
        return value

    def _item(self, key: str, index: Any, what: str) -> dict[str, Any]:
        items = self._list(key)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(items):
            raise self._fail(f"{what} refers to {key}[{index}], but the file has {len(items)}")
        item = items[index]
        if not isinstance(item, dict):
            raise self._fail(f"{key}[{index}] is not an object")
        return item

    # -- the model -------------------------------------------------------------------------------------------

    def model(self) -> ModelData:
        required = [e for e in self.doc.get("extensionsRequired", []) if e not in SUPPORTED_EXTENSIONS]
        if required:
            raise self._fail(
                f"it requires the glTF extension{'s' if len(required) > 1 else ''} {', '.join(map(str, required))}, "
                f"which openrr does not support (supported: {', '.join(sorted(SUPPORTED_EXTENSIONS))})"
            )
        self.materials = [self._material(i, m) for i, m in enumerate(self._list("materials"))]
        tree = self._tree()
        self._check_size(tree)
        meshes: list[MeshData] = []
        for mesh_index, node in tree.meshes:
            mesh = self._item("meshes", mesh_index, f"node '{tree.nodes[node].name}'")
            primitives = mesh.get("primitives", [])
            for k in range(len(primitives)):
                local = self._primitive(mesh_index, k)
                if local is not None:
                    meshes.append(place(local, tree.worlds[node], node))
        if not meshes:
            raise ModelLoadError(f"{self.display} contains no geometry (no triangles or points)")
        return assemble_model(self.name, meshes, self.materials, self.images, tree.nodes)

    def _tree(self) -> _Tree:
        """Node 0 is the model's root; the scene's root nodes are its children, then every node in depth-first
        order (parents before children). A node reached twice (a DAG or cycle, which glTF forbids) is an error."""
        nodes = self._list("nodes")
        if len(nodes) > MAX_NODES:
            raise self._fail(f"it has {len(nodes)} nodes, over the limit of {MAX_NODES}")
        scenes = self._list("scenes")
        if scenes:
            scene = self._item("scenes", self.doc.get("scene", 0), "'scene'")
            roots = scene.get("nodes", [])
        else:
            # no scene: show every node no other node names as a child (what viewers do)
            children = {c for n in nodes if isinstance(n, dict) for c in n.get("children", [])}
            roots = [i for i in range(len(nodes)) if i not in children]
        tree = _Tree([Node(self.name, -1)], [np.identity(4)])
        seen: set[int] = set()
        stack: list[tuple[Any, int]] = [(r, 0) for r in reversed(roots)]
        while stack:
            index, parent = stack.pop()
            node = self._item("nodes", index, f"node '{tree.nodes[parent].name}'")
            if index in seen:
                raise self._fail(f"node {index} is reached twice in the node tree (glTF nodes form a strict tree)")
            seen.add(index)
            mine = len(tree.nodes)
            local = self._local_matrix(node, index)
            extras = node.get("extras")
            tree.nodes.append(
                Node(self._node_name(node, index), parent, local, extras if isinstance(extras, dict) else {})
            )
            tree.worlds.append(tree.worlds[parent] @ local)
            if "mesh" in node:
                tree.meshes.append((node["mesh"], mine))
            stack.extend((c, mine) for c in reversed(node.get("children", [])))
        return tree

    def _node_name(self, node: dict[str, Any], index: int) -> str:
        name = node.get("name")
        if isinstance(name, str) and name:
            return name
        mesh = node.get("mesh")
        meshes = self._list("meshes")
        if isinstance(mesh, int) and 0 <= mesh < len(meshes) and isinstance(meshes[mesh], dict):
            mesh_name = meshes[mesh].get("name")
            if isinstance(mesh_name, str) and mesh_name:
                return mesh_name
        return f"node{index}"

    def _local_matrix(self, node: dict[str, Any], index: int) -> Float64Array:
        try:
            if "matrix" in node:
                matrix = np.asarray(node["matrix"], dtype=np.float64)
                if matrix.shape != (16,):
                    raise ValueError("'matrix' is not 16 numbers")
                local = matrix.reshape(4, 4).T  # column-major in the file
            else:
                local = _trs(node.get("translation"), node.get("rotation"), node.get("scale"))
        except (TypeError, ValueError) as e:
            raise self._fail(f"node {index} has an invalid transform: {e}") from None
        if not np.all(np.isfinite(local)):
            raise self._fail(f"node {index} has a transform that is not finite")
        return local

    def _check_size(self, tree: _Tree) -> None:
        placed = 0
        for mesh_index, node in tree.meshes:
            mesh = self._item("meshes", mesh_index, f"node '{tree.nodes[node].name}'")
            for primitive in mesh.get("primitives", []):
                position = primitive.get("attributes", {}).get("POSITION") if isinstance(primitive, dict) else None
                if isinstance(position, int) and 0 <= position < len(self._list("accessors")):
                    placed += int(self._list("accessors")[position].get("count", 0))
        if placed > MAX_PLACED_VERTICES:
            raise self._fail(
                f"its nodes place {placed} vertices (meshes counted once per node using them), over the limit of "
                f"{MAX_PLACED_VERTICES}"
            )

    # -- primitives ------------------------------------------------------------------------------------------

    def _primitive(self, mesh_index: int, k: int) -> LocalPrimitive | None:
        key = (mesh_index, k)
        if key not in self.primitives:
            self.primitives[key] = self._read_primitive(mesh_index, k)
        return self.primitives[key]

    def _read_primitive(self, mesh_index: int, k: int) -> LocalPrimitive | None:
        primitive = self._list("meshes")[mesh_index]["primitives"][k]
        where = f"mesh {mesh_index} primitive {k}"
        if not isinstance(primitive, dict) or not isinstance(primitive.get("attributes"), dict):
            raise self._fail(f"{where} has no 'attributes'")
        attributes = primitive["attributes"]
        mode = primitive.get("mode", TRIANGLES)
        if mode in (LINES, LINE_LOOP, LINE_STRIP) or "POSITION" not in attributes:
            return None  # lines: nothing a triangle/point renderer draws
        if mode not in (POINTS, TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN):
            raise self._fail(f"{where} has an unknown mode {mode}")
        positions = self._float(attributes["POSITION"], f"{where} POSITION", (3,)).astype(np.float64)
        n = len(positions)
        if n == 0:
            return None
        if not np.all(np.isfinite(positions)):
            raise self._fail(f"{where} has positions that are not finite numbers")
        material = self._material_of(primitive, where)
        colors = self._colors(attributes.get("COLOR_0"), n, where)
        normals = self._attribute(attributes, "NORMAL", n, where, (3,))
        if mode == POINTS:
            if "indices" in primitive:
                used = self._indices(primitive["indices"], n, where)
                positions, colors = positions[used], colors[used]
                normals = None if normals is None else normals[used]
            points = np.zeros((len(positions), 3), np.float32) if normals is None else unit(normals, fallback=None)
            return LocalPrimitive(positions, points, colors, None, material=material)
        flat = (
            self._indices(primitive["indices"], n, where) if "indices" in primitive else np.arange(n, dtype=np.uint32)
        )
        triangles = _triangles(flat, mode)
        uvs = self._attribute(attributes, "TEXCOORD_0", n, where, (2,))
        uvs1 = self._attribute(attributes, "TEXCOORD_1", n, where, (2,))
        normals = vertex_normals(positions.astype(np.float32), triangles) if normals is None else unit(normals)
        tangents = self._attribute(attributes, "TANGENT", n, where, (4,))
        if tangents is not None:
            tangents = np.column_stack((unit(tangents[:, :3], (1.0, 0.0, 0.0)), np.where(tangents[:, 3] < 0, -1, 1)))
            tangents = tangents.astype(np.float32)
        else:
            normal_map = self.materials[material].normal_texture if material < len(self.materials) else None
            if normal_map is not None:
                uv = uvs1 if normal_map.tex_coord == 1 else uvs
                if uv is not None and len(triangles):
                    tangents = generate_tangents(positions.astype(np.float32), normals, uv, triangles)
        return LocalPrimitive(positions, normals, colors, triangles, uvs, uvs1, tangents, material)

    def _attribute(
        self, attributes: dict[str, Any], key: str, n: int, where: str, widths: tuple[int, ...]
    ) -> Float32Array | None:
        if key not in attributes:
            return None
        values = self._float(attributes[key], f"{where} {key}", widths)
        if len(values) != n:
            raise self._fail(f"{where} {key} has {len(values)} values for {n} vertices")
        return values

    def _colors(self, index: Any, n: int, where: str) -> Float32Array:
        if index is None:
            return np.ones((n, 4), np.float32)
        colors = np.clip(self._float(index, f"{where} COLOR_0", (3, 4)), 0.0, 1.0)
        if len(colors) != n:
            raise self._fail(f"{where} COLOR_0 has {len(colors)} values for {n} vertices")
        if colors.shape[1] == 3:
            colors = np.column_stack((colors, np.ones(n, np.float32)))
        return np.ascontiguousarray(colors, dtype=np.float32)

    def _indices(self, index: Any, n: int, where: str) -> UInt32Array:
        accessor = self._accessor(index, f"{where} indices")
        values = accessor.values
        if values.shape[1] != 1 or values.dtype.kind not in "u":
            raise self._fail(f"{where} indices are not unsigned integer scalars")
        flat = values.reshape(-1).astype(np.uint32)
        if len(flat):
            largest = int(flat.max())
            if largest >= n:
                raise self._fail(f"{where} index {largest} is out of range (the primitive has {n} vertices)")
        return flat

    def _material_of(self, primitive: dict[str, Any], where: str) -> int:
        index = primitive.get("material")
        if index is None:
            if self.default_material is None:
                # glTF's default material, appended once for every primitive without one
                self.default_material = len(self.materials)
                self.materials.append(Material(name="default"))
            return self.default_material
        if not isinstance(index, int) or not 0 <= index < len(self._list("materials")):
            raise self._fail(f"{where} refers to materials[{index}], but the file has {len(self._list('materials'))}")
        return index

    # -- accessors -------------------------------------------------------------------------------------------

    def _float(self, index: Any, what: str, widths: tuple[int, ...]) -> Float32Array:
        """An attribute as float32, normalised integers scaled as glTF says (unnormalised ones taken as they are)."""
        accessor = self._accessor(index, what)
        values = accessor.values
        if values.shape[1] not in widths:
            raise self._fail(f"{what} has {values.shape[1]} components, expected {' or '.join(map(str, widths))}")
        if values.dtype.kind == "f" or not accessor.normalized:
            return np.ascontiguousarray(values, dtype=np.float32)
        scale = np.float32(np.iinfo(values.dtype).max)
        out = values.astype(np.float32) / scale
        if values.dtype.kind == "i":
            np.maximum(out, -1.0, out=out)
        return out

    def _accessor(self, index: Any, what: str) -> _Accessor:
        if isinstance(index, int) and index in self.accessors:
            return self.accessors[index]
        accessor = self._item("accessors", index, what)
        where = f"accessor {index}"
        component = COMPONENT_TYPES.get(accessor.get("componentType", 0))
        width = COMPONENTS.get(accessor.get("type", ""))
        count = accessor.get("count")
        if component is None or width is None or not isinstance(count, int) or count < 0:
            raise self._fail(
                f"{where} has an invalid componentType, type or count ({accessor.get('componentType')}, "
                f"{accessor.get('type')}, {count})"
            )
        if width > 4:
            raise self._fail(f"{where} is a matrix ({accessor['type']}), which no vertex attribute is")
        if "bufferView" in accessor:
            values = self._view_values(accessor, component, width, count, where)
        else:
            if count * width > MAX_ZERO_FILLED:
                raise self._fail(
                    f"{where} has {count} values without a buffer view, over the limit of {MAX_ZERO_FILLED}"
                )
            values = np.zeros((count, width), component)
        sparse = accessor.get("sparse")
        if isinstance(sparse, dict):
            values = self._sparse(values, sparse, component, width, where)
        result = _Accessor(values, bool(accessor.get("normalized", False)))
        self.accessors[index] = result
        return result

    def _view_values(
        self, accessor: dict[str, Any], component: np.dtype[Any], width: int, count: int, where: str
    ) -> npt.NDArray[Any]:
        view_index = accessor["bufferView"]
        view, data = self._view(view_index, where)
        element = component.itemsize * width
        stride = view.get("byteStride") or element
        offset = accessor.get("byteOffset", 0)
        if not isinstance(stride, int) or not isinstance(offset, int) or stride < element or offset < 0:
            raise self._fail(f"{where} has an invalid byteOffset or byteStride ({offset}, {stride})")
        needed = offset + (stride * (count - 1) + element if count else 0)
        if needed > len(data):
            raise self._fail(
                f"{where} is out of range: it needs {needed} bytes of bufferView {view_index}, which has {len(data)}"
            )
        if count == 0:
            return np.zeros((0, width), component)
        strided = np.ndarray(
            (count, width), component, buffer=data, offset=offset, strides=(stride, component.itemsize)
        )
        return np.array(strided)  # owned and contiguous: the buffer is released after the load

    def _view(self, index: Any, where: str) -> tuple[dict[str, Any], memoryview]:
        view = self._item("bufferViews", index, where)
        buffer = self._buffer(view.get("buffer"), f"bufferView {index}")
        offset, length = view.get("byteOffset", 0), view.get("byteLength")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
            raise self._fail(f"bufferView {index} has an invalid byteOffset or byteLength")
        if offset + length > len(buffer):
            raise self._fail(
                f"bufferView {index} is out of range: bytes {offset}..{offset + length} of a buffer of {len(buffer)}"
            )
        return view, memoryview(buffer)[offset : offset + length]

    def _sparse(
        self, values: npt.NDArray[Any], sparse: dict[str, Any], component: np.dtype[Any], width: int, where: str
    ) -> npt.NDArray[Any]:
        count = sparse.get("count", 0)
        indices_spec, values_spec = sparse.get("indices", {}), sparse.get("values", {})
        index_type = COMPONENT_TYPES.get(indices_spec.get("componentType", 0))
        if not isinstance(count, int) or count < 1 or index_type is None or index_type.kind != "u":
            raise self._fail(f"{where} has an invalid sparse block")
        targets = self._sparse_part(indices_spec, index_type, 1, count, f"{where} sparse indices").reshape(-1)
        replacements = self._sparse_part(values_spec, component, width, count, f"{where} sparse values")
        if len(targets) and int(targets.max()) >= len(values):
            raise self._fail(f"{where} sparse index {int(targets.max())} is out of range (count {len(values)})")
        values = values.copy() if not values.flags.writeable else values
        values[targets.astype(np.intp)] = replacements
        return values

    def _sparse_part(
        self, spec: dict[str, Any], component: np.dtype[Any], width: int, count: int, where: str
    ) -> npt.NDArray[Any]:
        _, data = self._view(spec.get("bufferView"), where)
        offset = spec.get("byteOffset", 0)
        needed = offset + count * width * component.itemsize
        if not isinstance(offset, int) or offset < 0 or needed > len(data):
            raise self._fail(f"{where} are out of range: {needed} bytes needed, the bufferView has {len(data)}")
        return np.frombuffer(data, component, count * width, offset).reshape(count, width)

    def _buffer(self, index: Any, what: str) -> bytes | memoryview:
        if isinstance(index, int) and index in self.buffers:
            return self.buffers[index]
        buffer = self._item("buffers", index, what)
        uri = buffer.get("uri")
        if uri is None:
            if self.glb_bin is None or index != 0:
                raise self._fail(f"buffer {index} has no 'uri' and there is no GLB binary chunk for it")
            data: bytes | memoryview = self.glb_bin
        else:
            data = self._fetch(str(uri), f"buffer {index}")
        length = buffer.get("byteLength")
        if isinstance(length, int) and len(data) < length:
            raise self._fail(f"buffer {index} has {len(data)} bytes, its byteLength says {length}")
        self.buffers[index] = data
        return data

    def _fetch(self, uri: str, what: str) -> bytes:
        if uri.startswith("data:"):
            head, _, payload = uri.partition(",")
            try:
                if head.endswith(";base64"):
                    return base64.b64decode(payload, validate=False)
                return unquote_to_bytes(payload)
            except (binascii.Error, ValueError) as e:
                raise self._fail(f"{what} has a data URI that is not valid base64: {e}") from None
        try:
            data = self.resolver.get(uri)
        except ModelLoadError:
            raise  # the resolver's own message says which file and why
        except (FileNotFoundError, KeyError):
            raise self._fail(f"{what} references '{uri}', which was not found") from None
        except OSError as e:
            raise self._fail(f"{what} references '{uri}', which cannot be read: {e.strerror or e}") from None
        if not isinstance(data, bytes):
            raise self._fail(f"{what} references '{uri}', which cannot be read")
        return data

    # -- materials and images --------------------------------------------------------------------------------

    def _material(self, index: int, spec: Any) -> Material:
        if not isinstance(spec, dict):
            raise self._fail(f"materials[{index}] is not an object")
        where = f"material {index}"
        pbr = spec.get("pbrMetallicRoughness", {})
        extensions = spec.get("extensions", {})
        alpha_mode = spec.get("alphaMode", "OPAQUE")
        if alpha_mode not in ALPHA_MODES:
            raise self._fail(f"{where} has an unknown alphaMode '{alpha_mode}'")
        normal = self._texture_ref(spec.get("normalTexture"), f"{where} normalTexture")
        occlusion = self._texture_ref(spec.get("occlusionTexture"), f"{where} occlusionTexture")
        return Material(
            name=str(spec.get("name", "")),
            base_color=_numbers(pbr.get("baseColorFactor"), (1.0, 1.0, 1.0, 1.0)),
            base_color_texture=self._texture_ref(pbr.get("baseColorTexture"), f"{where} baseColorTexture"),
            metallic=float(pbr.get("metallicFactor", 1.0)),
            roughness=float(pbr.get("roughnessFactor", 1.0)),
            metallic_roughness_texture=self._texture_ref(
                pbr.get("metallicRoughnessTexture"), f"{where} metallicRoughnessTexture"
            ),
            normal_texture=normal,
            normal_scale=float(spec["normalTexture"].get("scale", 1.0)) if normal else 1.0,
            occlusion_texture=occlusion,
            occlusion_strength=float(spec["occlusionTexture"].get("strength", 1.0)) if occlusion else 1.0,
            emissive=_numbers(spec.get("emissiveFactor"), (0.0, 0.0, 0.0)),
            emissive_texture=self._texture_ref(spec.get("emissiveTexture"), f"{where} emissiveTexture"),
            emissive_strength=float(extensions.get("KHR_materials_emissive_strength", {}).get("emissiveStrength", 1.0)),
            alpha_mode=alpha_mode,
            alpha_cutoff=float(spec.get("alphaCutoff", 0.5)),
            double_sided=bool(spec.get("doubleSided", False)),
            unlit="KHR_materials_unlit" in extensions,
        )

    def _texture_ref(self, info: Any, where: str) -> TextureRef | None:
        if info is None:
            return None
        if not isinstance(info, dict):
            raise self._fail(f"{where} is not an object")
        texture = self._item("textures", info.get("index"), where)
        source = texture.get("source")
        webp = texture.get("extensions", {}).get("EXT_texture_webp", {})
        if isinstance(webp, dict) and "source" in webp:
            source = webp["source"]
        image = self._image(source, where) if source is not None else None
        if image is None:
            return None
        tex_coord = int(info.get("texCoord", 0))
        matrix: tuple[float, ...] | None = None
        transform = info.get("extensions", {}).get("KHR_texture_transform")
        if isinstance(transform, dict):
            matrix = texture_transform(
                _numbers(transform.get("offset"), (0.0, 0.0)),
                float(transform.get("rotation", 0.0)),
                _numbers(transform.get("scale"), (1.0, 1.0)),
            )
            tex_coord = int(transform.get("texCoord", tex_coord))
        if tex_coord not in (0, 1):
            logger.warning("%s: %s uses TEXCOORD_%d; only 0 and 1 are kept, 0 is used", self.display, where, tex_coord)
            tex_coord = 0
        return TextureRef(image, tex_coord, self._sampler(texture.get("sampler")), matrix)

    def _sampler(self, index: Any) -> Sampler:
        if index is None:
            return Sampler()
        spec = self._item("samplers", index, "a texture")

        def known(key: str, allowed: tuple[int, ...], default: int | None) -> int | None:
            value = spec.get(key, default)
            return value if value in allowed else default

        return Sampler(
            wrap_s=known("wrapS", WRAP_MODES, WRAP_MODES[0]) or WRAP_MODES[0],
            wrap_t=known("wrapT", WRAP_MODES, WRAP_MODES[0]) or WRAP_MODES[0],
            mag_filter=known("magFilter", MAG_FILTERS, None),
            min_filter=known("minFilter", MIN_FILTERS, None),
        )

    def _image(self, index: Any, where: str) -> int | None:
        """Index into the model's images of glTF image `index`, decoded once; None (the texture is dropped, as
        viewers do) for an image that cannot be fetched or decoded; an image over the limits fails the load."""
        if isinstance(index, int) and index in self.image_index:
            return self.image_index[index]
        spec = self._item("images", index, where)
        uri = spec.get("uri")
        shown = repr(str(uri)) if uri is not None and not str(uri).startswith("data:") else "(embedded)"
        name = str(spec.get("name") or (uri if shown != "(embedded)" else f"image{index}"))
        try:
            if uri is not None:
                data: bytes | memoryview = self._fetch(str(uri), f"image {index}")
            else:
                _, data = self._view(spec.get("bufferView"), f"image {index}")
            pixels = self._decode(bytes(data), shown)
        except _ImageUnreadable as e:
            logger.warning("%s: image %s cannot be decoded (%s); its textures are dropped", self.display, index, e)
            self.image_index[index] = None
            return None
        except ModelLoadError as e:
            if isinstance(e, _TooLarge):
                raise
            # a missing texture: the model is still worth showing (trimesh and three.js carry on too)
            logger.warning("%s; its textures are dropped", e)
            self.image_index[index] = None
            return None
        self.images.append(ImageData(pixels, name))
        self.image_index[index] = len(self.images) - 1
        return len(self.images) - 1

    def _decode(self, data: bytes, shown: str) -> npt.NDArray[np.uint8]:
        try:
            image = open_image(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise _TooLarge(
                self._fail(f"texture {shown} is over the limit of {self.limits.max_pixels} pixels ({e})")
            ) from None
        except Exception as e:
            raise _ImageUnreadable(f"{type(e).__name__}: {e}") from None
        with image:
            problem = self.limits.problem(shown, *image.size)
            if problem is not None:
                raise _TooLarge(self._fail(problem))
            try:
                rgba = image.convert("RGBA") if image.mode != "RGBA" else image
                rgba.load()
            except Exception as e:
                raise _ImageUnreadable(f"{type(e).__name__}: {e}") from None
            return np.asarray(rgba, dtype=np.uint8).copy()


class _TooLarge(ModelLoadError):
    def __init__(self, error: ModelLoadError) -> None:
        super().__init__(str(error))


class _ImageUnreadable(Exception):
    pass


def texture_transform(
    offset: tuple[float, ...], rotation: float, scale: tuple[float, ...]
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """KHR_texture_transform's matrix, row-major 3×3 on (u, v, 1): translation · rotation · scale, the extension's
    order, with the rotation counter-clockwise as seen on the image (v runs down it): u' = cos·u + sin·v,
    v' = -sin·u + cos·v. That is the sense three.js (Matrix3.setUvTransform) and Khronos' sample viewer rotate in and
    that the TextureTransformTest sample model checks; the extension's GLSL snippet, read with GLSL's column-major
    mat3 constructor, would rotate the other way.

    three.js scales after rotating (scale · rotation): with a rotation and unequal u and v scales its picture differs
    from this order, which is the extension's."""
    c, s = math.cos(rotation), math.sin(rotation)
    sx, sy = scale[0], scale[1]
    return (c * sx, s * sy, offset[0], -s * sx, c * sy, offset[1], 0.0, 0.0, 1.0)


def _numbers(value: Any, default: tuple[float, ...]) -> Any:
    if value is None:
        return default
    numbers = tuple(float(v) for v in value)
    if len(numbers) != len(default):
        raise ValueError(f"expected {len(default)} numbers, got {len(numbers)}")
    return numbers


def _trs(translation: Any, rotation: Any, scale: Any) -> Float64Array:
    t = np.asarray(translation if translation is not None else (0, 0, 0), dtype=np.float64)
    q = np.asarray(rotation if rotation is not None else (0, 0, 0, 1), dtype=np.float64)
    s = np.asarray(scale if scale is not None else (1, 1, 1), dtype=np.float64)
    if t.shape != (3,) or q.shape != (4,) or s.shape != (3,):
        raise ValueError("translation, rotation or scale has the wrong number of values")
    length = np.linalg.norm(q)
    x, y, z, w = q / length if length > 0 else (0.0, 0.0, 0.0, 1.0)
    rotation_matrix = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    matrix = np.identity(4)
    matrix[:3, :3] = rotation_matrix * s  # R · S: scale the columns
    matrix[:3, 3] = t
    return matrix


def _triangles(flat: UInt32Array, mode: Literal[4, 5, 6] | int) -> UInt32Array:
    """(M, 3) triangles of a triangle list, strip or fan, as glTF defines their corners."""
    if mode == TRIANGLES:
        whole = len(flat) - len(flat) % 3
        return np.ascontiguousarray(flat[:whole].reshape(-1, 3))
    count = len(flat) - 2
    if count < 1:
        return np.zeros((0, 3), np.uint32)
    i = np.arange(count)
    if mode == TRIANGLE_STRIP:
        # glTF: triangle i is (v[i], v[i + 1 + i % 2], v[i + 2 - i % 2]), keeping every triangle counter-clockwise
        odd = i % 2
        triangles = np.column_stack((flat[i], flat[i + 1 + odd], flat[i + 2 - odd]))
        # strips stitch with degenerate triangles (a repeated index): they draw nothing
        keep = (
            (triangles[:, 0] != triangles[:, 1])
            & (triangles[:, 1] != triangles[:, 2])
            & (triangles[:, 0] != triangles[:, 2])
        )
        return np.ascontiguousarray(triangles[keep], dtype=np.uint32)
    # fan: (v[i + 1], v[i + 2], v[0])
    return np.ascontiguousarray(np.column_stack((flat[i + 1], flat[i + 2], np.full(count, flat[0]))), dtype=np.uint32)
