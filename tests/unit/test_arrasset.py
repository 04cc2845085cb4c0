"""The .arrAsset format: written from real converted models, read back by `read_asset` and by `load_model`."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from openrr.conversions.converter import convert
from openrr.model.arrasset import ALIGN, HEADER, MAGIC, VERTEX_DTYPE, AssetFormatError, read_asset, write_asset
from openrr.model.mesh import MeshData, ModelData, ModelLoadError
from openrr.model.raycast import RayCaster, TriangleChunks, triangle_chunks
from openrr.render.renderer import _VERTEX_DTYPE
from openrr.util.atomic import atomic_file
from tests.local_files import load_model
from tests.models import serve_directory


def _textured_scene(path: Path) -> None:
    """Two boxes sharing one texture, and a coloured sphere: three meshes, two materials."""
    image = Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3) * 3)
    scene = trimesh.Scene()
    for x in (-2.0, 2.0):
        box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        uv = np.c_[box.vertices[:, 0] + 0.5, box.vertices[:, 1] + 0.5]
        box.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
        scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([x, 0.0, 0.0]))
    sphere = trimesh.creation.icosphere(subdivisions=3)
    sphere.visual = trimesh.visual.ColorVisuals(
        sphere, vertex_colors=np.linspace(0, 255, len(sphere.vertices) * 4).reshape(-1, 4).astype(np.uint8)
    )
    scene.add_geometry(sphere, transform=trimesh.transformations.translation_matrix([0.0, 3.0, 0.0]))
    scene.export(path)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source GLB, converted .arrAsset) in a directory of their own."""
    root = tmp_path_factory.mktemp("arrasset")
    _textured_scene(root / "scene.glb")
    outcome = convert(root, "scene.glb", root, "scene.arrAsset")
    assert outcome.succeeded, outcome.error_message
    return root / "scene.glb", root / "scene.arrAsset"


def test_vertex_record_is_the_renderers() -> None:
    # the asset's vertices are meant to be uploaded as they are: the two layouts must not drift apart
    assert VERTEX_DTYPE == _VERTEX_DTYPE
    assert VERTEX_DTYPE.itemsize == 36


def test_asset_gives_the_same_triangles_and_bounds_as_its_source(converted: tuple[Path, Path]) -> None:
    source_path, asset_path = converted
    source = load_model(str(source_path))
    asset = load_model(str(asset_path))
    assert asset.name == "scene.arrAsset"
    assert (asset.triangles, asset.points) == (source.triangles, source.points) == (12 + 12 + 1280, 0)
    np.testing.assert_allclose(asset.bounds_min, source.bounds_min, atol=1e-6)
    np.testing.assert_allclose(asset.bounds_max, source.bounds_max, atol=1e-6)
    # merged by material: the two boxes share a texture, the sphere has none
    assert len(source.meshes) == 3 and len(asset.meshes) == 2

    def corners(model: ModelData) -> np.ndarray:
        rows = [np.sort(m.positions[m.indices].reshape(-1, 9), axis=0) for m in model.meshes if m.indices is not None]
        return np.sort(np.concatenate(rows), axis=0)

    np.testing.assert_array_equal(corners(asset), corners(source))


