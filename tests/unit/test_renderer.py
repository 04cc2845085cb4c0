"""The offscreen renderer on the real EGL context: what lands in the frame, checked pixel by pixel."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import trimesh
from PIL import Image

from openrr.model.mesh import MeshData, ModelData
from openrr.render.camera import Camera
from openrr.render.renderer import PER_PIXEL_BELOW, Renderer

W, H = 256, 192
BACKGROUND = (0.12, 0.12, 0.14)
BG_BYTES = np.array([round(c * 255) for c in BACKGROUND], dtype=np.int16)
GREY = (0.7, 0.7, 0.7, 1.0)
Frame = npt.NDArray[np.uint8]


def mesh_data(
    tm: trimesh.Trimesh,
    color: tuple[float, float, float, float] = GREY,
    uvs: np.ndarray | None = None,
    texture: np.ndarray | None = None,
) -> MeshData:
    n = len(tm.vertices)
    return MeshData(
        positions=np.asarray(tm.vertices, dtype=np.float32),
        normals=np.asarray(tm.vertex_normals, dtype=np.float32),
        colors=np.tile(np.asarray(color, dtype=np.float32), (n, 1)),
        indices=np.asarray(tm.faces, dtype=np.uint32),
        uvs=uvs,
        texture=texture,
    )


def model_of(*meshes: MeshData, name: str = "test") -> ModelData:
    positions = np.concatenate([m.positions for m in meshes])
    triangles = sum(len(m.indices) for m in meshes if m.indices is not None)
    points = sum(len(m.positions) for m in meshes if m.indices is None)
    return ModelData(name, list(meshes), positions.min(axis=0), positions.max(axis=0), triangles, points)


def sphere(subdivisions: int = 3, color: tuple[float, float, float, float] = GREY) -> ModelData:
    return model_of(mesh_data(trimesh.creation.icosphere(subdivisions=subdivisions), color))


def object_mask(frame: Frame) -> npt.NDArray[np.bool_]:
    """Pixels that are not the background colour (±1 for rounding)."""
    return np.asarray((np.abs(frame.astype(np.int16) - BG_BYTES) > 1).any(axis=2))


def centroid(frame: Frame) -> tuple[float, float]:
    """(column, row) of the object's pixels, row 0 at the top."""
    rows, cols = np.nonzero(object_mask(frame))
    assert len(rows), "nothing rendered"
    return float(cols.mean()), float(rows.mean())


def project(camera: Camera, points: np.ndarray, width: int, height: int) -> np.ndarray:
    """World points → (column, row) pixel coordinates, written out independently of the renderer's matrices."""
    eye = np.asarray(camera.position, dtype=np.float64)
    forward = np.asarray(camera.target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, camera.up)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = points - eye
    x, y, depth = rel @ right, rel @ up, rel @ forward
    assert (depth > camera.near).all()
    f = 1.0 / math.tan(math.radians(camera.fov_y_deg) / 2)
    ndc_x = f / (width / height) * x / depth
    ndc_y = f * y / depth
    return np.stack([(ndc_x + 1) / 2 * width, (1 - ndc_y) / 2 * height], axis=1)


@pytest.fixture
def renderer() -> Iterator[Renderer]:
    r = Renderer(W, H, background=BACKGROUND)
    yield r
    r.release()


