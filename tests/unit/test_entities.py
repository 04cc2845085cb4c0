"""A model's entities without a render server (render/entities.py) and ray casts against moved and hidden parts
(model/raycast.py), on an assembly built here by hand: root → A (A1, A2), B (B1), unit boxes at known places."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pytest
import trimesh

from openrr.model.mesh import MeshData, ModelData, Node
from openrr.model.raycast import RayCaster, triangle_chunks
from openrr.render.entities import INHERIT, EntityRefused, ModelEntities, Space

ROOT_ID = 10
PARTS = {"A1": (-3.0, 0.0, 0.0), "A2": (-1.5, 0.0, 0.0), "B1": (2.0, 0.0, 0.0)}
"""Rest-pose centre of each leaf's unit box."""


def translation(x: float, y: float, z: float) -> npt.NDArray[np.float64]:
    m = np.identity(4)
    m[:3, 3] = (x, y, z)
    return m


def assembly(mode: str = "dynamic") -> ModelData:
    # A sits at x = -2 and B at x = +2 (their locals); leaves are placed relative to them.
    nodes = [
        Node("asm.glb", -1),
        Node("A", 0, translation(-2, 0, 0)),
        Node("A1", 1, translation(-1, 0, 0), {"partNumber": "A-1"}),
        Node("A2", 1, translation(0.5, 0, 0)),
        Node("B", 0, translation(2, 0, 0)),
        Node("B1", 4, translation(0, 0, 0)),
    ]
    box = trimesh.creation.box()
    meshes = []
    for node, name in ((2, "A1"), (3, "A2"), (5, "B1")):
        positions = (box.vertices + PARTS[name]).astype(np.float32)
        meshes.append(
            MeshData(
                positions=positions,
                normals=np.zeros_like(positions),
                colors=np.ones((len(positions), 4), np.float32),
                indices=box.faces.astype(np.uint32),
                node=node,
            )
        )
    low = np.min([m.positions.min(axis=0) for m in meshes], axis=0)
    high = np.max([m.positions.max(axis=0) for m in meshes], axis=0)
    return ModelData("asm.glb", meshes, low, high, 36, 0, nodes=nodes, scene_graph_mode=mode)  # type: ignore[arg-type]


def box(e: ModelEntities, node: int, space: Space) -> list[float]:
    found = e.bounds(node, space)
    assert found is not None
    return [*found[0].tolist(), *found[1].tolist()]


def test_ids_paths_and_children() -> None:
    e = ModelEntities(ROOT_ID, "asm.glb", assembly())
    assert e.count == 6 and e.contains(15) and not e.contains(16)
    assert e.path(e.node(12)) == ["asm.glb", "A", "A1"]
    doc = e.entity_doc(2)
    assert doc["entityId"] == 12 and doc["parentId"] == 11 and doc["modelEntityId"] == ROOT_ID
    assert doc["world"] == pytest.approx(translation(-3, 0, 0).reshape(-1).tolist())
    assert [e.child_doc(k)["name"] for k in e.children[0]] == ["A", "B"]
    assert e.nodes[2].metadata == {"partNumber": "A-1"}


def test_overrides_are_hierarchical_and_a_childs_own_value_wins() -> None:
    e = ModelEntities(ROOT_ID, "asm.glb", assembly())
    nodes, rows = e.set_overrides(1, {"hidden": True, "tint": (1.0, 0.0, 0.0, 1.0)})
    assert nodes == [1, 2, 3], "A and its subtree change, nothing else"
    assert rows[:, 0].tolist() == [1, 1, 1] and rows[:, 3:].tolist() == [[1, 0, 0, 1]] * 3
    nodes, rows = e.set_overrides(3, {"hidden": False, "tint": (0.0, 0.0, 1.0, 0.5)})
    assert nodes == [3], "only A2's own values changed"
    assert e.hidden().tolist() == [False, True, True, False, False, False]
    assert e.effective_overrides(3)["tint"] == [0, 0, 1, 0.5]
    assert e.own_overrides(3) == {"hidden": False, "tint": [0, 0, 1, 0.5]}
    # the root's tint reaches B's subtree but not A's, whose own tint is nearer
    nodes, _ = e.set_overrides(0, {"tint": (0.0, 1.0, 0.0, 1.0)})
    assert nodes == [0, 4, 5]
    nodes, _ = e.set_overrides(1, {"tint": INHERIT})
    assert nodes == [1, 2], "A and A1 now inherit the root's; A2 keeps its own"
    assert e.effective_overrides(2)["tint"] == [0, 1, 0, 1]
    nodes, _ = e.set_overrides(1, {"hidden": INHERIT})
    assert nodes == [1, 2] and not e.hidden().any()


