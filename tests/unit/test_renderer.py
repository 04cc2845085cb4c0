"""The offscreen renderer on the real EGL context: what lands in the frame, checked pixel by pixel."""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import trimesh
from PIL import Image

from openrr.model.mesh import (
    CLAMP_TO_EDGE,
    MIRRORED_REPEAT,
    NEAREST,
    REPEAT,
    ImageData,
    Material,
    MeshData,
    ModelData,
    Node,
    Sampler,
    TextureRef,
    default_material,
)
from openrr.render.camera import Camera
from openrr.render.environment import environment_from_equirect
from openrr.render.lighting import Light
from openrr.render.renderer import PER_PIXEL_BELOW, Renderer

W, H = 256, 192
BACKGROUND = (0.12, 0.12, 0.14)
"""sRGB display values: the cleared pixels read back as exactly these bytes."""
BG_BYTES = np.array([round(c * 255) for c in BACKGROUND], dtype=np.int16)
Frame = npt.NDArray[np.uint8]


def srgb(linear: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """three.js's sRGBTransferOETF (exponent 0.41666), in bytes."""
    c = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c**0.41666 - 0.055) * 255.0


def mesh_data(
    tm: trimesh.Trimesh,
    color: tuple[float, float, float, float] | None = None,
    uvs: np.ndarray | None = None,
    material: int = 0,
    node: int = 0,
    uvs1: np.ndarray | None = None,
) -> MeshData:
    n = len(tm.vertices)
    return MeshData(
        positions=np.asarray(tm.vertices, dtype=np.float32),
        normals=np.asarray(tm.vertex_normals, dtype=np.float32),
        colors=np.tile(np.asarray(color or (1.0, 1.0, 1.0, 1.0), dtype=np.float32), (n, 1)),
        indices=np.asarray(tm.faces, dtype=np.uint32),
        uvs=uvs,
        uvs1=uvs1,
        material=material,
        node=node,
    )


def model_of(
    *meshes: MeshData,
    materials: list[Material] | None = None,
    images: list[np.ndarray] | None = None,
    nodes: list[Node] | None = None,
    name: str = "test",
) -> ModelData:
    positions = np.concatenate([m.positions for m in meshes])
    triangles = sum(len(m.indices) for m in meshes if m.indices is not None)
    points = sum(len(m.positions) for m in meshes if m.indices is None)
    return ModelData(
        name,
        list(meshes),
        positions.min(axis=0),
        positions.max(axis=0),
        triangles,
        points,
        materials=materials or [default_material()],
        images=[ImageData(np.asarray(i, dtype=np.uint8)) for i in images or []],
        nodes=nodes or [],
    )


def grey(**changes: Any) -> Material:
    """A grey dielectric (base colour linear 0.5), double-sided."""
    return dataclasses.replace(
        Material(base_color=(0.5, 0.5, 0.5, 1.0), metallic=0.0, roughness=0.5, double_sided=True), **changes
    )


def sphere(subdivisions: int = 3, material: Material | None = None) -> ModelData:
    return model_of(mesh_data(trimesh.creation.icosphere(subdivisions=subdivisions)), materials=[material or grey()])


def quad(size: float = 1.0, z: float = 0.0, x: float = 0.0) -> trimesh.Trimesh:
    """Counter-clockwise seen from +z (its front faces the default camera at (0, 0, 5)), uv (0, 0) top-left."""
    s = size
    return trimesh.Trimesh(
        vertices=[[x - s, -s, z], [x + s, -s, z], [x + s, s, z], [x - s, s, z]],
        faces=[[0, 1, 2], [0, 2, 3]],
        process=False,
    )


QUAD_UVS = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)


def object_mask(frame: Frame) -> npt.NDArray[np.bool_]:
    """Pixels that are not the background colour (±1 for rounding)."""
    return np.asarray((np.abs(frame.astype(np.int16) - BG_BYTES[: frame.shape[2]]) > 1).any(axis=2))


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


def centre_patch(frame: Frame, half: int = 8) -> npt.NDArray[np.int16]:
    return (
        frame[H // 2 - half : H // 2 + half, W // 2 - half : W // 2 + half].reshape(-1, frame.shape[2]).astype(np.int16)
    )


@pytest.fixture
def renderer() -> Iterator[Renderer]:
    r = Renderer(W, H, background=BACKGROUND)
    yield r
    r.release()


@pytest.fixture
def exact(renderer: Renderer) -> Renderer:
    """No anti-aliasing, no environment: pixel values come from the formulas alone."""
    renderer.set_antialiasing("none")
    renderer.set_environment(environment_from_equirect(np.zeros((32, 64, 3), np.float32), "black"), 0.0)
    return renderer


# -- geometry, camera, overrides (whole model) -----------------------------------------------------------------


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
    assert abs(r - g) < 6 and abs(g - b) < 6

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
    )
    renderer.set_antialiasing("none")
    renderer.add_model(1, model_of(cloud))
    frame, stats = renderer.render()
    mask = object_mask(frame)
    assert mask.sum() > 2000
    r, g, b = frame[mask].astype(float).mean(axis=0)
    assert g > r + 100 and g > b + 100
    assert stats.points_drawn == n and stats.triangles_drawn == 0
    # no normals: unlit, the vertex colour as it is (sRGB-encoded)
    assert (np.abs(np.median(frame[mask].astype(float), axis=0) - srgb([0.1, 0.9, 0.2])) <= 2).all()