def test_background_outside_the_projected_bounds_and_model_inside(renderer: Renderer) -> None:
    model = sphere()
    renderer.add_model(1, model)
    frame, stats = renderer.render()
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert stats.triangles_drawn == model.triangles and stats.points_drawn == 0 and stats.render_ms > 0

    lo, hi = model.bounds_min, model.bounds_max
    corners = np.array(list(itertools.product(*zip(lo, hi, strict=True))), dtype=np.float64)
    px = project(Camera(), corners, W, H)
    c0, r0 = np.floor(px.min(axis=0)).astype(int) - 1
    c1, r1 = np.ceil(px.max(axis=0)).astype(int) + 1
    assert 0 < c0 < c1 < W and 0 < r0 < r1 < H

    mask = object_mask(frame)
    outside = mask.copy()
    outside[r0:r1, c0:c1] = False
    assert not outside.any(), "model pixels outside its projected bounding box"
    assert mask[r0:r1, c0:c1].mean() > 0.4
    assert mask[H // 2, W // 2]
    assert (np.abs(frame[0, 0].astype(np.int16) - BG_BYTES) <= 1).all()


def test_camera_and_transform_move_the_object_the_expected_way(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    x0, y0 = centroid(renderer.render()[0])
    assert abs(x0 - W / 2) < 2 and abs(y0 - H / 2) < 2

    renderer.set_camera(Camera(position=(1.0, 0.0, 5.0), target=(1.0, 0.0, 0.0)))
    x1, y1 = centroid(renderer.render()[0])
    assert x1 < x0 - 10 and abs(y1 - y0) < 2, "camera moved right: the object must move left"

    renderer.set_camera(Camera())
    shift = np.identity(4)
    shift[:3, 3] = (0.5, 0.8, 0.0)
    renderer.set_transform(1, shift)
    x2, y2 = centroid(renderer.render()[0])
    assert x2 > x0 + 10, "+x in the world is to the right"
    assert y2 < y0 - 10, "+y in the world is up, and row 0 is the top"
    expected = project(Camera(), np.array([[0.5, 0.8, 0.0]]), W, H)[0]
    assert abs(x2 - expected[0]) < 3 and abs(y2 - expected[1]) < 3


def test_hidden_leaves_only_background(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    renderer.set_override(1, hidden=True)
    frame, stats = renderer.render()
    assert not object_mask(frame).any()
    assert stats.triangles_drawn == 0
    renderer.set_override(1, tint=(1, 0, 0, 1))  # None leaves hidden as it was
    assert not object_mask(renderer.render()[0]).any()
    renderer.set_override(1, hidden=False)
    assert object_mask(renderer.render()[0]).any()


def test_cut_plane_through_the_middle_removes_one_side(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    renderer.set_cut_planes([((1.0, 0.0, 0.0), (0.0, 0.0, 0.0))])  # keep x >= 0
    mask = object_mask(renderer.render()[0])
    assert not mask[:, : W // 2 - 1].any(), "the x < 0 half must be cut away"
    assert mask[:, W // 2 + 1 :].sum() > 500

    renderer.set_cut_planes([((-2.0, 0.0, 0.0), (0.0, 0.0, 0.0))])  # the other side; length doesn't matter
    mask = object_mask(renderer.render()[0])
    assert not mask[:, W // 2 + 1 :].any()
    assert mask[:, : W // 2 - 1].sum() > 500

    renderer.set_cut_planes([])
    mask = object_mask(renderer.render()[0])
    assert mask[:, : W // 2 - 1].any() and mask[:, W // 2 + 1 :].any()


def test_tint_changes_colour_and_clears(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    plain = renderer.render()[0]
    mask = object_mask(plain)
    r, g, b = plain[mask].astype(float).mean(axis=0)
    assert abs(r - g) < 3 and abs(g - b) < 3

    renderer.set_override(1, tint=(1.0, 0.0, 0.0, 1.0))
    tinted = renderer.render()[0]
    r, g, b = tinted[mask].astype(float).mean(axis=0)
    assert r > 2 * g and r > 2 * b

    renderer.set_override(1, tint=(0.0, 0.0, 1.0, 0.5))
    r, g, b = renderer.render()[0][mask].astype(float).mean(axis=0)
    assert b > r + 20 and r > 30, "half tint blends the tint over the base colour"

    renderer.set_override(1, tint=(0.0, 0.0, 0.0, 0.0))
    assert np.array_equal(renderer.render()[0], plain)


def test_point_cloud_renders_its_colours(renderer: Renderer) -> None:
    rng = np.random.default_rng(7)
    n = 3000
    cloud = MeshData(
        positions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        normals=np.zeros((n, 3), dtype=np.float32),
        colors=np.tile(np.array([0.1, 0.9, 0.2, 1.0], dtype=np.float32), (n, 1)),
        indices=None,
        uvs=None,
        texture=None,
    )
    renderer.add_model(1, model_of(cloud))
    frame, stats = renderer.render()
    mask = object_mask(frame)
    assert mask.sum() > 2000
    r, g, b = frame[mask].astype(float).mean(axis=0)
    assert g > 2 * r and g > 2 * b
    assert stats.points_drawn == n and stats.triangles_drawn == 0


def test_texture_colours_appear(renderer: Renderer) -> None:
    box = trimesh.creation.box(extents=(1.5, 1.5, 1.5))
    uvs = (np.asarray(box.vertices)[:, :2] / 1.5 + 0.5).astype(np.float32)
    red = np.zeros((4, 4, 4), dtype=np.uint8)
    red[..., 0] = red[..., 3] = 255
    renderer.add_model(1, model_of(mesh_data(box, color=(1, 1, 1, 1), uvs=uvs, texture=red)))
    renderer.set_camera(Camera(position=(2.0, 2.0, 4.0)))
    frame = renderer.render()[0]
    mask = object_mask(frame)
    assert mask.sum() > 1000
    r, g, b = frame[mask].astype(float).mean(axis=0)
    assert r > 3 * max(g, b, 1.0)


def test_texture_rows_follow_gltf_uvs(renderer: Renderer) -> None:
    """model/trimesh_import.py's convention: uv (0, 0) is the top-left texel, row 0 of the image array."""
    quad = trimesh.Trimesh(
        vertices=[[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]], process=False
    )
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    image = np.zeros((8, 8, 4), dtype=np.uint8)
    image[:4, :, 0] = 255  # top half red
    image[4:, :, 2] = 255  # bottom half blue
    image[..., 3] = 255
    renderer.add_model(1, model_of(mesh_data(quad, color=(1, 1, 1, 1), uvs=uvs, texture=image)))
    frame = renderer.render()[0].astype(int)
    top, bottom = frame[H // 2 - 20, W // 2], frame[H // 2 + 20, W // 2]
    assert top[0] > top[2] + 50, f"top of the quad should be red, got {top}"
    assert bottom[2] > bottom[0] + 50, f"bottom of the quad should be blue, got {bottom}"


def test_over_limit_draws_a_checkerboard_instead_of_the_scene(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    scene = renderer.render()[0]
    renderer.set_over_limit(True)
    frame = renderer.render()[0]
    colours = np.unique(frame.reshape(-1, 3), axis=0)
    assert len(colours) == 2, "only the two checker colours, no model"
    a = frame[0, 0]
    cell = next(x for x in range(1, W) if not np.array_equal(frame[0, x], a))
    assert 8 <= cell <= 64
    assert np.array_equal(frame[0, 2 * cell], a) and np.array_equal(frame[cell, cell], a)
    assert not np.array_equal(frame[cell, 0], a)
    renderer.set_over_limit(False)
    assert np.array_equal(renderer.render()[0], scene)


def test_rgba_readback_matches_rgb(renderer: Renderer) -> None:
    """The render process reads RGBA (faster on llvmpipe): the same picture, opaque."""
    renderer.add_model(1, sphere())
    rgb = renderer.render()[0]
    rgba = np.empty((H, W, 4), dtype=np.uint8)
    assert renderer.render(into=rgba)[0] is rgba
    assert np.array_equal(rgba[..., :3], rgb) and (rgba[..., 3] == 255).all()
    with pytest.raises(ValueError, match="x3 or x4"):
        renderer.render(into=np.empty((H, W, 2), dtype=np.uint8))


def test_resize_changes_the_frame_shape(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    renderer.resize(200, 100)
    frame = renderer.render()[0]
    assert frame.shape == (100, 200, 3)
    x, y = centroid(frame)
    assert abs(x - 100) < 2 and abs(y - 50) < 2
    with pytest.raises(ValueError):
        renderer.resize(0, 10)


def test_more_than_eight_cut_planes_is_an_error(renderer: Renderer) -> None:
    plane = ((0.0, 1.0, 0.0), (0.0, -5.0, 0.0))
    renderer.set_cut_planes([plane] * 8)
    with pytest.raises(ValueError):
        renderer.set_cut_planes([plane] * 9)
    with pytest.raises(ValueError):
        renderer.set_cut_planes([((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))])


def test_selected_draws_a_visible_outline(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    plain = object_mask(renderer.render()[0])
    renderer.set_override(1, selected=True)
    frame = renderer.render()[0]
    mask = object_mask(frame)
    rim = mask & ~plain
    assert rim.sum() > 100, "the outline must reach past the silhouette"
    r, g, b = frame[rim].astype(float).mean(axis=0)
    assert r > g > b, "in the highlight colour"


def test_see_through_shows_what_is_behind(renderer: Renderer) -> None:
    renderer.add_model(1, sphere(color=(1.0, 0.0, 0.0, 1.0)))
    front = trimesh.creation.box(extents=(3.0, 3.0, 0.2))
    front.apply_translation((0, 0, 2))
    renderer.add_model(2, model_of(mesh_data(front, color=(0.5, 0.5, 0.5, 1.0))))
    centre = renderer.render()[0][H // 2, W // 2].astype(int)
    assert abs(centre[0] - centre[1]) < 3, "the opaque box hides the red sphere"
    renderer.set_override(2, see_through=True)
    centre = renderer.render()[0][H // 2, W // 2].astype(int)
    assert centre[0] > centre[1] + 40, f"the red sphere shows through, got {centre}"


def test_remove_and_bad_input(renderer: Renderer) -> None:
    renderer.add_model(1, sphere())
    with pytest.raises(ValueError):
        renderer.set_transform(1, np.identity(3))
    with pytest.raises(KeyError):
        renderer.set_override(99, hidden=True)
    with pytest.raises(ValueError):
        Camera(position=(0.0, 0.0, 0.0))
    renderer.remove(1)
    renderer.remove(1)
    assert not object_mask(renderer.render()[0]).any()


def test_frame_rate_at_720p_100k_triangles(capsys: pytest.CaptureFixture[str]) -> None:
    """Not an assertion: prints the figure to compare with the design notes (84 fps on 2-core llvmpipe)."""
    a, b = trimesh.creation.icosphere(subdivisions=6), trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    b.apply_translation((1.5, 0, 0))
    model = model_of(mesh_data(a), mesh_data(b))
    with Renderer(1280, 720) as r:
        r.add_model(1, model)
        for _ in range(3):
            r.render()
        frames = 30
        start = time.perf_counter()
        for _ in range(frames):
            _, stats = r.render()
        fps = frames / (time.perf_counter() - start)
        with capsys.disabled():
            print(f"\n{r.gl_renderer}: {stats.triangles_drawn} triangles at 1280x720: {fps:.1f} fps")
    assert stats.triangles_drawn == 102400


def test_see_through_blends_every_layer(renderer: Renderer) -> None:
    """Front half red, back half blue: the blue back half must show through wherever the front covers it."""
    tm = trimesh.creation.icosphere(subdivisions=3)
    mesh = mesh_data(tm, color=(1.0, 0.0, 0.0, 1.0))
    mesh.colors[np.asarray(tm.vertices)[:, 2] < 0] = (0.0, 0.0, 1.0, 1.0)
    renderer.add_model(1, model_of(mesh))
    renderer.set_override(1, see_through=True)
    frame = renderer.render()[0].astype(int)
    centre = frame[H // 2 - 20 : H // 2 + 20, W // 2 - 20 : W // 2 + 20].reshape(-1, 3)
    assert (centre[:, 0] > BG_BYTES[0] + 10).all(), "the red front half is drawn"
    assert (centre[:, 2] > BG_BYTES[2] + 5).all(), "the blue back half shows through everywhere"


def test_see_through_does_not_write_depth(renderer: Renderer) -> None:
    """A see-through sphere inside another, same centre (no sort order helps): the inner one still shows."""
    renderer.add_model(1, sphere(color=(1.0, 0.0, 0.0, 1.0)))
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    renderer.add_model(2, model_of(mesh_data(inner, color=(0.0, 0.0, 1.0, 1.0))))
    renderer.set_override(1, see_through=True)
    renderer.set_override(2, see_through=True)
    centre = renderer.render()[0][H // 2 - 10 : H // 2 + 10, W // 2 - 10 : W // 2 + 10].reshape(-1, 3).astype(int)
    assert (centre[:, 2] > BG_BYTES[2] + 10).all(), "the inner blue sphere shows through the outer one"


def test_a_textured_glb_from_the_loader_renders_right_side_up(renderer: Renderer, tmp_path: Path) -> None:
    """End to end with model/trimesh_import.py: its uv convention and the renderer's texture upload must agree."""
    load_model = pytest.importorskip("tests.local_files").load_model
    image = np.zeros((8, 8, 4), dtype=np.uint8)
    image[:4, :, 0] = 255  # top half red
    image[4:, :, 2] = 255  # bottom half blue
    image[..., 3] = 255
    quad = trimesh.Trimesh(
        vertices=[[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]],
        faces=[[0, 1, 2], [0, 2, 3]],
        visual=trimesh.visual.TextureVisuals(  # type: ignore[no-untyped-call]
            uv=[[0, 0], [1, 0], [1, 1], [0, 1]],  # trimesh's convention: v up from the image's bottom row
            image=Image.fromarray(image),
        ),
        process=False,
    )
    path = tmp_path / "quad.glb"
    quad.export(path)
    renderer.add_model(1, load_model(str(path)))
    frame = renderer.render()[0].astype(int)
    top, bottom = frame[H // 2 - 20, W // 2], frame[H // 2 + 20, W // 2]
    assert top[0] > top[2] + 50, f"top of the quad should be red, got {top}"
    assert bottom[2] > bottom[0] + 50, f"bottom of the quad should be blue, got {bottom}"


def test_dense_meshes_lit_per_vertex_look_like_coarse_ones_lit_per_pixel(renderer: Renderer) -> None:
    """Dense meshes are lit per vertex (cheaper on llvmpipe), coarse ones per pixel: the same sphere must look the
    same either way, pixel for pixel within a few levels."""
    coarse, dense = sphere(subdivisions=4), sphere(subdivisions=6)  # 5,120 and 81,920 triangles
    assert coarse.triangles < PER_PIXEL_BELOW <= dense.triangles
    renderer.add_model(1, coarse)
    per_pixel = renderer.render()[0].astype(np.int16)
    renderer.add_model(1, dense)
    per_vertex = renderer.render()[0].astype(np.int16)
    both = object_mask(per_pixel.astype(np.uint8)) & object_mask(per_vertex.astype(np.uint8))
    assert both.sum() > 2000
    diff = np.abs(per_pixel[both] - per_vertex[both])
    assert np.median(diff) <= 2 and np.percentile(diff, 99) <= 12


def test_unlit_meshes_show_their_own_colour(renderer: Renderer) -> None:
    model = sphere(subdivisions=3, color=(0.5, 0.25, 0.75, 1.0))
    model.meshes[0].unlit = True
    renderer.add_model(1, model)
    frame = renderer.render()[0]
    inside = frame[object_mask(frame)].astype(np.int16)
    assert len(inside) > 2000
    assert (np.abs(inside - [128, 64, 191]) <= 1).all(), "every pixel in the mesh's colour, unshaded"


def test_single_sided_meshes_hide_their_back(renderer: Renderer) -> None:
    quad = trimesh.Trimesh(
        vertices=[(-1, -1, 0), (1, -1, 0), (1, 1, 0), (-1, 1, 0)], faces=[(0, 1, 2), (0, 2, 3)], process=False
    )  # counter-clockwise seen from +z: its front faces the default camera at (0, 0, 5)
    model = model_of(mesh_data(quad))
    renderer.add_model(1, model)
    renderer.set_camera(Camera(position=(0, 0, -5)))
    assert object_mask(renderer.render()[0]).mean() > 0.05, "double-sided (the default): the back shows"
    model.meshes[0].double_sided = False
    renderer.add_model(1, model)
    assert not object_mask(renderer.render()[0]).any(), "single-sided: the back is culled"
    renderer.set_camera(Camera(position=(0, 0, 5)))
    assert object_mask(renderer.render()[0]).mean() > 0.05, "single-sided: the front still shows"
    renderer.set_override(1, see_through=True)
    assert object_mask(renderer.render()[0]).mean() > 0.05, "and see-through"
