"""model/gltf_import.py: glTF files written by the test (json + numpy, data URIs or a GLB binary chunk) read back
into the model: the node tree, placed geometry, every material field and extension, samplers, vertex colours,
strips and fans, sparse accessors, generated tangents, and the exact error messages; OBJ with .mtl through
trimesh_import.read_model."""

from __future__ import annotations

import base64
import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from openrr.model.colour import srgb_to_linear
from openrr.model.gltf_import import read_gltf, texture_transform
from openrr.model.mesh import (
    CLAMP_TO_EDGE,
    MIRRORED_REPEAT,
    NEAREST,
    NEAREST_MIPMAP_LINEAR,
    REPEAT,
    Material,
    ModelData,
    ModelLoadError,
    Sampler,
)
from openrr.model.references import DirectoryResolver
from openrr.model.texture_guard import TextureLimits
from openrr.model.trimesh_import import read_model

FLOAT, U8, U16, U32 = 5126, 5121, 5123, 5125
TRIANGLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
# a unit quad in the xy plane facing +z; uv (0, 0) is its top-left corner (x 0, y 1), as glTF's convention has it
QUAD = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
QUAD_UV = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
QUAD_INDICES = np.array([0, 1, 2, 0, 2, 3], np.uint16)


class Builder:
    """A glTF document with one binary buffer, written as .gltf (data URI) or .glb."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}]}
        self.blob = bytearray()

    def add(self, key: str, item: dict[str, Any]) -> int:
        self.doc.setdefault(key, []).append(item)
        return len(self.doc[key]) - 1

    def view(self, data: bytes, stride: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        view: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if stride:
            view["byteStride"] = stride
        self.blob += data
        return self.add("bufferViews", view)

    def accessor(self, values: npt.ArrayLike, component: int = FLOAT, normalized: bool = False, **extra: Any) -> int:
        array = np.asarray(values)
        width = 1 if array.ndim == 1 else array.shape[1]
        kind = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}[width]
        spec: dict[str, Any] = {
            "bufferView": self.view(array.tobytes()),
            "componentType": component,
            "count": len(array),
            "type": kind,
            **extra,
        }
        if normalized:
            spec["normalized"] = True
        return self.add("accessors", spec)

    def mesh(self, positions: npt.ArrayLike = TRIANGLE, name: str | None = None, **primitive: Any) -> int:
        attributes = {"POSITION": self.accessor(np.asarray(positions, np.float32)), **primitive.pop("attributes", {})}
        mesh: dict[str, Any] = {"primitives": [{"attributes": attributes, **primitive}]}
        if name:
            mesh["name"] = name
        return self.add("meshes", mesh)

    def node(self, root: bool = True, **spec: Any) -> int:
        index = self.add("nodes", spec)
        if root:
            self.doc["scenes"][0]["nodes"].append(index)
        return index

    def image(self, rgba: npt.NDArray[np.uint8]) -> int:
        out = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(out, "PNG")
        return self.add("images", {"uri": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()})

    def gltf(self) -> bytes:
        doc = dict(self.doc)
        if self.blob:
            uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.blob)).decode()
            doc["buffers"] = [{"byteLength": len(self.blob), "uri": uri}]
        return json.dumps(doc).encode()

    def glb(self) -> bytes:
        doc = dict(self.doc)
        blob = bytes(self.blob) + b"\0" * (-len(self.blob) % 4)
        doc["buffers"] = [{"byteLength": len(blob)}]
        text = json.dumps(doc).encode()
        text += b" " * (-len(text) % 4)
        body = struct.pack("<I", len(text)) + b"JSON" + text + struct.pack("<I", len(blob)) + b"BIN\0" + blob
        return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def load(builder: Builder, tmp_path: Path, binary: bool = False, **kwargs: Any) -> ModelData:
    path = tmp_path / ("m.glb" if binary else "m.gltf")
    path.write_bytes(builder.glb() if binary else builder.gltf())
    return read_gltf(path.read_bytes(), binary, path.name, path.name, DirectoryResolver(path, path.name), **kwargs)


def error(builder: Builder, tmp_path: Path, binary: bool = False) -> str:
    with pytest.raises(ModelLoadError) as e:
        load(builder, tmp_path, binary)
    return str(e.value)


# -- the tree ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
def test_node_tree_names_transforms_and_instances(tmp_path: Path, binary: bool) -> None:
    b = Builder()
    tri = b.mesh(name="tri")
    # assembly (TRS) → arm (matrix, scale 2, extras) and an unnamed instance of the same mesh (named after it)
    arm = b.node(
        False, name="arm", mesh=tri, matrix=[2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 5, 1], extras={"sku": 7}
    )
    instance = b.node(False, mesh=tri, extras=["not", "an", "object"])
    quarter = [0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)]  # 90° about z
    b.node(name="assembly", translation=[1, 0, 0], rotation=quarter, children=[arm, instance])
    b.node()  # an empty root: named by its index
    b.node(False, name="not in the scene", mesh=tri)
    model = load(b, tmp_path, binary)

    assert [(n.name, n.parent) for n in model.nodes] == [
        (model.name, -1),
        ("assembly", 0),
        ("arm", 1),
        ("tri", 1),
        ("node3", 0),
    ]
    assert model.name == ("m.glb" if binary else "m.gltf")
    assert model.nodes[2].metadata == {"sku": 7} and model.nodes[3].metadata == {}
    assert model.nodes[2].local == pytest.approx(np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 5], [0, 0, 0, 1]]))
    assert model.nodes[1].local == pytest.approx(np.array([[0, -1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    # the mesh instanced twice: each placed by its node's world in the rest pose
    assert [m.node for m in model.meshes] == [2, 3]
    rotate = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    assert model.meshes[0].positions == pytest.approx((TRIANGLE * 2 + [0, 0, 5]) @ rotate.T + [1, 0, 0])
    assert model.meshes[1].positions == pytest.approx(TRIANGLE @ rotate.T + [1, 0, 0])
    assert model.triangles == 2 and model.points == 0
    assert model.bounds_min == pytest.approx([-1, 0, 0]) and model.bounds_max == pytest.approx([1, 2, 5])
    # no material: glTF's default material, appended once, single-sided
    assert model.materials == [Material(name="default")]
    assert {m.material for m in model.meshes} == {0}


def test_the_default_scene_is_the_one_shown(tmp_path: Path) -> None:
    b = Builder()
    b.node(name="first", mesh=b.mesh())
    second = b.node(False, name="second", mesh=b.mesh(TRIANGLE + 10))
    b.doc["scenes"].append({"nodes": [second]})
    b.doc["scene"] = 1
    assert [n.name for n in load(b, tmp_path).nodes][1:] == ["second"]


def test_mirroring_node_flips_winding_normals_and_tangent_handedness(tmp_path: Path) -> None:
    b = Builder()
    normals = np.tile([0, 0, 1], (3, 1)).astype(np.float32)
    tangents = np.tile([1, 0, 0, 1], (3, 1)).astype(np.float32)
    mesh = b.mesh(attributes={"NORMAL": b.accessor(normals), "TANGENT": b.accessor(tangents)})
    b.node(mesh=mesh, scale=[-1, 1, 1])
    (placed,) = load(b, tmp_path).meshes
    assert placed.indices is not None
    a, c, d = placed.positions[placed.indices[0]]
    assert np.cross(c - a, d - a) == pytest.approx([0, 0, 1])  # still counter-clockwise seen from its normal
    assert placed.normals == pytest.approx(normals)
    assert placed.tangents == pytest.approx(np.tile([-1, 0, 0, -1], (3, 1)))


def test_missing_normals_are_computed(tmp_path: Path) -> None:
    b = Builder()
    b.node(mesh=b.mesh())
    (mesh,) = load(b, tmp_path).meshes
    assert mesh.normals == pytest.approx(np.tile([0, 0, 1], (3, 1)))
    assert np.all(mesh.colors == 1.0) and mesh.uvs is None and mesh.tangents is None


# -- materials -------------------------------------------------------------------------------------------------


def material_builder() -> Builder:
    b = Builder()
    image = b.image(np.arange(16, dtype=np.uint8).reshape(2, 2, 4) * 16)
    clamp = b.add(
        "samplers", {"wrapS": CLAMP_TO_EDGE, "wrapT": MIRRORED_REPEAT, "magFilter": NEAREST, "minFilter": 9986}
    )
    texture = b.add("textures", {"source": image, "sampler": clamp})
    plain = b.add("textures", {"source": image})
    bogus = b.add("samplers", {"wrapS": 1234, "magFilter": 9987})  # not allowed values: glTF's defaults instead
    odd = b.add("textures", {"source": image, "sampler": bogus})
    transform = {"offset": [0.5, 0.25], "rotation": math.pi / 2, "scale": [2, 3], "texCoord": 1}
    b.add(
        "materials",
        {
            "name": "everything",
            "pbrMetallicRoughness": {
                "baseColorFactor": [0.1, 0.2, 0.3, 0.4],
                "baseColorTexture": {"index": texture},
                "metallicFactor": 0.25,
                "roughnessFactor": 0.75,
                "metallicRoughnessTexture": {"index": plain},
            },
            "normalTexture": {"index": odd, "scale": 0.5},
            "occlusionTexture": {"index": plain, "strength": 0.3, "texCoord": 1},
            "emissiveTexture": {"index": plain, "extensions": {"KHR_texture_transform": transform}},
            "emissiveFactor": [1, 0.5, 0],
            "alphaMode": "MASK",
            "alphaCutoff": 0.3,
            "doubleSided": True,
            "extensions": {"KHR_materials_emissive_strength": {"emissiveStrength": 4.0}, "KHR_materials_unlit": {}},
        },
    )
    uv = b.accessor(QUAD_UV)
    b.node(
        mesh=b.mesh(
            QUAD, indices=b.accessor(QUAD_INDICES, U16), material=0, attributes={"TEXCOORD_0": uv, "TEXCOORD_1": uv}
        )
    )
    return b


def test_every_material_field_and_extension(tmp_path: Path) -> None:
    model = load(material_builder(), tmp_path)
    (material,) = model.materials
    assert material.name == "everything"
    assert material.base_color == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert (material.metallic, material.roughness) == (0.25, 0.75)
    assert material.normal_scale == 0.5 and material.occlusion_strength == pytest.approx(0.3)
    assert material.emissive == (1.0, 0.5, 0.0) and material.emissive_strength == 4.0
    assert (material.alpha_mode, material.alpha_cutoff, material.double_sided, material.unlit) == (
        "MASK",
        0.3,
        True,
        True,
    )
    # one image, decoded once, as RGBA, first row at the top
    (image,) = model.images
    assert image.pixels.shape == (2, 2, 4) and image.pixels.dtype == np.uint8
    assert image.pixels.reshape(-1).tolist() == (np.arange(16) * 16).tolist()
    refs = material.textures()
    assert len(refs) == 5 and {r.image for r in refs} == {0}
    assert material.occlusion_texture is not None and material.occlusion_texture.tex_coord == 1
    assert material.base_color_texture is not None and material.base_color_texture.tex_coord == 0
    assert material.base_color_texture.sampler == Sampler(
        CLAMP_TO_EDGE, MIRRORED_REPEAT, NEAREST, NEAREST_MIPMAP_LINEAR
    )
    assert material.metallic_roughness_texture is not None
    assert material.metallic_roughness_texture.sampler == Sampler(REPEAT, REPEAT, None, None)
    assert material.normal_texture is not None and material.normal_texture.sampler == Sampler()
    assert material.base_color_texture.transform is None


def test_texture_transform_matrix_and_tex_coord_override(tmp_path: Path) -> None:
    """KHR_texture_transform: translation · rotation · scale, rotating counter-clockwise on the image (v down), as
    three.js and the TextureTransformTest sample do. offset (0.5, 0.25), rotation 90°, scale (2, 3):
    (u, v) → (0.5 + 3v, 0.25 - 2u)."""
    (material,) = load(material_builder(), tmp_path).materials
    emissive = material.emissive_texture
    assert emissive is not None and emissive.tex_coord == 1  # the extension's texCoord wins over the textureInfo's 0
    assert emissive.transform is not None
    matrix = np.array(emissive.transform).reshape(3, 3)
    assert matrix == pytest.approx(np.array([[0, 3, 0.5], [-2, 0, 0.25], [0, 0, 1]]), abs=1e-12)
    assert (matrix @ [1, 0, 1])[:2] == pytest.approx([0.5, -1.75])
    # three.js's Matrix3.setUvTransform(tx, ty, sx, sy, r, 0, 0) with equal scales: the same matrix
    c, s = math.cos(0.4), math.sin(0.4)
    three = np.array([[2 * c, 2 * s, 0.1], [-2 * s, 2 * c, 0.2], [0, 0, 1]])
    assert np.array(texture_transform((0.1, 0.2), 0.4, (2.0, 2.0))).reshape(3, 3) == pytest.approx(three)


def test_lone_tangents_are_generated_for_normal_maps(tmp_path: Path) -> None:
    """The quad's u runs along +x and v down the image along -y: tangent +x, and bitangent cross(n, t)·w = +y, which
    is where a normal map's green channel points (up the image), so w = +1. Mirrored in u: tangent -x, w = -1."""
    for uv, tangent in ((QUAD_UV, [1, 0, 0, 1]), (np.column_stack((1 - QUAD_UV[:, 0], QUAD_UV[:, 1])), [-1, 0, 0, -1])):
        b = Builder()
        image = b.image(np.full((1, 1, 4), 128, np.uint8))
        b.add("textures", {"source": image})
        b.add("materials", {"normalTexture": {"index": 0}})
        attributes = {"TEXCOORD_0": b.accessor(uv.astype(np.float32))}
        b.node(mesh=b.mesh(QUAD, indices=b.accessor(QUAD_INDICES, U16), material=0, attributes=attributes))
        (mesh,) = load(b, tmp_path).meshes
        assert mesh.tangents is not None and mesh.tangents.shape == (4, 4) and mesh.tangents.dtype == np.float32
        assert mesh.tangents == pytest.approx(np.tile(tangent, (4, 1)), abs=1e-6)
        assert np.einsum("ij,ij->i", mesh.tangents[:, :3], mesh.normals) == pytest.approx(0, abs=1e-6)