def test_moving_a_sub_assembly_moves_its_subtree_and_its_bounds() -> None:
    e = ModelEntities(ROOT_ID, "asm.glb", assembly())
    assert box(e, 1, "world") == pytest.approx([-3.5, -0.5, -0.5, -1.0, 0.5, 0.5])
    assert box(e, 1, "local") == pytest.approx([-1.5, -0.5, -0.5, 1.0, 0.5, 0.5])
    nodes, deltas = e.move(1, local=translation(-2, 3, 0))
    assert nodes == [1, 2, 3]
    assert deltas == pytest.approx(np.stack([translation(0, 3, 0)] * 3))
    assert e.entity_doc(2)["world"] == pytest.approx(translation(-3, 3, 0).reshape(-1).tolist())
    assert box(e, 1, "world")[:3] == pytest.approx([-3.5, 2.5, -0.5])
    assert box(e, 0, "world") == pytest.approx([-3.5, -0.5, -0.5, 2.5, 3.5, 0.5])
    e.set_placement(translation(0, 0, 10))  # the model's placement carries everything
    assert box(e, 5, "world") == pytest.approx([1.5, -0.5, 9.5, 2.5, 0.5, 10.5])
    nodes, _ = e.move(2, world=translation(0, 0, 0))  # world is placement @ model space
    assert e.entity_doc(2)["world"] == pytest.approx(translation(0, 0, 0).reshape(-1).tolist())
    assert e.local_of(2) == pytest.approx(translation(2, -3, -10))
    # the root's transform is the placement
    e.move(0, world=translation(1, 0, 0))
    assert e.placement == pytest.approx(translation(1, 0, 0)) and nodes == [2]


@pytest.mark.parametrize("mode", ["static", "none"])
def test_a_static_scene_graph_refuses_to_move_parts_and_says_why(mode: str) -> None:
    e = ModelEntities(ROOT_ID, "asm.glb", assembly(mode))
    with pytest.raises(EntityRefused, match=f"sceneGraphMode '{mode}'.*'dynamic'"):
        e.move(1, local=translation(0, 0, 0))
    e.move(0, local=translation(0, 1, 0))  # the root may always be placed
    assert e.placement == pytest.approx(translation(0, 1, 0))


def test_snapshot_restores_a_refused_change() -> None:
    e = ModelEntities(ROOT_ID, "asm.glb", assembly())
    before = e.snapshot()
    e.move(1, local=translation(5, 5, 5))
    e.set_overrides(4, {"hidden": True})
    e.restore(before)
    assert not e.hidden().any() and e.deltas() == pytest.approx(np.stack([np.identity(4)] * 6))
    assert e.poses() is None


def test_ray_casts_name_the_part_skip_hidden_parts_and_follow_moved_ones() -> None:
    model = assembly()
    e = ModelEntities(ROOT_ID, "asm.glb", model)
    caster = RayCaster()
    caster.add(ROOT_ID, model)
    place = {ROOT_ID: e.placement}

    def cast(origin: tuple[float, float, float]) -> tuple[int, float] | None:
        poses = e.poses()
        hit = caster.cast(origin, (0, 0, -1), place, parts={ROOT_ID: poses} if poses is not None else None)
        return None if hit is None else (hit.node, round(hit.distance, 6))

    assert cast((-1.5, 0, 5)) == (3, 4.5)
    assert cast((-3, 0, 5)) == (2, 4.5)
    e.set_overrides(1, {"hidden": True})
    assert cast((-1.5, 0, 5)) is None, "A's subtree is hidden"
    e.set_overrides(3, {"hidden": False})
    assert cast((-1.5, 0, 5)) == (3, 4.5), "A2's own 'shown' wins"
    e.set_overrides(1, {"hidden": INHERIT})
    e.move(1, local=translation(-2, 3, 1))  # A up by 3 and towards the ray's origin by 1
    assert cast((-1.5, 0, 5)) is None, "A2 left its rest place"
    assert cast((-1.5, 3, 5)) == (3, 3.5)
    assert cast((-3, 3, 5)) == (2, 3.5)
    e.move(5, local=translation(-2, 3, 0))  # B1 (under B at x = 2) to x = 0, y = 3
    assert cast((0, 3, 5)) == (5, 4.5)
    assert cast((2, 0, 5)) is None


def test_override_resolution_of_a_large_tree_is_one_numpy_pass() -> None:
    """10,000 parts under 100 sub-assemblies: hiding one sub-assembly changes exactly its 101 rows, quickly."""
    nodes = [Node("big", -1)] + [Node(f"S{i}", 0) for i in range(100)]
    nodes += [Node(f"P{i}", 1 + i % 100) for i in range(10_000)]
    model = ModelData("big", [], np.zeros(3, np.float32), np.zeros(3, np.float32), 0, 0, nodes=nodes)
    e = ModelEntities(1, "big", model)
    started = time.perf_counter()
    changed, rows = e.set_overrides(5, {"hidden": True})
    elapsed = time.perf_counter() - started
    assert len(changed) == 101 and rows[:, 0].all()
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms: resolution should be a few numpy passes"  # 2 cores, shared


def test_triangle_chunks_know_each_triangles_node() -> None:
    chunks = triangle_chunks(assembly())
    assert chunks.nodes is not None and chunks.nodes.tolist() == [2] * 12 + [3] * 12 + [5] * 12
    sub = chunks.subset(np.flatnonzero(chunks.nodes == 3))
    assert sub.count == 12 and sub.nodes is not None and set(sub.nodes.tolist()) == {3}
    assert sub.bounds[0] == pytest.approx([-2.0, -0.5, -0.5]) and sub.bounds[1] == pytest.approx([-1.0, 0.5, 0.5])
