"""A model's node tree as arrays: children, rest-pose worlds, per-node and per-subtree bounds, and the conversion's
sceneGraphMode.

Models can have 10,000s of parts, so nothing here loops over nodes in Python: worlds and subtree bounds are
computed by pointer jumping (log2 of the tree's depth batched steps, each over every node at once), which also
copes with a chain of 10,000 nested nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from openrr.model.mesh import SCENE_GRAPH_MODES, Float64Array, MeshData, ModelData, Node, SceneGraphMode

BoolArray = npt.NDArray[np.bool_]
Bounds = tuple[Float64Array, Float64Array, BoolArray]


def children(nodes: Sequence[Node]) -> list[list[int]]:
    """Each node's children, in node order."""
    out: list[list[int]] = [[] for _ in nodes]
    for index, node in enumerate(nodes):
        if node.parent >= 0:
            out[node.parent].append(index)
    return out


def _parents(nodes: Sequence[Node]) -> npt.NDArray[np.intp]:
    return np.fromiter((n.parent for n in nodes), dtype=np.intp, count=len(nodes))


def rest_worlds(nodes: Sequence[Node]) -> Float64Array:
    """(K, 4, 4) model-space world matrix of each node at rest: the product of the locals from the root down."""
    if not nodes:
        return np.zeros((0, 4, 4))
    # partial[i] = product of the locals from (excluding) up[i] down to i; doubling the jump each step
    partial = np.array([n.local for n in nodes], dtype=np.float64)
    up = _parents(nodes)
    pending = up >= 0
    while pending.any():
        targets = np.flatnonzero(pending)
        above = up[targets]
        partial[targets] = partial[above] @ partial[targets]
        up[targets] = up[above]
        pending[targets] = up[targets] >= 0
    return partial


def node_bounds(model: ModelData) -> Bounds:
    """Per node, its own geometry's (K, 3) min and max in rest model space and (K,) whether it has any."""
    count = len(model.tree())
    low = np.full((count, 3), np.inf)
    high = np.full((count, 3), -np.inf)
    meshes = [m for m in model.meshes if len(m.positions)]
    if meshes:
        owners = np.fromiter((m.node for m in meshes), dtype=np.intp, count=len(meshes))
        # one pass over all positions instead of two reductions per mesh (10,000 small meshes: 2 ms, not 80)
        starts = np.cumsum([0] + [len(m.positions) for m in meshes[:-1]])
        every = np.concatenate([m.positions for m in meshes])
        lows = np.minimum.reduceat(every, starts, axis=0).astype(np.float64)
        highs = np.maximum.reduceat(every, starts, axis=0).astype(np.float64)
        np.minimum.at(low, owners, lows)
        np.maximum.at(high, owners, highs)
    return low, high, np.isfinite(low[:, 0])


def subtree_bounds(model: ModelData) -> Bounds:
    """Per node, the bounds of its subtree (its own geometry and every descendant's), as `node_bounds`."""
    low, high, _ = node_bounds(model)
    up = _parents(model.tree())
    # after step k, each node holds the bounds of its descendants less than 2**k levels down: every node pushes
    # what it holds to the ancestor 2**k above it (min/max are idempotent, so overlaps do no harm)
    while (up >= 0).any():
        sources = np.flatnonzero(up >= 0)
        targets = up[sources]
        pushed_low, pushed_high = low[sources], high[sources]
        np.minimum.at(low, targets, pushed_low)
        np.maximum.at(high, targets, pushed_high)
        up[sources] = up[targets]
    return low, high, np.isfinite(low[:, 0])


def _on_root(mesh: MeshData) -> MeshData:
    """A shallow copy with node 0, made without __init__: dataclasses.replace or copy.copy cost 3-10x more."""
    moved: MeshData = object.__new__(MeshData)
    moved.__dict__.update(mesh.__dict__)
    moved.node = 0
    return moved


def apply_scene_graph_mode(model: ModelData, mode: SceneGraphMode) -> ModelData:
    """The model as the conversion's sceneGraphMode has it: "none" flattens it to its root node holding every mesh
    (positions are in rest model space already, so nothing moves; a stored collision structure's per-triangle nodes
    go too); "static" and "dynamic" keep the tree."""
    if mode not in SCENE_GRAPH_MODES:
        raise ValueError(f"unknown sceneGraphMode '{mode}': expected one of {', '.join(SCENE_GRAPH_MODES)}")
    if mode != "none":
        return replace(model, scene_graph_mode=mode)
    root = model.tree()[0]
    flat_root = Node(root.name, -1, np.array(root.local, dtype=np.float64), dict(root.metadata))
    meshes = [m if m.node == 0 else _on_root(m) for m in model.meshes]
    collision = model.collision
    if collision is not None and collision.nodes is not None:
        collision = replace(collision, nodes=None)
    return replace(model, nodes=[flat_root], meshes=meshes, collision=collision, scene_graph_mode="none")