def test_generated_tangents_are_orthogonal_on_a_curved_surface(tmp_path: Path) -> None:
    """A bent strip: per-vertex tangents are made orthogonal to each vertex's own normal (Gram-Schmidt)."""
    x = np.linspace(0, 1, 6)
    positions = np.array([[xi, yi, xi * xi] for yi in (0, 1) for xi in x], np.float32)
    uv = np.array([[xi, 1 - yi] for yi in (0, 1) for xi in x], np.float32)
    quads = [(i, i + 1, i + 7, i + 6) for i in range(5)]
    indices = np.array([[a, b, c, a, c, d] for a, b, c, d in quads], np.uint32).reshape(-1)
    b = Builder()
    b.add("textures", {"source": b.image(np.full((1, 1, 4), 128, np.uint8))})
    b.add("materials", {"normalTexture": {"index": 0}})
    b.node(
        mesh=b.mesh(positions, indices=b.accessor(indices, U32), material=0, attributes={"TEXCOORD_0": b.accessor(uv)})
    )
    (mesh,) = load(b, tmp_path).meshes
    assert mesh.tangents is not None
    assert np.einsum("ij,ij->i", mesh.tangents[:, :3], mesh.normals) == pytest.approx(0, abs=1e-5)
    assert np.linalg.norm(mesh.tangents[:, :3], axis=1) == pytest.approx(1, abs=1e-5)
    assert np.all(mesh.tangents[:, 0] > 0) and np.all(mesh.tangents[:, 3] == 1)


