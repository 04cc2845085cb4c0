"""model/scene_graph.py: children, rest worlds, per-node and per-subtree bounds, sceneGraphMode, checked against a
plain per-node walk of the same trees."""

from __future__ import annotations

import numpy as np
import pytest

from openrr.model.mesh import MeshData, ModelData, Node
from openrr.model.raycast import triangle_chunks
from openrr.model.scene_graph import apply_scene_graph_mode, children, node_bounds, rest_worlds, subtree_bounds


def random_local(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    local = np.identity(4)
    local[:3, :3] = q * rng.uniform(0.5, 2.0, 3)
    local[:3, 3] = rng.normal(size=3)
    return local


def random_tree(count: int, seed: int, chain: bool = False) -> list[Node]:
    rng = np.random.default_rng(seed)
    parents = [-1] + [i - 1 if chain else int(rng.integers(0, i)) for i in range(1, count)]
    return [Node(f"n{i}", p, random_local(rng)) for i, p in enumerate(parents)]


def walked_worlds(nodes: list[Node]) -> np.ndarray:
    worlds: list[np.ndarray] = []
    for node in nodes:
        worlds.append(node.local if node.parent < 0 else worlds[node.parent] @ node.local)
    return np.array(worlds)


def mesh(positions: list[list[float]], node: int) -> MeshData:
    p = np.array(positions, np.float32)
    n = len(p)
    return MeshData(
        p, np.zeros((n, 3), np.float32), np.ones((n, 4), np.float32), np.array([[0, 1, 2]], np.uint32), node=node
    )


def assembly() -> ModelData:
    """root → body (geometry) → {wheel (geometry), bracket (no geometry) → bolt (geometry)}; root → empty."""
    nodes = [Node("car", -1), Node("body", 0), Node("wheel", 1), Node("bracket", 1), Node("bolt", 3), Node("empty", 0)]
    meshes = [
        mesh([[0, 0, 0], [4, 0, 0], [0, 2, 1]], 1),
        mesh([[-1, -1, 0], [0, -1, 0], [0, 0, 0]], 2),
        mesh([[5, 5, 5], [6, 5, 5], [5, 7, 5]], 4),
        mesh([[5, 4, 5], [5, 5, 8], [5, 5, 5]], 4),  # a node may own several primitives
    ]
    return ModelData("car", meshes, np.zeros(3, np.float32), np.zeros(3, np.float32), 4, 0, nodes=nodes)


def test_children_in_node_order() -> None:
    assert children(assembly().nodes) == [[1, 5], [2, 3], [], [4], [], []]


@pytest.mark.parametrize("chain", [False, True])
def test_rest_worlds_match_a_walk_from_the_root(chain: bool) -> None:
    nodes = random_tree(300, seed=3, chain=chain)
    worlds = rest_worlds(nodes)
    assert worlds.shape == (300, 4, 4) and worlds.dtype == np.float64
    assert worlds == pytest.approx(walked_worlds(nodes), rel=1e-9, abs=1e-9)
    assert rest_worlds([]).shape == (0, 4, 4)


def test_node_bounds_are_each_nodes_own_geometry() -> None:
    low, high, has = node_bounds(assembly())
    assert has.tolist() == [False, True, True, False, True, False]
    assert low[1].tolist() == [0, 0, 0] and high[1].tolist() == [4, 2, 1]
    assert low[4].tolist() == [5, 4, 5] and high[4].tolist() == [6, 7, 8]  # both of bolt's primitives


def test_subtree_bounds_include_every_descendant() -> None:
    low, high, has = subtree_bounds(assembly())
    assert has.tolist() == [True, True, True, True, True, False]
    assert low[0].tolist() == [-1, -1, 0] and high[0].tolist() == [6, 7, 8]
    assert low[1].tolist() == [-1, -1, 0] and high[1].tolist() == [6, 7, 8]
    assert low[3].tolist() == [5, 4, 5] and high[3].tolist() == [6, 7, 8]  # bracket: only its bolt
    assert low[2].tolist() == [-1, -1, 0] and high[2].tolist() == [0, 0, 0]


@pytest.mark.parametrize("chain", [False, True])
def test_subtree_bounds_match_a_walk_on_large_trees(chain: bool) -> None:
    nodes = random_tree(2000, seed=5, chain=chain)
    rng = np.random.default_rng(9)
    meshes = [mesh(rng.normal(size=(3, 3)).tolist(), int(i)) for i in rng.integers(0, 2000, 500)]
    model = ModelData("m", meshes, np.zeros(3, np.float32), np.zeros(3, np.float32), 500, 0, nodes=nodes)
    own_low, own_high, _ = node_bounds(model)
    expected_low, expected_high = own_low.copy(), own_high.copy()
    for i in range(len(nodes) - 1, 0, -1):  # children after parents: fold each node into its parent, last first
        parent = nodes[i].parent
        expected_low[parent] = np.minimum(expected_low[parent], expected_low[i])
        expected_high[parent] = np.maximum(expected_high[parent], expected_high[i])
    low, high, has = subtree_bounds(model)
    assert np.array_equal(low, expected_low) and np.array_equal(high, expected_high)
    assert np.array_equal(has, np.isfinite(expected_low[:, 0]))


def test_mode_none_flattens_to_the_root() -> None:
    model = assembly()
    model.nodes[0].metadata["kind"] = "car"
    model.collision = triangle_chunks(model)
    flat = apply_scene_graph_mode(model, "none")
    assert flat.scene_graph_mode == "none"
    assert [(n.name, n.parent, n.metadata) for n in flat.nodes] == [("car", -1, {"kind": "car"})]
    assert [m.node for m in flat.meshes] == [0, 0, 0, 0]
    for before, after in zip(model.meshes, flat.meshes, strict=True):
        assert after.positions is before.positions and after.material == before.material
    assert flat.collision is not None and flat.collision.nodes is None
    # the input is left as it was
    assert [m.node for m in model.meshes] == [1, 2, 4, 4] and len(model.nodes) == 6
    assert model.collision.nodes is not None


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_static_and_dynamic_keep_the_tree(mode: str) -> None:
    model = assembly()
    kept = apply_scene_graph_mode(model, mode)  # type: ignore[arg-type]
    assert kept.scene_graph_mode == mode and kept.nodes == model.nodes and kept.meshes == model.meshes


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sceneGraphMode 'flat': expected one of none, static, dynamic"):
        apply_scene_graph_mode(assembly(), "flat")  # type: ignore[arg-type]
