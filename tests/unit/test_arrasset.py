"""The .arrAsset format: a whole ModelData written and read back (every material field, both UV sets, tangents, a
node tree with metadata, every sceneGraphMode), version 1 files still read, damaged files refused precisely; and
assets written by the converter, read by `load_model`."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from openrr.conversions.converter import convert
from openrr.model.arrasset import ALIGN, HEADER, MAGIC, AssetFormatError, read_asset, write_asset
from openrr.model.mesh import (
    CLAMP_TO_EDGE,
    LINEAR_MIPMAP_NEAREST,
    MIRRORED_REPEAT,
    NEAREST,
    SCENE_GRAPH_MODES,
    ImageData,
    Material,
    MeshData,
    ModelData,
    ModelLoadError,
    Node,
    Sampler,
    SceneGraphMode,
    TextureRef,
)
from openrr.model.raycast import RayCaster, TriangleChunks, triangle_chunks
from openrr.util.atomic import atomic_file
from tests.gltf_scenes import SCENES, write_scene
from tests.local_files import load_model
from tests.models import serve_directory

VERSION1 = Path(__file__).parent / "data" / "version1.arrAsset"
"""Written once by the version 1 writer (`git show 8b09820~1:src/openrr/model/arrasset.py`, MeshData stand-ins with
the old fields): a textured quad with a uniform colour (in the material), a triangle with per-vertex colours, double
sided and unlit, and two points; collision with its own vertex space."""


def _translation(x: float, y: float, z: float) -> np.ndarray:
    matrix = np.identity(4)
    matrix[:3, 3] = (x, y, z)
    return matrix


def _box(centre: tuple[float, float, float], node: int, material: int, uvs1: bool = False) -> MeshData:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    positions = (np.asarray(box.vertices) + centre).astype(np.float32)
    n = len(positions)
    rng = np.random.default_rng(node)
    tangents = np.column_stack([np.tile([1.0, 0.0, 0.0], (n, 1)), np.where(np.arange(n) % 2, 1.0, -1.0)])
    return MeshData(
        positions=positions,
        normals=np.asarray(box.vertex_normals, dtype=np.float32),
        colors=rng.uniform(0, 1, (n, 4)).astype(np.float32),  # float COLOR_0: not bytes
        indices=np.asarray(box.faces, dtype=np.uint32),
        uvs=rng.uniform(0, 1, (n, 2)).astype(np.float32),
        uvs1=rng.uniform(-1, 2, (n, 2)).astype(np.float32) if uvs1 else None,
        tangents=tangents.astype(np.float32),
        material=material,
        node=node,
    )


def assembly(mode: SceneGraphMode = "dynamic") -> ModelData:
    """A 3-level tree (root → frame → arm → hand, and a base), three materials using every field, two images."""
    rng = np.random.default_rng(4)
    colour = ImageData(rng.integers(0, 256, (8, 16, 4), dtype=np.uint8), "albedo.png")
    data = ImageData(
        np.concatenate([rng.integers(0, 256, (4, 4, 3)), np.full((4, 4, 1), 255)], axis=2).astype(np.uint8)
    )
    full = Material(
        name="painted",
        base_color=(0.9, 0.5, 0.25, 0.75),
        base_color_texture=TextureRef(0, 0, Sampler(CLAMP_TO_EDGE, MIRRORED_REPEAT, NEAREST, LINEAR_MIPMAP_NEAREST)),
        metallic=0.25,
        roughness=0.125,
        metallic_roughness_texture=TextureRef(1, 1),
        normal_texture=TextureRef(1, 0, transform=(1.0, 0.0, 0.5, 0.0, 2.0, 0.25, 0.0, 0.0, 1.0)),
        normal_scale=0.5,
        occlusion_texture=TextureRef(1, 1, Sampler(mag_filter=NEAREST)),
        occlusion_strength=0.3,
        emissive=(0.1, 0.2, 0.3),
        emissive_texture=TextureRef(0, 1),
        emissive_strength=4.0,
        alpha_mode="MASK",
        alpha_cutoff=0.3,
        double_sided=True,
        unlit=False,
    )
    nodes = [
        Node("assembly.glb", -1),
        Node("frame", 0, _translation(0, 1, 0), {"PartNumber": "F-1", "mass": 2.5, "tags": ["steel", 3]}),
        Node("arm", 1, _translation(1, 0, 0)),
        Node("hand", 2, np.diag([2.0, 2.0, 2.0, 1.0]), {"grip": True, "notes": None}),
        Node("base", 0, metadata={"PartNumber": "B-7"}),
    ]
    meshes = [
        _box((0, 1, 0), 1, 0, uvs1=True),
        _box((1, 1, 0), 2, 1),
        _box((1, 1, 2), 3, 2),
        _box((0, -1, 0), 4, 0, uvs1=True),
    ]
    model = ModelData(
        name="assembly.glb",
        meshes=meshes,
        bounds_min=np.array([-0.5, -1.5, -0.5], np.float32),
        bounds_max=np.array([1.5, 1.5, 2.5], np.float32),
        triangles=48,
        points=0,
        materials=[
            full,
            Material(name="chrome", metallic=1.0, roughness=0.05),
            Material(alpha_mode="BLEND", unlit=True),
        ],
        images=[colour, data],
        nodes=nodes,
        scene_graph_mode=mode,
    )
    model.collision = triangle_chunks(model)
    return model


def _toc(data: bytes) -> dict[str, Any]:
    header = np.frombuffer(data, dtype=HEADER, count=1)[0]
    toc: dict[str, Any] = json.loads(data[HEADER.itemsize : HEADER.itemsize + int(header["toc_length"])])
    return toc


def _round_trip(model: ModelData, tmp_path: Path) -> tuple[ModelData, bytes]:
    size = write_asset(tmp_path / "model.arrAsset", model, {"source": "assembly.glb"})
    data = (tmp_path / "model.arrAsset").read_bytes()
    assert size == len(data)
    return read_asset(data, "model.arrAsset"), data


@pytest.mark.parametrize("mode", SCENE_GRAPH_MODES)
def test_a_whole_model_round_trips(tmp_path: Path, mode: SceneGraphMode) -> None:
    model = assembly(mode)
    back, data = _round_trip(model, tmp_path)
    assert back.scene_graph_mode == mode
    assert back.materials == model.materials  # every field, texture references, samplers and transforms included
    assert [(n.name, n.parent, n.metadata) for n in back.nodes] == [(n.name, n.parent, n.metadata) for n in model.nodes]
    for mine, theirs in zip(back.nodes, model.nodes, strict=True):
        np.testing.assert_array_equal(mine.local, theirs.local)
    assert len(back.images) == 2
    for mine_image, their_image in zip(back.images, model.images, strict=True):
        np.testing.assert_array_equal(mine_image.pixels, their_image.pixels)  # PNG: lossless
        assert mine_image.name == their_image.name
    toc = _toc(data)
    # the colour space is a property of the use, written down for whoever reads the file by hand
    assert [(i["uses"], i["colorSpace"]) for i in toc["images"]] == [
        (["baseColor", "emissive"], "srgb"),
        (["metallicRoughness", "normal", "occlusion"], "linear"),
    ]
    for mine_mesh, their_mesh in zip(back.meshes, model.meshes, strict=True):
        assert (mine_mesh.node, mine_mesh.material) == (their_mesh.node, their_mesh.material)
        for field in ("positions", "normals", "colors", "indices", "uvs", "uvs1", "tangents"):
            theirs = getattr(their_mesh, field)
            if theirs is None:
                assert getattr(mine_mesh, field) is None, field
            else:
                np.testing.assert_array_equal(getattr(mine_mesh, field), theirs, err_msg=field)
    assert back.collision is not None and model.collision is not None
    assert back.collision.nodes is not None and model.collision.nodes is not None
    np.testing.assert_array_equal(back.collision.nodes, model.collision.nodes)
    assert sorted(set(back.collision.nodes.tolist())) == [1, 2, 3, 4]


def test_byte_colours_stay_in_the_vertex_record(tmp_path: Path) -> None:
    model = assembly()
    # 8-bit sources and white: the record's RGBA8 holds them exactly, no float copy in the file
    bytes_ = (np.arange(len(model.meshes[0].positions) * 4).reshape(-1, 4) * 7 % 256).astype(np.uint8)
    model.meshes[0].colors = bytes_.astype(np.float32) / np.float32(255)
    model.meshes[1].colors = np.ones((len(model.meshes[1].positions), 4), np.float32)
    back, data = _round_trip(model, tmp_path)
    meshes = _toc(data)["meshes"]
    assert meshes[0]["colors"] is None and meshes[1]["colors"] is None and meshes[2]["colors"] is not None
    np.testing.assert_allclose(back.meshes[0].colors, model.meshes[0].colors, atol=1e-7)
    np.testing.assert_array_equal(back.meshes[1].colors, model.meshes[1].colors)


def test_arrays_are_aligned_read_only_views(tmp_path: Path) -> None:
    _, data = _round_trip(assembly(), tmp_path)
    toc = _toc(data)
    blobs = [m[key] for m in toc["meshes"] for key in ("vertices", "indices", "uvs1", "tangents", "colors") if m[key]]
    blobs += [toc["collision"][key] for key in ("positions", "corners", "boxMin", "boxMax")]
    # triangles grouped by part: four runs of 12 in the table, no array
    assert toc["collision"]["nodeRuns"] == [[1, 12], [2, 12], [3, 12], [4, 12]]
    blobs += [image["data"] for image in toc["images"]] + [toc["nodeLocals"]]
    assert all(blob["offset"] % ALIGN == 0 for blob in blobs)
    model = read_asset(data, "model.arrAsset")
    mesh = model.meshes[0]
    # zero-copy: the arrays live in the bytes they were read from, which numpy cannot write to
    assert not mesh.positions.flags.writeable and not mesh.indices.flags.writeable  # type: ignore[union-attr]
    assert mesh.tangents is not None and not mesh.tangents.flags.writeable
    assert model.collision is not None and not model.collision.corners.flags.writeable


def test_stored_collision_casts_like_a_rebuilt_one_and_names_the_part(tmp_path: Path) -> None:
    asset, _ = _round_trip(assembly(), tmp_path)
    stored, fresh = RayCaster(), RayCaster()
    stored.add(1, asset)
    fresh.add(1, ModelData(asset.name, asset.meshes, asset.bounds_min, asset.bounds_max, 48, 0, nodes=asset.nodes))
    transforms = {1: np.eye(4)}
    hit = stored.cast([1.0, 1.0, 10.0], [0.0, 0.0, -1.0], transforms)
    assert hit is not None and hit.node == 3 and hit.distance == pytest.approx(7.5)  # the hand, in front
    rng = np.random.default_rng(3)
    for _ in range(100):
        origin = rng.normal(size=3)
        origin *= 12.0 / np.linalg.norm(origin)
        direction = rng.uniform(asset.bounds_min, asset.bounds_max) - origin
        assert stored.cast(origin, direction, transforms) == fresh.cast(origin, direction, transforms)


def test_interleaved_triangle_nodes_are_stored_as_an_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    positions = rng.uniform(-1, 1, (600, 3)).astype(np.float32)
    indices = np.arange(600, dtype=np.uint32).reshape(200, 3)
    meshes = [MeshData(positions, np.zeros_like(positions), np.ones((600, 4), np.float32), indices, node=1)]
    model = ModelData("m", meshes, positions.min(axis=0), positions.max(axis=0), 200, 0, nodes=[Node("m", -1)] * 3)
    model.nodes = [Node("m", -1), Node("a", 0), Node("b", 0)]
    chunks = triangle_chunks(model)
    # a collision structure whose triangles alternate between parts (any writer may make one): 200 runs
    alternating = (np.arange(200) % 2 + 1).astype(np.uint32)
    model.collision = TriangleChunks(200, chunks.positions, chunks.corners, chunks.box_min, chunks.box_max, alternating)
    back, data = _round_trip(model, tmp_path)
    assert "nodes" in _toc(data)["collision"] and "nodeRuns" not in _toc(data)["collision"]
    assert back.collision is not None and back.collision.nodes is not None
    np.testing.assert_array_equal(back.collision.nodes, alternating)


def test_points_without_uvs_or_tree(tmp_path: Path) -> None:
    points = np.random.default_rng(1).uniform(-1, 1, (1000, 3)).astype(np.float32)
    colors = np.random.default_rng(2).uniform(0, 1, (1000, 4)).astype(np.float32)
    cloud = MeshData(points, np.zeros_like(points), colors, None)
    model = ModelData("cloud.ply", [cloud], points.min(axis=0), points.max(axis=0), 0, 1000, collision=None)
    back, _ = _round_trip(model, tmp_path)
    assert back.points == 1000 and back.triangles == 0 and back.meshes[0].indices is None
    assert back.nodes == [] and back.tree()[0].name == "model.arrAsset" and back.meshes[0].uvs is None
    assert back.collision is not None and back.collision.count == 0
    np.testing.assert_array_equal(back.meshes[0].positions, points)
    np.testing.assert_array_equal(back.meshes[0].colors, colors)


def test_version_1_assets_still_read() -> None:
    model = read_asset(VERSION1.read_bytes(), "v1.arrAsset")
    assert (model.triangles, model.points, len(model.meshes), model.nodes) == (3, 2, 3, [])
    assert [m.node for m in model.meshes] == [0, 0, 0] and model.scene_graph_mode == "dynamic"
    quad, triangle, points = model.meshes
    # the uniform colour v1 moved into the material is the base colour again, the vertices white
    material = model.materials[quad.material]
    assert material.base_color == (0.5, 0.25, 1.0, 1.0) and not material.double_sided and not material.unlit
    assert material.base_color_texture == TextureRef(0) and (material.metallic, material.roughness) == (0.0, 1.0)
    np.testing.assert_array_equal(quad.colors, np.ones((4, 4), np.float32))
    expected = (np.arange(4 * 4 * 4, dtype=np.uint8).reshape(4, 4, 4) * 4) | np.uint8(3)
    np.testing.assert_array_equal(model.images[0].pixels, expected)
    assert quad.uvs is not None and quad.uvs1 is None and quad.tangents is None
    # per-vertex colours stay per vertex, under a white material
    other = model.materials[triangle.material]
    assert other.base_color == (1.0, 1.0, 1.0, 1.0) and other.double_sided and other.unlit
    expected_colors = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 0.5]], np.float32)
    np.testing.assert_allclose(triangle.colors, expected_colors, atol=0.5 / 255)
    assert points.indices is None and len(points.positions) == 2
    assert model.collision is not None and model.collision.count == 3 and model.collision.nodes is None
    hit = RayCaster()
    hit.add(7, model)
    found = hit.cast([2.2, 0.2, 5.0], [0.0, 0.0, -1.0], {7: np.eye(4)})
    assert found is not None and found.node == 0 and found.distance == pytest.approx(5.0)


def _patch_toc(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    toc = _toc(data)
    change(toc)
    old_end = HEADER.itemsize + int(np.frombuffer(data, dtype=HEADER, count=1)[0]["toc_length"])
    start = old_end + (-old_end % ALIGN)
    table = json.dumps(toc).encode()
    table += b" " * (-(HEADER.itemsize + len(table)) % ALIGN)  # keep the data section where a reader finds it
    header = np.array([(MAGIC, 2, len(table))], dtype=HEADER).tobytes()
    return header + table + data[start:]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t["nodes"][2].update(parent=3), "nodes[2] has parent 3"),
        (lambda t: t["nodes"][0].update(parent=0), "nodes[0] has parent 0"),
        (lambda t: t["nodeLocals"].update(length=8), "nodeLocals is 8 bytes, expected 640"),
        (lambda t: t.pop("nodeLocals"), "malformed table of contents: KeyError: 'nodeLocals'"),
        (lambda t: t["meshes"][1].update(node=9), "meshes[1] belongs to node 9, the asset has 5"),
        (lambda t: t["meshes"][1].update(material=3), "meshes[1] uses material 3, the asset has 3"),
        (lambda t: t["materials"][0]["normalTexture"].update(image=5), "normalTexture refers to image 5"),
        (lambda t: t["materials"][0]["baseColorTexture"]["sampler"].update(wrapS=1), "sampler.wrapS is 1"),
        (lambda t: t["materials"][0]["emissiveTexture"].update(texCoord=2), "texCoord is 2"),
        (lambda t: t["materials"][1].update(alphaMode="GLASS"), "materials[1].alphaMode 'GLASS'"),
        (lambda t: t["materials"][1].update(baseColor=[1, 1]), "materials[1].baseColor is not 4 finite numbers"),
        (lambda t: t.update(sceneGraphMode="flat"), "sceneGraphMode 'flat'"),
        (lambda t: t["meshes"][0].pop("vertices"), "malformed table of contents: KeyError: 'vertices'"),
        (lambda t: t["meshes"][0]["uvs1"].update(length=8), "meshes[0].uvs1 is 8 bytes, expected 64"),
    ],
)
def test_inconsistent_tables_are_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    _, data = _round_trip(assembly(), tmp_path)
    broken = _patch_toc(data, change)
    with pytest.raises(AssetFormatError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        read_asset(broken, "broken.arrAsset")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: b"NOTASSET" + d[8:], "magic"),
        (lambda d: d[:8] + (3).to_bytes(4, "little") + d[12:], "version 3, this server reads versions 1 and 2"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:16] + b"x" + d[17:], "not valid JSON"),
        (lambda d: b"", "empty"),
    ],
)
def test_damaged_assets_fail_with_a_precise_message(
    tmp_path: Path, damage: Callable[[bytes], bytes], expected: str
) -> None:
    _, data = _round_trip(assembly(), tmp_path)
    broken = tmp_path / "broken.arrAsset"
    broken.write_bytes(damage(data))
    with pytest.raises(ModelLoadError) as error:
        load_model(str(broken))
    assert expected in str(error.value) and "broken.arrAsset" in str(error.value)
    with pytest.raises(AssetFormatError):
        read_asset(broken.read_bytes(), "broken.arrAsset")


def test_atomic_file_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.arrAsset"
    with pytest.raises(RuntimeError), atomic_file(target) as out:
        out.write(b"half a file")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as out:
        out.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["model.arrAsset"]


# --- assets the converter writes ------------------------------------------------------------------------------


def test_a_single_mesh_shares_its_index_buffer_with_the_collision_structure(tmp_path: Path) -> None:
    trimesh.creation.icosphere(subdivisions=4).export(tmp_path / "ball.glb")
    outcome = convert(tmp_path, "ball.glb", tmp_path, "ball.arrAsset")
    assert outcome.succeeded, outcome.error_message
    data = (tmp_path / "ball.arrAsset").read_bytes()
    toc = _toc(data)
    assert toc["collision"]["mesh"] == 0 and "corners" not in toc["collision"]
    model = read_asset(data, "ball.arrAsset")
    assert model.collision is not None
    # the same objects, so that pickling the model (to a render process) sends them once
    assert model.collision.corners is model.meshes[0].indices
    assert model.collision.positions is model.meshes[0].positions
    # 5120 triangles of 12 bytes, 2562 vertices of 36, 80 chunk boxes of 24: no second copy of anything
    assert len(data) < 5120 * 12 + 2562 * 36 + 80 * 24 + 4096


def test_load_model_reads_assets_over_http_and_file_urls(tmp_path: Path) -> None:
    write_asset(tmp_path / "scene.arrAsset", assembly())
    asset_path = tmp_path / "scene.arrAsset"
    local = load_model(str(asset_path))
    progress: list[float] = []
    with serve_directory(asset_path.parent) as base:
        # a SAS URL's query must not hide the suffix
        remote = load_model(f"{base}/scene.arrAsset?sv=2021-08-06&sp=r&sig=abc%3D", progress.append)
    by_file_url = load_model(asset_path.as_uri())
    for model in (remote, by_file_url):
        assert model.triangles == local.triangles and [n.name for n in model.nodes] == [n.name for n in local.nodes]
        np.testing.assert_array_equal(model.meshes[0].indices, local.meshes[0].indices)  # type: ignore[arg-type]
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)


def test_collision_can_be_left_out(tmp_path: Path) -> None:
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "ball.glb")
    (tmp_path / "ball.ConversionSettings.json").write_text('{"generateCollisionMesh": false}')
    assert convert(tmp_path, "ball.glb", tmp_path, "ball.arrAsset").succeeded
    model = load_model(str(tmp_path / "ball.arrAsset"))
    assert model.collision is not None and model.collision.count == 0
    caster = RayCaster()
    caster.add(1, model)
    # without a collision mesh the model is drawn but not hit, as in ARR
    assert caster.cast([0, 0, 5], [0, 0, -1], {1: np.eye(4)}) is None
    assert model.triangles == 320


def test_empty_collision_round_trips(tmp_path: Path) -> None:
    model = assembly()
    model.collision = TriangleChunks.empty()
    back, data = _round_trip(model, tmp_path)
    assert back.collision is not None and back.collision.count == 0 and "nodes" not in _toc(data)["collision"]


def _parts(model: ModelData) -> dict[str, list[tuple[Material, list[np.ndarray], dict[str, np.ndarray]]]]:
    """Per node name: each primitive's material, the pixels of its textures, and its arrays."""
    nodes = model.tree()
    out: dict[str, list[tuple[Material, list[np.ndarray], dict[str, np.ndarray]]]] = {}
    for mesh in model.meshes:
        material = model.materials[mesh.material]
        pixels = [model.images[ref.image].pixels for ref in material.textures()]

        def same_image(ref: TextureRef | None) -> TextureRef | None:
            # image indices may differ (deduplication); the pixels are compared instead
            return None if ref is None else replace(ref, image=-1)

        plain = replace(
            material,
            base_color_texture=same_image(material.base_color_texture),
            metallic_roughness_texture=same_image(material.metallic_roughness_texture),
            normal_texture=same_image(material.normal_texture),
            occlusion_texture=same_image(material.occlusion_texture),
            emissive_texture=same_image(material.emissive_texture),
        )
        arrays = {
            key: np.asarray(getattr(mesh, key))
            for key in ("positions", "normals", "colors", "uvs", "uvs1", "tangents")
            if getattr(mesh, key) is not None
        }
        out.setdefault(nodes[mesh.node].name, []).append((plain, pixels, arrays))
    return out


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_each_reference_scene_converts_to_the_same_model(tmp_path: Path, scene: str) -> None:
    """What the renderer is given is what it is given for the source: tree, materials (every field), images,
    both UV sets, tangents. (The pictures are compared by tests/test_reference_images.py.)"""
    written = write_scene(tmp_path, scene)
    outcome = convert(tmp_path, written.file, tmp_path, "scene.arrAsset")
    assert outcome.succeeded, outcome.error_message
    source = load_model(str(tmp_path / written.file))
    asset = load_model(str(tmp_path / "scene.arrAsset"))
    assert asset.name == "scene.arrAsset" and asset.triangles == source.triangles
    assert [(n.name, n.parent) for n in asset.tree()[1:]] == [(n.name, n.parent) for n in source.tree()[1:]]
    mine, theirs = _parts(asset), _parts(source)
    assert sorted(mine) == sorted(theirs)
    for name, primitives in theirs.items():
        assert len(mine[name]) == len(primitives), name  # one primitive per node and material in these scenes
        for (material, pixels, arrays), (their_material, their_pixels, their_arrays) in zip(
            mine[name], primitives, strict=True
        ):
            assert material == their_material, name
            assert len(pixels) == len(their_pixels) and all(
                np.array_equal(a, b) for a, b in zip(pixels, their_pixels, strict=True)
            ), name
            assert sorted(arrays) == sorted(their_arrays), name
            for key, values in their_arrays.items():
                # the triangles may be reordered for ray casts, the vertices are not
                np.testing.assert_allclose(arrays[key], values, atol=1e-6, err_msg=f"{name}.{key}")


def test_a_non_finite_node_transform_is_refused(tmp_path: Path) -> None:
    _, data = _round_trip(assembly(), tmp_path)
    toc = _toc(data)
    end = HEADER.itemsize + int(np.frombuffer(data, dtype=HEADER, count=1)[0]["toc_length"])
    start = end + (-end % ALIGN) + toc["nodeLocals"]["offset"]
    broken = bytearray(data)
    broken[start + 3 * 128 + 8 : start + 3 * 128 + 16] = np.array([np.nan]).tobytes()  # node 3's second number
    with pytest.raises(AssetFormatError, match=r"nodes\[3\] has a local transform that is not finite"):
        read_asset(bytes(broken), "broken.arrAsset")