# -- attributes and primitives ---------------------------------------------------------------------------------


def test_vertex_colours_of_every_encoding(tmp_path: Path) -> None:
    b = Builder()
    u8 = np.array([[255, 0, 0, 255], [0, 255, 0, 128], [0, 0, 255, 0]], np.uint8)
    u16 = np.array([[65535, 0, 0], [0, 65535, 0], [0, 0, 32768]], np.uint16)
    floats = np.array([[0.25, 0.5, 0.75], [1, 1, 1], [0, 0, 0]], np.float32)
    for colors, component in ((u8, U8), (u16, U16), (floats, FLOAT)):
        color = b.accessor(colors, component, normalized=component != FLOAT)
        b.node(mesh=b.mesh(attributes={"COLOR_0": color}))
    model = load(b, tmp_path)
    got = [m.colors for m in model.meshes]
    assert got[0] == pytest.approx(u8 / 255.0)
    assert got[1] == pytest.approx(np.column_stack((u16 / 65535.0, np.ones(3))))
    assert got[2] == pytest.approx(np.column_stack((floats, np.ones(3))))
    assert all(c.dtype == np.float32 and c.shape == (3, 4) for c in got)


def test_strips_fans_points_and_lines(tmp_path: Path) -> None:
    b = Builder()
    strip = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], np.float32)
    b.node(mesh=b.mesh(strip, mode=5))
    fan = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    b.node(mesh=b.mesh(fan, mode=6))
    b.node(mesh=b.mesh(fan, mode=0))  # points
    b.node(mesh=b.mesh(fan, mode=1))  # lines: dropped
    model = load(b, tmp_path)
    strip_mesh, fan_mesh, cloud = model.meshes
    # glTF: strip triangle i is (i, i + 1 + i % 2, i + 2 - i % 2); fan triangle i is (i + 1, i + 2, 0)
    assert strip_mesh.indices is not None and strip_mesh.indices.tolist() == [[0, 1, 2], [1, 3, 2], [2, 3, 4]]
    assert fan_mesh.indices is not None and fan_mesh.indices.tolist() == [[1, 2, 0], [2, 3, 0]]
    for mesh in (strip_mesh, fan_mesh):
        assert mesh.indices is not None
        p = mesh.positions[mesh.indices]
        assert np.all(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])[:, 2] > 0)  # all counter-clockwise
    assert cloud.indices is None and np.all(cloud.normals == 0)
    assert (model.triangles, model.points) == (5, 4)