def test_colours_uvs_and_texture_survive(converted: tuple[Path, Path]) -> None:
    source_path, asset_path = converted
    source = load_model(str(source_path))
    asset = load_model(str(asset_path))
    textured = [m for m in asset.meshes if m.texture is not None]
    assert len(textured) == 1 and textured[0].uvs is not None
    original = next(m for m in source.meshes if m.texture is not None)
    np.testing.assert_array_equal(textured[0].texture, original.texture)  # PNG is lossless
    assert textured[0].uvs is not None and original.uvs is not None
    np.testing.assert_allclose(textured[0].uvs[: len(original.uvs)], original.uvs, atol=1e-7)
    sphere_source = next(m for m in source.meshes if m.texture is None)
    sphere_asset = next(m for m in asset.meshes if m.texture is None)
    # colours go through RGBA8, as they do on their way to the GPU
    np.testing.assert_allclose(sphere_asset.colors, sphere_source.colors, atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(sphere_asset.normals, sphere_source.normals, atol=1e-6)


def test_arrays_are_aligned_views_of_the_file(converted: tuple[Path, Path]) -> None:
    data = converted[1].read_bytes()
    assert data[:8] == MAGIC
    header = np.frombuffer(data, dtype=HEADER, count=1)[0]
    toc = json.loads(data[HEADER.itemsize : HEADER.itemsize + int(header["toc_length"])])
    blobs = [m["vertices"] for m in toc["meshes"]] + [m["indices"] for m in toc["meshes"] if m["indices"]]
    # two triangle meshes (one per material): the collision structure has its own vertex space
    blobs += [toc["collision"][key] for key in ("positions", "corners", "boxMin", "boxMax")]
    assert all(blob["offset"] % ALIGN == 0 for blob in blobs)
    model = read_asset(data, "scene.arrAsset")
    mesh = model.meshes[0]
    # zero-copy: the arrays live in the bytes they were read from, which numpy cannot write to
    assert not mesh.positions.flags.writeable and not mesh.indices.flags.writeable  # type: ignore[union-attr]
    assert model.collision is not None and not model.collision.corners.flags.writeable


def test_a_single_mesh_shares_its_index_buffer_with_the_collision_structure(tmp_path: Path) -> None:
    trimesh.creation.icosphere(subdivisions=4).export(tmp_path / "ball.glb")
    assert convert(tmp_path, "ball.glb", tmp_path, "ball.arrAsset").succeeded
    data = (tmp_path / "ball.arrAsset").read_bytes()
    header = np.frombuffer(data, dtype=HEADER, count=1)[0]
    toc = json.loads(data[HEADER.itemsize : HEADER.itemsize + int(header["toc_length"])])
    assert toc["collision"]["mesh"] == 0 and "corners" not in toc["collision"]
    model = read_asset(data, "ball.arrAsset")
    assert model.collision is not None
    # the same objects, so that pickling the model (to a render process) sends them once
    assert model.collision.corners is model.meshes[0].indices
    assert model.collision.positions is model.meshes[0].positions
    # 5120 triangles of 12 bytes, 2562 vertices of 36, 80 chunk boxes of 24: no second copy of anything
    assert len(data) < 5120 * 12 + 2562 * 36 + 80 * 24 + 4096


def test_stored_collision_structure_gives_identical_ray_casts(converted: tuple[Path, Path]) -> None:
    source_path, asset_path = converted
    asset = load_model(str(asset_path))
    assert asset.collision is not None and asset.collision.count == asset.triangles
    rebuilt = triangle_chunks(asset)
    for name in ("positions", "corners", "box_min", "box_max"):
        np.testing.assert_array_equal(getattr(asset.collision, name), getattr(rebuilt, name))

    stored, fresh, original = RayCaster(), RayCaster(), RayCaster()
    stored.add(1, asset)
    fresh.add(1, ModelData(asset.name, asset.meshes, asset.bounds_min, asset.bounds_max, asset.triangles, 0))
    original.add(1, load_model(str(source_path)))
    transforms = {1: np.eye(4)}
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        # from all around, aimed at points inside the bounds: most rays hit, some pass between the parts
        origin = rng.normal(size=3)
        origin *= 12.0 / np.linalg.norm(origin)
        direction = rng.uniform(asset.bounds_min, asset.bounds_max) - origin
        a = stored.cast(origin, direction, transforms)
        assert a == fresh.cast(origin, direction, transforms)
        b = original.cast(origin, direction, transforms)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            hits += 1
            assert a.distance == pytest.approx(b.distance, abs=1e-5)
    assert hits > 50


def test_load_model_reads_assets_over_http_and_file_urls(converted: tuple[Path, Path]) -> None:
    asset_path = converted[1]
    local = load_model(str(asset_path))
    progress: list[float] = []
    with serve_directory(asset_path.parent) as base:
        # a SAS URL's query must not hide the suffix
        remote = load_model(f"{base}/scene.arrAsset?sv=2021-08-06&sp=r&sig=abc%3D", progress.append)
    by_file_url = load_model(asset_path.as_uri())
    for model in (remote, by_file_url):
        assert model.triangles == local.triangles
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


def test_write_and_read_round_trip_points_and_flags(tmp_path: Path) -> None:
    points = np.random.default_rng(1).uniform(-1, 1, (1000, 3)).astype(np.float32)
    colors = np.random.default_rng(2).uniform(0, 1, (1000, 4)).astype(np.float32)
    cloud = MeshData(points, np.zeros_like(points), colors, None, None, None, double_sided=True, unlit=True)
    model = ModelData("cloud.ply", [cloud], points.min(axis=0), points.max(axis=0), 0, 1000, TriangleChunks.empty())
    size = write_asset(tmp_path / "cloud.arrAsset", model)
    data = (tmp_path / "cloud.arrAsset").read_bytes()
    assert size == len(data)
    back = read_asset(data, "cloud.arrAsset")
    assert back.points == 1000 and back.triangles == 0 and back.meshes[0].indices is None
    assert back.meshes[0].unlit and back.meshes[0].uvs is None
    np.testing.assert_array_equal(back.meshes[0].positions, points)
    np.testing.assert_allclose(back.meshes[0].colors, colors, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: b"NOTASSET" + d[8:], "magic"),
        (lambda d: d[:8] + (2).to_bytes(4, "little") + d[12:], "version 2"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:16] + b"x" + d[17:], "not valid JSON"),
        (lambda d: b"", "empty"),
    ],
)
def test_damaged_assets_fail_with_a_precise_message(
    converted: tuple[Path, Path], tmp_path: Path, damage: Callable[[bytes], bytes], expected: str
) -> None:
    data = damage(converted[1].read_bytes())
    broken = tmp_path / "broken.arrAsset"
    broken.write_bytes(data)
    with pytest.raises(ModelLoadError) as error:
        load_model(str(broken))
    assert expected in str(error.value) and "broken.arrAsset" in str(error.value)
    with pytest.raises(AssetFormatError):
        read_asset(data, "broken.arrAsset")


def test_atomic_file_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.arrAsset"
    with pytest.raises(RuntimeError), atomic_file(target) as out:
        out.write(b"half a file")
        raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as out:
        out.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["model.arrAsset"]