def test_texture_colours_appear(renderer: Renderer) -> None:
    box = trimesh.creation.box(extents=(1.5, 1.5, 1.5))
    uvs = (np.asarray(box.vertices)[:, :2] / 1.5 + 0.5).astype(np.float32)
    red = np.zeros((4, 4, 4), dtype=np.uint8)
    red[..., 0] = red[..., 3] = 255
    material = grey(base_color=(1.0, 1.0, 1.0, 1.0), base_color_texture=TextureRef(0))
    renderer.add_model(1, model_of(mesh_data(box, uvs=uvs), materials=[material], images=[red]))
    renderer.set_camera(Camera(position=(2.0, 2.0, 4.0)))
    frame = renderer.render()[0]
    mask = object_mask(frame)
    assert mask.sum() > 1000
    r, g, b = frame[mask].astype(float).mean(axis=0)
    assert r > 3 * max(g, b, 1.0)


def two_tone(top: tuple[int, int, int], bottom: tuple[int, int, int], size: int = 8) -> np.ndarray:
    image = np.zeros((size, size, 4), dtype=np.uint8)
    image[: size // 2, :, :3] = top
    image[size // 2 :, :, :3] = bottom
    image[..., 3] = 255
    return image


def test_texture_rows_follow_gltf_uvs(renderer: Renderer) -> None:
    """model/mesh.py's convention: uv (0, 0) is the top-left texel, row 0 of the image array."""
    material = grey(base_color=(1.0, 1.0, 1.0, 1.0), base_color_texture=TextureRef(0))
    image = two_tone((255, 0, 0), (0, 0, 255))
    renderer.add_model(1, model_of(mesh_data(quad(), uvs=QUAD_UVS), materials=[material], images=[image]))
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
    for mode in ("none", "fxaa", "msaa"):
        renderer.set_antialiasing(mode)
        renderer.resize(200, 100)
        frame = renderer.render()[0]
        assert frame.shape == (100, 200, 3)
        x, y = centroid(frame)
        assert abs(x - 100) < 2 and abs(y - 50) < 2
        renderer.resize(W, H)
    with pytest.raises(ValueError):
        renderer.resize(0, 10)
    with pytest.raises(ValueError, match="antialiasing"):
        renderer.set_antialiasing("ssaa")


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
    renderer.add_model(1, sphere(material=grey(base_color=(1.0, 0.0, 0.0, 1.0))))
    front = trimesh.creation.box(extents=(3.0, 3.0, 0.2))
    front.apply_translation((0, 0, 2))
    renderer.add_model(2, model_of(mesh_data(front), materials=[grey()]))
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
        renderer.set_node_states(1, [5], np.zeros((1, 7)))
    with pytest.raises(ValueError):
        renderer.set_node_matrices(1, [0], np.identity(4)[None].repeat(2, axis=0))
    with pytest.raises(ValueError):
        renderer.set_output(0.0, "none")
    with pytest.raises(ValueError):
        renderer.set_output(1.0, "reinhard")
    with pytest.raises(ValueError):
        renderer.set_lights([Light("point")] * 9)
    with pytest.raises(ValueError):
        Camera(position=(0.0, 0.0, 0.0))
    renderer.remove(1)
    renderer.remove(1)
    assert not object_mask(renderer.render()[0]).any()


def test_see_through_blends_every_layer(renderer: Renderer) -> None:
    """Front half red, back half blue: the blue back half must show through wherever the front covers it."""
    tm = trimesh.creation.icosphere(subdivisions=3)
    mesh = mesh_data(tm, color=(1.0, 0.0, 0.0, 1.0))
    mesh.colors[np.asarray(tm.vertices)[:, 2] < 0] = (0.0, 0.0, 1.0, 1.0)
    renderer.add_model(1, model_of(mesh, materials=[grey(base_color=(1.0, 1.0, 1.0, 1.0))]))
    renderer.set_override(1, see_through=True)
    frame = renderer.render()[0].astype(int)
    centre = frame[H // 2 - 20 : H // 2 + 20, W // 2 - 20 : W // 2 + 20].reshape(-1, 3)
    assert (centre[:, 0] > BG_BYTES[0] + 10).all(), "the red front half is drawn"
    assert (centre[:, 2] > BG_BYTES[2] + 5).all(), "the blue back half shows through everywhere"


def test_see_through_does_not_write_depth(renderer: Renderer) -> None:
    """A see-through sphere inside another, same centre (no sort order helps): the inner one still shows."""
    renderer.add_model(1, sphere(material=grey(base_color=(1.0, 0.0, 0.0, 1.0))))
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    renderer.add_model(2, model_of(mesh_data(inner), materials=[grey(base_color=(0.0, 0.0, 1.0, 1.0))]))
    renderer.set_override(1, see_through=True)
    renderer.set_override(2, see_through=True)
    centre = renderer.render()[0][H // 2 - 10 : H // 2 + 10, W // 2 - 10 : W // 2 + 10].reshape(-1, 3).astype(int)
    assert (centre[:, 2] > BG_BYTES[2] + 10).all(), "the inner blue sphere shows through the outer one"


def test_a_textured_glb_from_the_loader_renders_right_side_up(renderer: Renderer, tmp_path: Path) -> None:
    """End to end with the model loader: its uv convention and the renderer's texture upload must agree."""
    load_model = pytest.importorskip("tests.local_files").load_model
    image = two_tone((255, 0, 0), (0, 0, 255))
    tm = quad()
    tm.visual = trimesh.visual.TextureVisuals(  # type: ignore[no-untyped-call]
        uv=[[0, 0], [1, 0], [1, 1], [0, 1]],  # trimesh's convention: v up from the image's bottom row
        image=Image.fromarray(image),
    )
    path = tmp_path / "quad.glb"
    tm.export(path)
    renderer.add_model(1, load_model(str(path)))
    frame = renderer.render()[0].astype(int)
    top, bottom = frame[H // 2 - 20, W // 2], frame[H // 2 + 20, W // 2]
    assert top[0] > top[2] + 50, f"top of the quad should be red, got {top}"
    assert bottom[2] > bottom[0] + 50, f"bottom of the quad should be blue, got {bottom}"


def test_single_sided_materials_hide_their_back(renderer: Renderer) -> None:
    model = model_of(mesh_data(quad()), materials=[grey()])
    renderer.add_model(1, model)
    renderer.set_camera(Camera(position=(0, 0, -5)))
    assert object_mask(renderer.render()[0]).mean() > 0.05, "double-sided: the back shows"
    renderer.set_material(1, 0, grey(double_sided=False))
    assert not object_mask(renderer.render()[0]).any(), "single-sided: the back is culled"
    renderer.set_camera(Camera(position=(0, 0, 5)))
    assert object_mask(renderer.render()[0]).mean() > 0.05, "single-sided: the front still shows"
    renderer.set_override(1, see_through=True)
    assert object_mask(renderer.render()[0]).mean() > 0.05, "and see-through"


@pytest.mark.parametrize("per_pixel_below", [PER_PIXEL_BELOW, 0], ids=["per-pixel", "per-vertex"])
def test_double_sided_back_faces_are_lit_with_the_flipped_normal(exact: Renderer, per_pixel_below: int) -> None:
    """A light behind the camera lights the quad's back as brightly as its front when it is double-sided (also lit
    per vertex: a flat quad passes PER_PIXEL_BELOW's other conditions)."""
    exact.per_pixel_below = per_pixel_below
    exact.add_model(1, model_of(mesh_data(quad()), materials=[grey()]))
    exact.set_lights([Light("directional", intensity=2.0, direction=(0.0, 0.0, -1.0))])
    front = centre_patch(exact.render()[0]).mean(axis=0)
    exact.set_camera(Camera(position=(0, 0, -5)))
    exact.set_lights([Light("directional", intensity=2.0, direction=(0.0, 0.0, 1.0))])
    back = centre_patch(exact.render()[0]).mean(axis=0)
    assert front[0] > 100 and np.abs(front - back).max() <= 1


# -- colour: materials, light, output -------------------------------------------------------------------------


def test_unlit_patch_shows_its_colour_srgb_encoded(exact: Renderer) -> None:
    """The issue's figure: linear (0.089, 0.179, 0.640) shows as about (84, 117, 209)."""
    material = Material(base_color=(0.089, 0.179, 0.640, 1.0), unlit=True, double_sided=True)
    exact.add_model(1, model_of(mesh_data(quad()), materials=[material]))
    patch = centre_patch(exact.render()[0])
    assert (np.abs(patch - [84, 117, 209]) <= 2).all(), patch[0]


def test_unlit_ignores_light_and_vertex_colour_multiplies(renderer: Renderer) -> None:
    material = Material(base_color=(1.0, 0.5, 1.0, 1.0), unlit=True, double_sided=True)
    renderer.add_model(1, model_of(mesh_data(quad(), color=(0.5, 0.5, 0.75, 1.0)), materials=[material]))
    renderer.set_lights([Light("directional", intensity=10.0)])
    patch = centre_patch(renderer.render()[0])
    assert (np.abs(patch - srgb([0.5, 0.25, 0.75])) <= 1).all(), patch[0]


def test_emissive_only_material_shows_emissive_times_strength(exact: Renderer) -> None:
    material = Material(base_color=(0.0, 0.0, 0.0, 1.0), metallic=0.0, emissive=(0.2, 0.05, 0.1), emissive_strength=2.5)
    exact.add_model(1, model_of(mesh_data(quad()), materials=[material]))
    patch = centre_patch(exact.render()[0])
    assert (np.abs(patch - srgb([0.5, 0.125, 0.25])) <= 1).all(), patch[0]


def lambert_plus_ggx(albedo: float, roughness: float, irradiance: float) -> float:
    """three.js's direct light at normal incidence (l = v = n): Lambert × (1 - F) plus GGX with its multiple-scattering
    compensation left out (below 0.5 % here), for a dielectric (F0 = 0.04)."""
    fresnel = 0.04 * (1 - 2 ** (-5.55473 - 6.98316)) + 2 ** (-5.55473 - 6.98316)
    a2 = roughness**4
    d = a2 / (math.pi * a2**2)
    v = 0.5 / (2 * math.sqrt(a2 + (1 - a2)))
    return irradiance * (albedo / math.pi * (1 - fresnel) + fresnel * v * d)


def test_white_plane_under_a_light_of_intensity_pi_is_white(exact: Renderer) -> None:
    """BRDF_Lambert = albedo / π and no π on the light (three.js r155+): E = π lux on albedo 1 gives 1.0 less the
    Fresnel share three.js r187 takes from the diffuse layer (4 %), plus a little specular: 0.97 → 252."""
    white = Material(base_color=(1.0, 1.0, 1.0, 1.0), metallic=0.0, roughness=1.0)
    exact.add_model(1, model_of(mesh_data(quad(3.0)), materials=[white]))
    exact.set_lights([Light("directional", intensity=math.pi, direction=(0.0, 0.0, -1.0))])
    frame = exact.render()[0]
    assert (np.abs(frame[H // 2, W // 2] - srgb(lambert_plus_ggx(1.0, 1.0, math.pi))) <= 2).all()
    exact.set_lights([Light("directional", intensity=math.pi / 4, direction=(0.0, 0.0, -1.0))])
    centre = exact.render()[0][H // 2 - 1 : H // 2 + 1, W // 2 - 1 : W // 2 + 1].reshape(-1, 3).astype(float)
    expected = srgb(lambert_plus_ggx(1.0, 1.0, math.pi / 4))
    assert (np.abs(centre - expected) <= 2).all(), (centre[0], expected)


def test_point_and_spot_lights_fall_off_as_three_js(exact: Renderer) -> None:
    white = Material(base_color=(1.0, 1.0, 1.0, 1.0), metallic=0.0, roughness=1.0)
    exact.add_model(1, model_of(mesh_data(quad(3.0)), materials=[white]))
    # A point light 2 units in front of the quad's centre: E = I / d² at normal incidence.
    exact.set_lights([Light("point", intensity=4.0 * math.pi / 4, position=(0.0, 0.0, 2.0))])
    centre = exact.render()[0][H // 2, W // 2].astype(float)
    assert (np.abs(centre - srgb(lambert_plus_ggx(1.0, 1.0, math.pi / 4))) <= 2).all()
    # range: the window (1 - (d/range)^4)^2 → at d = range / 2^(1/4) it is 1/4
    light = Light("point", intensity=4.0 * math.pi / 4, position=(0.0, 0.0, 2.0), range=2.0 * 2**0.25)
    exact.set_lights([light])
    centre = exact.render()[0][H // 2, W // 2].astype(float)
    assert (np.abs(centre - srgb(lambert_plus_ggx(1.0, 1.0, math.pi / 16))) <= 2).all()
    # A spot light pointing at the quad lights a disc: inside its inner cone as a point light, outside nothing.
    spot = Light(
        "spot",
        intensity=math.pi,
        position=(0.0, 0.0, 2.0),
        direction=(0.0, 0.0, -1.0),
        inner_cone_angle=0.2,
        outer_cone_angle=0.3,
    )
    exact.set_lights([spot])
    frame = exact.render()[0]
    assert (np.abs(frame[H // 2, W // 2].astype(float) - srgb(lambert_plus_ggx(1.0, 1.0, math.pi / 4))) <= 2).all()
    outside = project(Camera(), np.array([[2.0 * math.tan(0.35), 0.0, 0.0]]), W, H)[0]
    assert (frame[H // 2, int(outside[0]) + 1] == 0).all(), "past the outer cone: dark"


def uniform_environment(radiance: float) -> object:
    return environment_from_equirect(np.full((64, 128, 3), radiance, dtype=np.float32), "uniform")


def test_white_furnace_a_rough_white_dielectric_in_a_uniform_sky_shows_the_sky(exact: Renderer) -> None:
    """Energy conservation: in a uniform environment of radiance L a white surface reflects about L (diffuse
    with its Fresnel loss and the specular lobe with multiple scattering add up to nearly 1)."""
    exact.set_environment(uniform_environment(0.5), 1.0)  # type: ignore[arg-type]
    exact.add_model(1, sphere(4, Material(base_color=(1.0, 1.0, 1.0, 1.0), metallic=0.0, roughness=1.0)))
    patch = centre_patch(exact.render()[0], 20).astype(float)
    # ±6: the SH fit of a constant is exact; the rest is the split-sum LUT's sampling (within 2 % here)
    assert (np.abs(patch - srgb(0.5)) <= 6).all(), (patch.mean(axis=0), srgb(0.5))


def test_metal_sphere_in_uniform_sky_brightens_towards_the_rim(exact: Renderer) -> None:
    """Fresnel: a dark metal (F0 = 0.05) reflects more of a uniform sky at grazing angles."""
    exact.set_environment(uniform_environment(1.0), 1.0)  # type: ignore[arg-type]
    exact.add_model(1, sphere(5, Material(base_color=(0.05, 0.05, 0.05, 1.0), metallic=1.0, roughness=0.3)))
    camera = Camera(position=(0.0, 0.0, 2.5))
    exact.set_camera(camera)
    frame = exact.render()[0].astype(float)
    centre = frame[H // 2, W // 2, 0]
    # the silhouette: where the tangent from the eye touches the unit sphere
    touch = np.array([[math.sqrt(2.5**2 - 1) / 2.5, 0.0, 1 / 2.5]])
    radius = project(camera, touch, W, H)[0][0] - W / 2
    rim = frame[H // 2, int(W / 2 + 0.95 * radius), 0]
    assert abs(centre - srgb(0.05)) <= 3, "facing: about F0 of the sky"
    assert rim > centre + 40, (centre, rim)
    exact.set_environment(uniform_environment(1.0), 0.5)  # type: ignore[arg-type]
    halved = exact.render()[0]
    assert halved[H // 2, W // 2, 0] < centre - 10, "intensity scales the environment"
    # the intensity alone (setEnvironment with only `intensity`): the same picture, nothing uploaded again
    exact.set_environment_intensity(1.0)
    assert np.array_equal(exact.render()[0].astype(float), frame)
    exact.set_environment_intensity(0.5)
    assert np.array_equal(exact.render()[0], halved)
    with pytest.raises(ValueError, match="finite number >= 0"):
        exact.set_environment_intensity(-1.0)


def test_mask_cutoff_discards_below_and_is_opaque_above(exact: Renderer) -> None:
    material = Material(base_color=(1.0, 1.0, 1.0, 0.4), unlit=True, alpha_mode="MASK", alpha_cutoff=0.5)
    exact.add_model(1, model_of(mesh_data(quad()), materials=[material]))
    assert not object_mask(exact.render()[0]).any()
    exact.set_material(1, 0, Material(base_color=(1.0, 1.0, 1.0, 0.6), unlit=True, alpha_mode="MASK"))
    assert (centre_patch(exact.render()[0]) == 255).all(), "kept pixels are opaque"


def test_blend_over_the_background_follows_the_blend_formula(exact: Renderer) -> None:
    """As three.js draws to its canvas: the sRGB-encoded colour blended over the display values."""
    material = Material(base_color=(1.0, 0.2, 0.0, 0.3), unlit=True, alpha_mode="BLEND", double_sided=True)
    exact.add_model(1, model_of(mesh_data(quad()), materials=[material]))
    patch = centre_patch(exact.render()[0]).astype(float)
    expected = 0.3 * srgb([1.0, 0.2, 0.0]) + 0.7 * BG_BYTES
    assert (np.abs(patch - expected) <= 2).all(), (patch[0], expected)


def test_blend_parts_are_drawn_back_to_front(exact: Renderer) -> None:
    """Two BLEND quads of one material in two parts, listed near first: the near one must end on top."""
    material = Material(base_color=(1.0, 1.0, 1.0, 0.5), unlit=True, alpha_mode="BLEND", double_sided=True)
    near, far = mesh_data(quad(z=1.0), color=(1, 0, 0, 1), node=1), mesh_data(quad(z=0.0), color=(0, 0, 1, 1), node=2)
    nodes = [Node("root", -1), Node("near", 0), Node("far", 0)]
    exact.add_model(1, model_of(near, far, materials=[material], nodes=nodes))
    pixel = exact.render()[0][H // 2, W // 2].astype(float)
    blue_then_red = 0.5 * srgb([1, 0, 0]) + 0.5 * (0.5 * srgb([0, 0, 1]) + 0.5 * BG_BYTES)
    assert (np.abs(pixel - blue_then_red) <= 2).all(), (pixel, blue_then_red)


def wrap_scene(exact: Renderer, wrap: int) -> Frame:
    """A quad whose u runs 0 → 2 over a texture red on its left half, blue on its right, nearest filtering."""
    image = np.zeros((1, 2, 4), dtype=np.uint8)
    image[0, 0] = (255, 0, 0, 255)
    image[0, 1] = (0, 0, 255, 255)
    sampler = Sampler(wrap_s=wrap, wrap_t=wrap, mag_filter=NEAREST, min_filter=NEAREST)
    material = Material(unlit=True, base_color_texture=TextureRef(0, sampler=sampler))
    uvs = QUAD_UVS * [2.0, 1.0]
    exact.add_model(1, model_of(mesh_data(quad(), uvs=uvs.astype(np.float32)), materials=[material], images=[image]))
    return exact.render()[0]


@pytest.mark.parametrize(
    ("wrap", "at_1_25", "at_1_75"),
    [(REPEAT, "red", "blue"), (MIRRORED_REPEAT, "blue", "red"), (CLAMP_TO_EDGE, "blue", "blue")],
)
def test_wrap_modes(exact: Renderer, wrap: int, at_1_25: str, at_1_75: str) -> None:
    frame = wrap_scene(exact, wrap)
    left, right = project(Camera(), np.array([[-1.0, 0, 0], [1.0, 0, 0]]), W, H)[:, 0]
    colour = {"red": [255, 0, 0], "blue": [0, 0, 255]}
    for u, name in ((1.25, at_1_25), (1.75, at_1_75)):
        x = int(left + (right - left) * u / 2)
        assert (frame[H // 2, x] == colour[name]).all(), (u, frame[H // 2, x], name)


def test_second_uv_set_and_texture_transform(exact: Renderer) -> None:
    """An emissive texture read through TEXCOORD_1, then shifted by half a texture with KHR_texture_transform."""
    image = two_tone((255, 0, 0), (0, 0, 255))  # red top (v < 0.5), blue bottom
    uvs1 = np.array([[0, 0.9], [1, 0.9], [1, 0.6], [0, 0.6]], dtype=np.float32)  # all in the blue half
    black = Material(base_color=(0.0, 0.0, 0.0, 1.0), metallic=0.0, emissive=(1.0, 1.0, 1.0))
    material = Material(**{**black.__dict__, "emissive_texture": TextureRef(0, tex_coord=1)})
    mesh = mesh_data(quad(), uvs=np.zeros((4, 2), np.float32), uvs1=uvs1)
    exact.add_model(1, model_of(mesh, materials=[material], images=[image]))
    assert (centre_patch(exact.render()[0]) == [0, 0, 255]).all(), "texCoord 1 is read"
    shifted = TextureRef(0, tex_coord=1, transform=(1.0, 0.0, 0.0, 0.0, 1.0, -0.5, 0.0, 0.0, 1.0))  # v - 0.5
    exact.set_material(1, 0, Material(**{**black.__dict__, "emissive_texture": shifted}))
    assert (centre_patch(exact.render()[0]) == [255, 0, 0]).all(), "the transform moves the lookup"


def aces(x: np.ndarray, exposure: float = 1.0) -> np.ndarray:
    """three.js's ACESFilmicToneMapping, written out in numpy."""
    m_in = np.array([[0.59719, 0.35458, 0.04823], [0.07600, 0.90834, 0.01566], [0.02840, 0.13383, 0.83777]])
    m_out = np.array([[1.60475, -0.53108, -0.07367], [-0.10208, 1.10813, -0.00605], [-0.00327, -0.07276, 1.07602]])
    v = m_in @ (x * exposure / 0.6)
    v = (v * (v + 0.0245786) - 0.000090537) / (v * (0.983729 * v + 0.4329510) + 0.238081)
    return np.clip(m_out @ v, 0.0, 1.0)


def neutral(x: np.ndarray, exposure: float = 1.0) -> np.ndarray:
    """three.js's NeutralToneMapping (Khronos PBR Neutral), written out in numpy."""
    c = x * exposure
    low = c.min()
    c = c - (low - 6.25 * low * low if low < 0.08 else 0.04)
    peak = c.max()
    start = 0.76
    if peak < start:
        return c
    d = 1 - start
    new_peak = 1 - d * d / (peak + d - start)
    c = c * new_peak / peak
    g = 1 - 1 / (0.15 * (peak - new_peak) + 1)
    return np.asarray(c * (1 - g) + new_peak * g)


@pytest.mark.parametrize("tone", ["aces", "neutral"])
@pytest.mark.parametrize("colour", [(0.05, 0.2, 0.6), (0.9, 0.5, 0.1), (3.0, 2.0, 1.0)])
def test_tone_mapping_matches_the_formulas(exact: Renderer, tone: str, colour: tuple[float, float, float]) -> None:
    # emissive on black, with no light: the colour reaching the output stage is exactly `colour`, above 1 too
    black = Material(base_color=(0.0, 0.0, 0.0, 1.0), metallic=0.0, emissive=colour)
    exact.add_model(1, model_of(mesh_data(quad()), materials=[black]))
    exact.set_output(1.3, tone)
    patch = centre_patch(exact.render()[0]).astype(float)
    mapped = (aces if tone == "aces" else neutral)(np.asarray(colour), 1.3)
    assert (np.abs(patch - srgb(mapped)) <= 1).all(), (patch[0], srgb(mapped))


def test_exposure_without_tone_mapping_scales(exact: Renderer) -> None:
    exact.add_model(1, model_of(mesh_data(quad()), materials=[Material(base_color=(0.2, 0.1, 0.05, 1), unlit=True)]))
    exact.set_output(2.0, "none")
    assert (np.abs(centre_patch(exact.render()[0]) - srgb([0.4, 0.2, 0.1])) <= 1).all()


# -- parts (nodes) ---------------------------------------------------------------------------------------------


def two_part_model() -> ModelData:
    nodes = [Node("root", -1), Node("left", 0), Node("right", 0)]
    boxes = [trimesh.creation.box(extents=(1.0, 1.0, 1.0)) for _ in range(2)]
    boxes[0].apply_translation((-1.0, 0.0, 0.0))
    boxes[1].apply_translation((1.0, 0.0, 0.0))
    left, right = mesh_data(boxes[0], node=1), mesh_data(boxes[1], node=2)
    return model_of(left, right, materials=[grey()], nodes=nodes)


def test_node_delta_moves_exactly_that_parts_pixels(exact: Renderer) -> None:
    exact.set_lights([Light("directional", intensity=2.0)])
    model = two_part_model()
    exact.add_model(1, model)
    delta = np.identity(4)
    delta[:3, 3] = (0.0, 0.6, 0.0)
    exact.set_node_matrices(1, [2], delta[None])
    moved = exact.render()[0]
    # the same picture from geometry moved in the rest pose
    model.meshes[1].positions = model.meshes[1].positions + np.array([0.0, 0.6, 0.0], dtype=np.float32)
    exact.add_model(2, model)
    exact.remove(1)
    expected = exact.render()[0]
    assert object_mask(moved).sum() > 1000
    assert np.abs(moved.astype(int) - expected.astype(int)).max() <= 1


def test_hidden_node_removes_exactly_its_pixels(exact: Renderer) -> None:
    exact.set_lights([Light("directional", intensity=2.0)])
    model = two_part_model()
    exact.add_model(1, model)
    state = np.zeros((1, 7), dtype=np.float32)
    state[0, 0] = 1.0
    exact.set_node_states(1, [1], state)
    frame, stats = exact.render()
    assert stats.triangles_drawn == 12
    only_right = model_of(model.meshes[1], materials=[grey()], nodes=model.nodes)
    exact.remove(1)
    exact.add_model(2, only_right)
    assert np.array_equal(frame, exact.render()[0])


def test_node_tint_see_through_and_selection_touch_only_their_part(exact: Renderer) -> None:
    exact.set_lights([Light("directional", intensity=2.0)])
    exact.add_model(1, two_part_model())
    plain = exact.render()[0].astype(int)
    # the left box spans x in [-1.5, -0.5]: wholly in the left half of the frame, the right box in the right half
    assert project(Camera(), np.array([[-0.5, 0.5, 0.5]]), W, H)[0][0] < W // 2
    for row in (
        np.array([[0, 0, 0, 1, 0, 0, 1]]),
        np.array([[0, 1, 0, 0, 0, 0, 0]]),
        np.array([[0, 0, 1, 0, 0, 0, 0]]),
    ):
        exact.set_node_states(1, [2], row)
        frame = exact.render()[0].astype(int)
        assert (frame[:, : W // 2] == plain[:, : W // 2]).all(), f"the left part is untouched by {row}"
        assert (frame[:, W // 2 :] != plain[:, W // 2 :]).any(), f"the right part changes by {row}"
        exact.set_node_states(1, [2], np.zeros((1, 7)))
    assert (exact.render()[0] == plain).all()


# -- anti-aliasing ---------------------------------------------------------------------------------------------


def edge_steps(frame: Frame) -> int:
    """Pixels between the white quad and the black background: 0 on a hard staircase."""
    values = frame[..., 0].astype(int)
    return int(((values > 20) & (values < 235)).sum())


@pytest.mark.parametrize("mode", ["msaa", "fxaa"])
def test_antialiasing_softens_the_staircase(exact: Renderer, mode: str) -> None:
    tilted = quad(1.2)
    spin = np.identity(4)
    spin[:2, :2] = [[math.cos(0.3), -math.sin(0.3)], [math.sin(0.3), math.cos(0.3)]]
    tilted.apply_transform(spin)
    exact.background = (0.0, 0.0, 0.0)
    exact.add_model(1, model_of(mesh_data(tilted), materials=[Material(unlit=True, double_sided=True)]))
    hard = edge_steps(exact.render()[0])
    exact.set_antialiasing(mode)
    soft = edge_steps(exact.render()[0])
    # the quad's outline is about 4 × 2.4 units ≈ 450 px long at this distance: most edge pixels blend
    assert hard < 20 and soft > 200, (hard, soft)


def test_frame_rate_at_720p_100k_triangles(capsys: pytest.CaptureFixture[str]) -> None:
    """Not an assertion: prints the figure (bench/frame_time.py measures it against the old shading)."""
    a, b = trimesh.creation.icosphere(subdivisions=6), trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    b.apply_translation((1.5, 0, 0))
    model = model_of(mesh_data(a), mesh_data(b), materials=[grey()])
    with Renderer(1280, 720) as r:
        r.add_model(1, model)
        for _ in range(3):
            r.render()
        frames = 20
        start = time.perf_counter()
        for _ in range(frames):
            _, stats = r.render()
        fps = frames / (time.perf_counter() - start)
        with capsys.disabled():
            print(f"\n{r.gl_renderer} ({r.antialiasing}): {stats.triangles_drawn} triangles at 1280x720: {fps:.1f} fps")
    assert stats.triangles_drawn == 102400


def test_normal_map_with_tangents_and_with_the_derivative_frame_agree(exact: Renderer) -> None:
    """A normal map tilting the surface towards +x (and towards the image's top, glTF's +y) under a light from the
    upper right: with the file's tangents (+x, w = +1 on this quad) and with the shader's derivative frame (no
    tangents), the same picture, brighter than the flat quad."""
    tilt = np.zeros((4, 4, 4), dtype=np.uint8)
    tilt[..., :3] = np.round((np.array([0.4, 0.4, 0.825]) * 0.5 + 0.5) * 255)
    tilt[..., 3] = 255
    material = Material(base_color=(1.0, 1.0, 1.0, 1.0), metallic=0.0, roughness=1.0, normal_texture=TextureRef(0))
    light = Light("directional", intensity=2.0, direction=(-0.5, -0.5, -0.7))
    exact.set_lights([light])
    flat = model_of(mesh_data(quad(2.0), uvs=QUAD_UVS), materials=[dataclasses.replace(material, normal_texture=None)])
    exact.add_model(1, flat)
    plain = centre_patch(exact.render()[0]).astype(float).mean()
    without = model_of(mesh_data(quad(2.0), uvs=QUAD_UVS), materials=[material], images=[tilt])
    exact.add_model(1, without)
    derivative = centre_patch(exact.render()[0]).astype(float)
    with_tangents = model_of(mesh_data(quad(2.0), uvs=QUAD_UVS), materials=[material], images=[tilt])
    with_tangents.meshes[0].tangents = np.tile(np.array([1, 0, 0, 1], dtype=np.float32), (4, 1))
    exact.add_model(1, with_tangents)
    tangent = centre_patch(exact.render()[0]).astype(float)
    assert tangent.mean() > plain + 15, (plain, tangent.mean())
    assert np.abs(tangent - derivative).max() <= 2, (tangent.mean(), derivative.mean())


def test_occlusion_darkens_only_the_environment_light(exact: Renderer) -> None:
    """R = 0 with strength 1 takes away the indirect diffuse light (three.js applies occlusion to IBL only); strength
    0 leaves the picture as it was; a punctual light is not occluded."""
    exact.set_environment(uniform_environment(1.0), 1.0)  # type: ignore[arg-type]
    black_r = np.zeros((4, 4, 4), dtype=np.uint8)
    black_r[..., 3] = 255
    white = Material(base_color=(0.5, 0.5, 0.5, 1.0), metallic=0.0, roughness=1.0)
    exact.add_model(1, model_of(mesh_data(quad(2.0), uvs=QUAD_UVS), materials=[white], images=[black_r]))
    plain = centre_patch(exact.render()[0]).astype(float).mean()
    exact.set_material(1, 0, dataclasses.replace(white, occlusion_texture=TextureRef(0), occlusion_strength=0.0))
    assert abs(centre_patch(exact.render()[0]).astype(float).mean() - plain) <= 1
    exact.set_material(1, 0, dataclasses.replace(white, occlusion_texture=TextureRef(0)))
    occluded = centre_patch(exact.render()[0]).astype(float).mean()
    assert occluded < plain - 60, (plain, occluded)
    exact.set_environment(uniform_environment(1.0), 0.0)  # type: ignore[arg-type]
    exact.set_lights([Light("directional", intensity=2.0, direction=(0.0, 0.0, -1.0))])
    lit_occluded = centre_patch(exact.render()[0]).astype(float).mean()
    exact.set_material(1, 0, white)
    assert abs(centre_patch(exact.render()[0]).astype(float).mean() - lit_occluded) <= 1


def dense_sphere_grid(material: Material) -> ModelData:
    """bench/render_common.py's 100k grid: 20 icospheres of 5120 triangles on a 5 × 4 grid, 0.4 apart."""
    meshes = []
    for i in range(20):
        sphere_mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.16)
        sphere_mesh.apply_translation((-0.8 + 0.4 * (i % 5), 0.0, -0.8 + 0.4 * (i // 5)))
        meshes.append(mesh_data(sphere_mesh))
    return model_of(*meshes, materials=[material])


# Per-vertex light (renderer.PER_PIXEL_BELOW) against per-pixel light on a dense mesh, at the bench's view: its
# triangles cover about 5 px each. On average the two must differ by at most one level of the 8-bit frame (the
# smallest visible step); the worst 0.1 % of pixels lie on silhouettes, where NdotV falls to 0 within one triangle
# and the Fresnel rise there is sampled only at the vertices: at most 16 levels (6 % of full scale) on that
# one-pixel rim.
DENSE_MEAN_LIMIT = 1.0
DENSE_P999_LIMIT = 16.0


def test_dense_mesh_per_vertex_light_matches_per_pixel(capsys: pytest.CaptureFixture[str]) -> None:
    from openrr.render.batches import vertex_curvature

    grid = dense_sphere_grid(grey())
    arrays = [np.concatenate([getattr(m, name) for m in grid.meshes]) for name in ("positions", "normals")]
    offsets = np.cumsum([0] + [len(m.positions) for m in grid.meshes[:-1]])
    indices = np.concatenate([m.indices + o for m, o in zip(grid.meshes, offsets, strict=True)])  # type: ignore[operator]
    _, step = vertex_curvature(arrays[0], arrays[1], indices)
    camera = Camera(position=(0.0, 1.4, 2.0), target=(0.0, 0.0, 0.0), fov_y_deg=60.0)
    light = Light("directional", intensity=2.0, direction=(-0.3, -1.0, -0.5))
    copper = (0.8, 0.5, 0.3, 1.0)
    with Renderer(1280, 720, per_pixel_below=0) as vertex, Renderer(1280, 720, per_pixel_below=10**12) as pixel:
        for r in (vertex, pixel):
            with r.ctx:  # two GL contexts in one process: make this one current
                r.set_antialiasing("none")
                r.set_lights([light])
                r.set_camera(camera)

        def frames(material: Material) -> tuple[np.ndarray, np.ndarray]:
            out = []
            for r in (vertex, pixel):
                with r.ctx:
                    r.add_model(1, dataclasses.replace(grid, materials=[material]))
                    out.append(r.render()[0].astype(np.float64))
            return out[0], out[1]

        for metallic in (0.0, 1.0):
            f0 = max(0.04 + (c - 0.04) * metallic for c in copper[:3])
            # the smoothest roughness the renderer lights per vertex on this mesh (Renderer._vertex_lit)
            smoothest = math.ceil(math.sqrt(2.0 * step * math.sqrt(f0 / 0.04)) * 20.0) / 20.0
            for roughness in (smoothest, 1.0):
                per_vertex, per_pixel = frames(grey(base_color=copper, metallic=metallic, roughness=roughness))
                lit = np.any(per_pixel != BG_BYTES, axis=2)
                difference = np.abs(per_vertex - per_pixel)[lit]
                mean, p999 = float(difference.mean()), float(np.percentile(difference, 99.9))
                with capsys.disabled():
                    print(f"\nmetallic {metallic}, roughness {roughness:.2f}: mean {mean:.3f}, p99.9 {p999:.1f} levels")
                assert difference.max() > 0, "per-vertex path not taken"
                assert mean <= DENSE_MEAN_LIMIT and p999 <= DENSE_P999_LIMIT, (metallic, roughness, mean, p999)
            # A smoother surface than that keeps per-pixel light: both renderers draw the very same frame.
            per_vertex, per_pixel = frames(grey(base_color=copper, metallic=metallic, roughness=smoothest - 0.1))
            assert np.array_equal(per_vertex, per_pixel)