def test_sparse_accessors_strides_and_normalised_positions(tmp_path: Path) -> None:
    b = Builder()
    base = b.accessor(TRIANGLE)
    targets = b.view(np.array([2], np.uint8).tobytes())
    values = b.view(np.array([[0, 5, 0]], np.float32).tobytes())
    sparse = {"count": 1, "indices": {"bufferView": targets, "componentType": U8}, "values": {"bufferView": values}}
    b.doc["accessors"][base]["sparse"] = sparse
    b.node(mesh=b.add("meshes", {"primitives": [{"attributes": {"POSITION": base}}]}))
    # a sparse accessor without a buffer view: zeros, then the sparse values
    zeros = b.add("accessors", {"componentType": FLOAT, "count": 3, "type": "VEC3", "sparse": dict(sparse)})
    sparse_x = {**sparse, "values": {"bufferView": b.view(np.array([[1, 0, 0]], np.float32).tobytes())}}
    b.doc["accessors"][zeros]["sparse"] = sparse_x
    b.node(mesh=b.add("meshes", {"primitives": [{"attributes": {"POSITION": zeros}}]}))
    # interleaved (byteStride 16: position + 4 bytes of something else) int16 normalised positions
    interleaved = np.zeros(3, dtype=[("p", "<i2", 3), ("pad", "<i2"), ("other", "<f4")])
    interleaved["p"] = [[0, 0, 0], [32767, 0, 0], [0, -32767, 0]]
    view = b.view(interleaved.tobytes(), stride=12)
    quantized = b.add(
        "accessors", {"bufferView": view, "componentType": 5122, "normalized": True, "count": 3, "type": "VEC3"}
    )
    b.node(mesh=b.add("meshes", {"primitives": [{"attributes": {"POSITION": quantized}}]}))
    first, second, third = load(b, tmp_path).meshes
    assert first.positions.tolist() == [[0, 0, 0], [1, 0, 0], [0, 5, 0]]
    assert second.positions.tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert third.positions == pytest.approx(np.array([[0, 0, 0], [1, 0, 0], [0, -1, 0]]))


