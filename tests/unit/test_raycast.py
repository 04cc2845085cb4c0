"""Closest-hit ray casts against models loaded from generated GLB files, placed by model → world matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import trimesh

from openrr.model.mesh import ModelData
from openrr.model.raycast import RayCaster, RayHit
from tests.local_files import load_model

# faceted sphere: the surface sits up to ~1e-3 inside the unit sphere between vertices
FACET = 2e-3


@pytest.fixture(scope="module")
def sphere(tmp_path_factory: pytest.TempPathFactory) -> ModelData:
    path = tmp_path_factory.mktemp("raycast") / "sphere.glb"
    trimesh.creation.icosphere(subdivisions=5).export(path)
    return load_model(str(path))


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> ModelData:
    path = tmp_path_factory.mktemp("raycast") / "box.glb"
    trimesh.creation.box().export(path)
    return load_model(str(path))


def placed(
    translation: tuple[float, float, float], scale: float | tuple[float, float, float] = 1.0
) -> npt.NDArray[np.float64]:
    matrix = np.diag([*np.broadcast_to(scale, 3), 1.0]).astype(np.float64)
    matrix[:3, 3] = translation
    return matrix


def assert_hit(
    hit: RayHit | None,
    entity_id: int,
    position: list[float],
    normal: list[float],
    distance: float,
    normal_abs: float = 0.02,
) -> None:
    assert hit is not None
    assert hit.entity_id == entity_id
    assert hit.distance == pytest.approx(distance, abs=FACET * 2)
    assert hit.position == pytest.approx(position, abs=FACET * 2)
    # the normal is the hit facet's, a little off the smooth sphere's
    assert hit.normal == pytest.approx(normal, abs=normal_abs)
    assert np.linalg.norm(hit.normal) == pytest.approx(1.0, abs=1e-9)


def test_hit_on_a_translated_scaled_sphere(sphere: ModelData) -> None:
    caster = RayCaster()
    caster.add(7, sphere)
    transforms = {7: placed((10, 0, 0), 2)}  # radius 2 around (10, 0, 0)
    hit = caster.cast((10, 0, -10), (0, 0, 1), transforms)
    assert_hit(hit, 7, [10, 0, -2], [0, 0, -1], 8)
    # the direction need not be unit: distances stay in world units
    assert_hit(caster.cast((10, 10, 0), (0, -5, 0), transforms), 7, [10, 2, 0], [0, 1, 0], 8)
    # oblique ray: from (0, 0, 0) to the sphere's near side along +x
    assert_hit(caster.cast((0, 0, 0), (1, 0, 0), transforms), 7, [8, 0, 0], [-1, 0, 0], 8)
    # a ray starting off-axis meets the sphere where |p - c| = 2
    hit = caster.cast((10 + 1.2, 0, -10), (0, 0, 1), transforms)
    assert hit is not None
    expected_z = -np.sqrt(4 - 1.2**2)
    assert hit.position == pytest.approx([11.2, 0, expected_z], abs=FACET * 2)
    assert hit.normal == pytest.approx([0.6, 0, expected_z / 2], abs=0.02)


def test_normal_faces_the_ray_origin_from_inside(sphere: ModelData) -> None:
    caster = RayCaster()
    caster.add(1, sphere)
    hit = caster.cast((10, 0, 0), (0, 1, 0), {1: placed((10, 0, 0), 2)})
    assert_hit(hit, 1, [10, 2, 0], [0, -1, 0], 2)


def test_non_uniform_scale_and_rotation(sphere: ModelData) -> None:
    caster = RayCaster()
    caster.add(1, sphere)
    # an ellipsoid with semi-axes (1, 3, 1), turned 90° about z so that its long axis lies along x
    rotation = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])
    matrix = rotation @ placed((0, 0, 0), (1, 3, 1))
    hit = caster.cast((-10, 0, 0), (1, 0, 0), {1: matrix})
    # stretching 3× tilts a facet's normal up to 3× further off the smooth surface's
    assert_hit(hit, 1, [-3, 0, 0], [-1, 0, 0], 7, normal_abs=0.08)
    hit = caster.cast((0, -10, 0), (0, 1, 0), {1: matrix})
    assert_hit(hit, 1, [0, -1, 0], [0, -1, 0], 9)


def test_miss_returns_none(sphere: ModelData) -> None:
    caster = RayCaster()
    caster.add(1, sphere)
    transforms = {1: placed((10, 0, 0), 2)}
    assert caster.cast((10, 3, -10), (0, 0, 1), transforms) is None  # passes above it
    assert caster.cast((10, 0, -10), (0, 0, -1), transforms) is None  # points away
    assert caster.cast((10, 0, -10), (0, 0, 1), transforms, max_distance=7.9) is None  # stops short
    assert caster.cast((10, 0, -10), (0, 0, 1), transforms, max_distance=8.1) is not None
    assert caster.cast((10, 0, -10), (0, 0, 1), {}) is None  # no transform: not placed, not hit
    assert RayCaster().cast((0, 0, 0), (1, 0, 0), {}) is None


def test_hidden_entity_is_ignored(sphere: ModelData) -> None:
    caster = RayCaster()
    caster.add(1, sphere)
    caster.add(2, sphere)
    transforms = {1: placed((0, 0, 0)), 2: placed((0, 0, 5))}
    assert_hit(caster.cast((0, 0, -10), (0, 0, 1), transforms), 1, [0, 0, -1], [0, 0, -1], 9)
    assert_hit(caster.cast((0, 0, -10), (0, 0, 1), transforms, hidden={1}), 2, [0, 0, 4], [0, 0, -1], 14)
    assert caster.cast((0, 0, -10), (0, 0, 1), transforms, hidden=[1, 2]) is None


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_closest_of_two_entities_wins(sphere: ModelData, box: ModelData, order: tuple[int, int]) -> None:
    caster = RayCaster()
    models = {1: sphere, 2: box}
    for entity_id in order:
        caster.add(entity_id, models[entity_id])
    # the box (half-size 0.5 × 4 = 2) is nearer from +x, the sphere from -x
    transforms = {1: placed((-3, 0, 0)), 2: placed((3, 0, 0), 4)}
    assert_hit(caster.cast((20, 0.1, 0.1), (-1, 0, 0), transforms), 2, [5, 0.1, 0.1], [1, 0, 0], 15)
    assert_hit(caster.cast((-20, 0, 0), (1, 0, 0), transforms), 1, [-4, 0, 0], [-1, 0, 0], 16)


def test_remove_and_replace(sphere: ModelData, box: ModelData) -> None:
    caster = RayCaster()
    caster.add(1, sphere)
    caster.add(2, sphere)  # the same model twice: prepared once, placed twice
    transforms = {1: placed((0, 0, 0)), 2: placed((0, 0, 5))}
    caster.remove(1)
    assert_hit(caster.cast((0, 0, -10), (0, 0, 1), transforms), 2, [0, 0, 4], [0, 0, -1], 14)
    caster.remove(1)  # removing twice is harmless
    caster.add(2, box)  # replaces the sphere
    assert_hit(caster.cast((0, 0, -10), (0, 0, 1), transforms), 2, [0, 0, 4.5], [0, 0, -1], 14.5)
    caster.remove(2)
    assert caster.cast((0, 0, -10), (0, 0, 1), transforms) is None


def test_point_clouds_are_not_hit(tmp_path: Path) -> None:
    path = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).uniform(-1, 1, (500, 3))).export(path)
    caster = RayCaster()
    caster.add(1, load_model(str(path)))
    assert caster.cast((0, 0, -10), (0, 0, 1), {1: placed((0, 0, 0))}) is None


def test_rejects_a_zero_direction(sphere: ModelData) -> None:
    caster = RayCaster()
    caster.add(1, sphere)
    with pytest.raises(ValueError, match="direction"):
        caster.cast((0, 0, 0), (0, 0, 0), {1: placed((0, 0, 0))})


def brute_force(
    models: dict[int, ModelData],
    transforms: dict[int, npt.NDArray[np.float64]],
    origin: npt.NDArray[np.float64],
    direction: npt.NDArray[np.float64],
) -> tuple[float, int | None]:
    """Every triangle, moved to world space, tested in float64: the reference answer."""
    best: tuple[float, int | None] = (np.inf, None)
    for entity_id, model in models.items():
        matrix = transforms[entity_id]
        for mesh in model.meshes:
            assert mesh.indices is not None
            world = mesh.positions.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
            a, b, c = (world[mesh.indices[:, k]] for k in range(3))
            e1, e2 = b - a, c - a
            p = np.cross(direction, e2)
            det = np.einsum("ij,ij->i", e1, p)
            with np.errstate(divide="ignore", invalid="ignore"):
                s = origin - a
                u = np.einsum("ij,ij->i", s, p) / det
                q = np.cross(s, e1)
                v = q @ direction / det
                t = np.einsum("ij,ij->i", e2, q) / det
                t = np.where((u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0), t, np.inf)
            if t.min() < best[0]:
                best = (float(t.min()), entity_id)
    return best


def test_agrees_with_brute_force_on_random_rays(sphere: ModelData, box: ModelData) -> None:
    rng = np.random.default_rng(3)
    models = {1: sphere, 2: box, 3: box}
    transforms: dict[int, npt.NDArray[np.float64]] = {}
    caster = RayCaster()
    for entity_id, model in models.items():
        caster.add(entity_id, model)
        matrix = trimesh.transformations.random_rotation_matrix(rng.random(3))
        matrix[:3, :3] = matrix[:3, :3] @ np.diag(rng.uniform(0.5, 2.0, 3))
        matrix[:3, 3] = rng.uniform(-2, 2, 3)
        transforms[entity_id] = matrix
    transforms[3][:3, 0] *= -1  # a mirroring transform
    hits = 0
    for _ in range(300):
        origin = rng.uniform(-4, 4, 3)
        direction = rng.uniform(-2, 2, 3) - origin  # mostly towards the entities
        direction /= np.linalg.norm(direction)
        expected, entity = brute_force(models, transforms, origin, direction)
        hit = caster.cast(origin, direction, transforms)
        if entity is None:
            assert hit is None
            continue
        hits += 1
        assert hit is not None
        assert hit.entity_id == entity
        assert hit.distance == pytest.approx(expected, abs=1e-6)
        assert hit.position == pytest.approx(origin + expected * direction, abs=1e-6)
        assert np.dot(hit.normal, direction) <= 0
    assert hits > 100