# -- errors ------------------------------------------------------------------------------------------------------


def test_required_extension_that_is_not_supported(tmp_path: Path) -> None:
    b = Builder()
    b.node(mesh=b.mesh())
    b.doc["extensionsRequired"] = ["KHR_draco_mesh_compression", "KHR_texture_transform"]
    assert error(b, tmp_path) == (
        "cannot load m.gltf: it requires the glTF extension KHR_draco_mesh_compression, which openrr does not "
        "support (supported: EXT_texture_webp, KHR_materials_emissive_strength, KHR_materials_unlit, "
        "KHR_mesh_quantization, KHR_texture_transform)"
    )
    b.doc["extensionsRequired"] = ["EXT_meshopt_compression", "KHR_draco_mesh_compression"]
    assert "extensions EXT_meshopt_compression, KHR_draco_mesh_compression, which" in error(b, tmp_path)


def test_index_out_of_range(tmp_path: Path) -> None:
    b = Builder()
    b.node(mesh=b.mesh(indices=b.accessor(np.array([0, 1, 7], np.uint16), U16)))
    assert error(b, tmp_path, binary=True) == (
        "cannot load m.glb: mesh 0 primitive 0 index 7 is out of range (the primitive has 3 vertices)"
    )


def test_accessor_past_its_buffer_view(tmp_path: Path) -> None:
    b = Builder()
    b.node(mesh=b.mesh())
    b.doc["accessors"][0]["count"] = 4
    assert (
        error(b, tmp_path)
        == "cannot load m.gltf: accessor 0 is out of range: it needs 48 bytes of bufferView 0, which has 36"
    )


def test_missing_buffer_file(tmp_path: Path) -> None:
    b = Builder()
    b.node(mesh=b.mesh())
    b.doc["buffers"] = [{"byteLength": 36, "uri": "missing.bin"}]
    (tmp_path / "m.gltf").write_text(json.dumps(b.doc))
    with pytest.raises(ModelLoadError) as e:
        read_model(tmp_path / "m.gltf", "models/m.gltf")
    assert str(e.value) == "cannot load models/m.gltf: buffer 0 references 'missing.bin', which was not found"


def test_malformed_json_and_glb(tmp_path: Path) -> None:
    (tmp_path / "bad.gltf").write_text('{"asset": {"version": "2.0"}, "nodes": [')
    with pytest.raises(ModelLoadError, match=r"^cannot parse bad.gltf as glTF: invalid JSON: Expecting value"):
        read_model(tmp_path / "bad.gltf", "bad.gltf")
    (tmp_path / "bad.glb").write_bytes(b"glTF" + struct.pack("<II", 1, 20) + b"\0" * 8)
    with pytest.raises(ModelLoadError, match=r"^cannot parse bad.glb as GLB: container version 1 is not 2$"):
        read_model(tmp_path / "bad.glb", "bad.glb")


def test_oversized_texture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as e:
        load(material_builder(), tmp_path, textures=TextureLimits(max_dimension=1))
    assert (
        str(e.value)
        == "cannot load m.gltf: texture (embedded) is 2x2, over the limit of 1 px per side / 67108864 pixels"
    )


# -- OBJ through trimesh -----------------------------------------------------------------------------------------


def test_obj_with_mtl_becomes_a_material(tmp_path: Path) -> None:
    (tmp_path / "m.mtl").write_text("newmtl orange\nKd 1.0 0.5 0.0\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nusemtl orange\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    model = read_model(tmp_path / "m.obj", "m.obj")
    (mesh,) = model.meshes
    root, part = model.nodes
    assert (root.name, root.parent, part.parent, mesh.node) == ("m.obj", -1, 0, 1)
    assert part.name  # trimesh's name for the placed geometry
    material = model.materials[mesh.material]
    assert material.name == "orange" and material.double_sided and material.metallic == 0.0
    # Kd is an sRGB display colour (three.js's MTLLoader reads it so): made linear (trimesh keeps it as 8 bits)
    assert material.base_color == pytest.approx((1.0, float(srgb_to_linear(128 / 255)), 0.0, 1.0))
    assert np.all(mesh.colors == 1.0)
