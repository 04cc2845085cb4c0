"""The entities of one loaded model: every node of its tree (ARR's entity model), with transforms, hierarchical
state overrides, bounds and materials. Plain numpy: the session keeps one per model and tells the renderer what
changed (`set_node_matrices`, `set_node_states`), only for the nodes that changed.

Ids: the model's root is `root_id` (what loadModel answers), node i is `root_id + i`.

Transforms. Node i's model-space world is the product of the locals from the root down; the root's placement
(setTransform, model → world) puts the model in the world. The root entity's own local and world are one and the
same, `placement @ local(root)`: moving the root moves the placement. A moved part is drawn with its delta
`world(now) @ inverse(world(rest))` (model space), the identity for an unmoved one.

Overrides (hidden, seeThrough, selected, tint). Each entity may hold its own value of each, or inherit; the
effective value is the nearest own value up the tree, else the default (off, no tint). Resolved for the whole tree
at once, level by level (nodes come parents first), so a change costs one numpy pass whatever its size.

Bounds are the axis-aligned box of the subtree's parts' rest-pose boxes (each part's own geometry), each box's 8
corners carried by the part's current delta and then into the space asked for: exact for translated and scaled
parts, a box around the rotated box for rotated ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from openrr.model.mesh import ModelData
from openrr.model.raycast import PartPoses
from openrr.model.scene_graph import children, node_bounds, rest_worlds
from openrr.protocol.redaction import display_url

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Space = Literal["local", "world"]
FLAGS = ("hidden", "see_through", "selected")
"""Boolean overrides, in the order of the state columns."""
STATE_COLUMNS = 7
"""What the renderer gets per node (set_node_states): hidden, see_through, selected, tint r, g, b, a."""
INHERIT: Literal["inherit"] = "inherit"
OverrideValue = bool | tuple[float, ...] | Literal["inherit"] | None
"""An override as a command gives it: a value of its own, "inherit" to drop the own value, None to leave it."""


_MUTABLE = ("local", "world", "placement", "flags", "tint", "has_tint", "states")


class EntityRefused(ValueError):
    """A change this model refuses (e.g. moving a part of a static scene graph); the message says why."""


def _levels(parents: npt.NDArray[np.intp]) -> list[npt.NDArray[np.intp]]:
    """Node indices by depth, below the root (parents come before children, so one pass finds each depth)."""
    depth = np.zeros(len(parents), dtype=np.intp)
    for i in range(1, len(parents)):
        depth[i] = depth[parents[i]] + 1
    return [np.flatnonzero(depth == d) for d in range(1, int(depth.max(initial=0)) + 1)]


def _corners(low: F64, high: F64) -> F64:
    """(n, 8, 4) homogeneous corners of n boxes."""
    pick = np.array([[(k >> a) & 1 for a in range(3)] for k in range(8)], dtype=bool)
    xyz = np.where(pick[None], high[:, None, :], low[:, None, :])
    return np.concatenate([xyz, np.ones((*xyz.shape[:2], 1))], axis=2)


class ModelEntities:
    """One loaded model's entities (see the module docstring)."""

    def __init__(self, root_id: int, source: str, model: ModelData) -> None:
        self.root_id = root_id
        self.source = source
        self.model = model
        self.nodes = model.tree()
        count = len(self.nodes)
        self.parents = np.array([n.parent for n in self.nodes], dtype=np.intp)
        self.children = children(self.nodes)
        self._levels = _levels(self.parents)
        self.rest_local = np.stack([np.asarray(n.local, dtype=np.float64).reshape(4, 4) for n in self.nodes])
        self.local = self.rest_local.copy()
        self.rest_world = rest_worlds(self.nodes)
        self._rest_inverse = np.linalg.inv(self.rest_world)
        self.world = self.rest_world.copy()
        """Model space, now."""
        self.placement = np.identity(4)
        self.moved = False
        """Some part is away from its rest pose."""
        self.flags = np.full((count, len(FLAGS)), -1, dtype=np.int8)
        """Own boolean overrides: -1 inherit, 0 off, 1 on."""
        self.tint = np.zeros((count, 4), dtype=np.float32)
        self.has_tint = np.zeros(count, dtype=bool)
        self.states = np.zeros((count, STATE_COLUMNS), dtype=np.float32)
        """Effective overrides, as the renderer last got them."""
        self.materials = list(model.materials)
        self._own_low, self._own_high, self._has_geometry = node_bounds(model)
        self._node_materials: list[list[int]] = [[] for _ in range(count)]
        for mesh in model.meshes:
            if mesh.material not in self._node_materials[mesh.node]:
                self._node_materials[mesh.node].append(mesh.material)
        self._poses: PartPoses | None = None
        self._poses_current = True

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a command may change (transforms, overrides), to put back with `restore` if the renderer
        refuses what was sent to it."""
        return (*(getattr(self, name).copy() for name in _MUTABLE), self.moved)

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        for name, value in zip(_MUTABLE, snapshot, strict=False):
            setattr(self, name, value)
        self.moved = snapshot[-1]
        self._poses_current = False

    # --- ids and the tree -------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self.nodes)

    def contains(self, entity_id: int) -> bool:
        return self.root_id <= entity_id < self.root_id + self.count

    def node(self, entity_id: int) -> int:
        return entity_id - self.root_id

    def path(self, node: int) -> list[str]:
        names = []
        while node >= 0:
            names.append(self.nodes[node].name)
            node = int(self.parents[node])
        return names[::-1]

    def subtree(self, node: int) -> npt.NDArray[np.intp]:
        """`node` and all its descendants, parents first."""
        inside = np.zeros(self.count, dtype=bool)
        inside[node] = True
        for level in self._levels:
            inside[level] |= inside[self.parents[level]]
        return np.flatnonzero(inside)

    # --- transforms ---------------------------------------------------------------------------------------

    def local_of(self, node: int) -> F64:
        local: F64 = self.placement @ self.world[0] if node == 0 else self.local[node]
        return local

    def world_of(self, node: int) -> F64:
        world: F64 = self.placement @ self.world[node]
        return world

    def set_placement(self, matrix: F64) -> None:
        self.placement = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
        self._poses_current = False

    def move(self, node: int, local: F64 | None = None, world: F64 | None = None) -> tuple[list[int], F64]:
        """Give entity `node` a new local or world transform. Returns the nodes whose delta changed and their deltas
        (nothing for the root, whose move is the placement's). Raises EntityRefused (static or flat scene graph,
        a singular parent)."""
        if node == 0:
            target = local if local is not None else world
            assert target is not None
            self.set_placement(target @ np.linalg.inv(self.world[0]))
            return [], np.zeros((0, 4, 4))
        if self.model.scene_graph_mode != "dynamic":
            raise EntityRefused(
                f"'{self.nodes[node].name}' cannot move: this model was converted with sceneGraphMode "
                f"'{self.model.scene_graph_mode}', which fixes its parts' transforms (only the root moves, with "
                "setTransform or setEntityTransform on the root); convert it with sceneGraphMode 'dynamic' to move "
                "parts"
            )
        if local is None:
            assert world is not None
            try:
                local = np.linalg.inv(self.placement @ self.world[self.parents[node]]) @ world
            except np.linalg.LinAlgError:
                raise EntityRefused("the parent's world transform is singular (a zero scale)") from None
        self.local[node] = local
        sub = self.subtree(node)
        world_now = self.world.copy()
        world_now[node] = world_now[self.parents[node]] @ local
        for level in self._levels:
            below = level[np.isin(level, sub[1:])]
            world_now[below] = world_now[self.parents[below]] @ self.local[below]
        self.world = world_now
        deltas = self.world[sub] @ self._rest_inverse[sub]
        self.moved = self.moved or not np.allclose(deltas, np.identity(4), atol=1e-12, rtol=0)
        self._poses_current = False
        return [int(n) for n in sub], deltas

    def deltas(self) -> F64:
        return self.world @ self._rest_inverse

    # --- overrides -----------------------------------------------------------------------------------------

    def set_overrides(self, node: int, values: dict[str, OverrideValue]) -> tuple[list[int], F32]:
        """Set (or, with "inherit", drop) `node`'s own overrides; returns the nodes whose effective state changed
        and their new states (rows of STATE_COLUMNS)."""
        for name, value in values.items():
            if value is None:
                continue
            if name == "tint":
                self.has_tint[node] = value != INHERIT
                if value != INHERIT:
                    assert isinstance(value, tuple)
                    self.tint[node] = value
            else:
                self.flags[node, FLAGS.index(name)] = -1 if value == INHERIT else int(bool(value))
        new = self.resolve()
        changed = np.flatnonzero(np.any(new != self.states, axis=1))
        self.states = new
        self._poses_current = False
        return [int(n) for n in changed], new[changed]

    def resolve(self) -> F32:
        """Effective states of every node: own value, else the nearest ancestor's, else the default."""
        flags = np.where(self.flags >= 0, self.flags, 0).astype(np.int8)
        tint = np.where(self.has_tint[:, None], self.tint, 0.0).astype(np.float32)
        for level in self._levels:
            parent = self.parents[level]
            flags[level] = np.where(self.flags[level] >= 0, self.flags[level], flags[parent])
            tint[level] = np.where(self.has_tint[level, None], self.tint[level], tint[parent])
        return np.concatenate([flags.astype(np.float32), tint], axis=1)

    def hidden(self) -> npt.NDArray[np.bool_]:
        shown: npt.NDArray[np.bool_] = self.states[:, 0] > 0.5
        return shown

    def own_overrides(self, node: int) -> dict[str, Any]:
        doc: dict[str, Any] = {
            _camel(name): bool(self.flags[node, k]) for k, name in enumerate(FLAGS) if self.flags[node, k] >= 0
        }
        if self.has_tint[node]:
            doc["tint"] = [float(x) for x in self.tint[node]]
        return doc

    def effective_overrides(self, node: int) -> dict[str, Any]:
        row = self.states[node]
        return {**{_camel(name): bool(row[k] > 0.5) for k, name in enumerate(FLAGS)}, "tint": row[3:].tolist()}

    def poses(self) -> PartPoses | None:
        """What a ray cast needs to know of this model's parts; None when all are shown and at rest."""
        if not self._poses_current:
            hidden = self.hidden()
            if not self.moved and not hidden[1:].any():
                self._poses = None
            else:
                self._poses = PartPoses(hidden, self.deltas() if self.moved else None)
            self._poses_current = True
        return self._poses

    # --- bounds ---------------------------------------------------------------------------------------------

    def bounds(self, node: int, space: Space, visible_only: bool = False) -> tuple[F64, F64] | None:
        """The subtree's box (see the module docstring) in the entity's own frame or the world; None: no geometry."""
        parts = self.subtree(node)
        keep = self._has_geometry[parts]
        if visible_only:
            keep &= ~self.hidden()[parts]
        parts = parts[keep]
        if not len(parts):
            return None
        corners = _corners(self._own_low[parts], self._own_high[parts])  # (n, 8, 4) rest model space
        to_space = self.placement if space == "world" else np.linalg.inv(self.world[node])
        moved = to_space @ self.deltas()[parts] if self.moved else np.broadcast_to(to_space, (len(parts), 4, 4))
        placed = np.einsum("nij,nkj->nki", moved, corners)[..., :3]
        return placed.reshape(-1, 3).min(axis=0), placed.reshape(-1, 3).max(axis=0)

    # --- materials ------------------------------------------------------------------------------------------

    def node_materials(self, node: int) -> list[int]:
        return list(self._node_materials[node])

    def material_doc(self, index: int) -> dict[str, Any]:
        m = self.materials[index]
        return {
            "index": index,
            "name": m.name,
            "baseColor": list(m.base_color),
            "metallic": m.metallic,
            "roughness": m.roughness,
            "emissive": list(m.emissive),
            "emissiveStrength": m.emissive_strength,
            "alphaMode": m.alpha_mode,
            "alphaCutoff": m.alpha_cutoff,
            "doubleSided": m.double_sided,
            "unlit": m.unlit,
            "textures": {
                "baseColor": m.base_color_texture is not None,
                "metallicRoughness": m.metallic_roughness_texture is not None,
                "normal": m.normal_texture is not None,
                "occlusion": m.occlusion_texture is not None,
                "emissive": m.emissive_texture is not None,
            },
        }

    # --- documents -------------------------------------------------------------------------------------------

    def entity_doc(self, node: int) -> dict[str, Any]:
        parent = int(self.parents[node])
        return {
            "entityId": self.root_id + node,
            "name": self.nodes[node].name,
            "parentId": None if parent < 0 else self.root_id + parent,
            "path": self.path(node),
            "childCount": len(self.children[node]),
            "local": _numbers(self.local_of(node)),
            "world": _numbers(self.world_of(node)),
            "overrides": self.own_overrides(node),
            "effective": self.effective_overrides(node),
            "materials": self.node_materials(node),
            "modelEntityId": self.root_id,
        }

    def child_doc(self, node: int) -> dict[str, Any]:
        return {
            "entityId": self.root_id + node,
            "name": self.nodes[node].name,
            "childCount": len(self.children[node]),
            "overrides": self.own_overrides(node),  # a tree view shows its checkboxes without a getEntity per row
        }

    def describe(self) -> dict[str, Any]:
        """The model, as loadModel answers it and getScene lists it."""
        m = self.model
        effective = self.effective_overrides(0)
        return {
            "entityId": self.root_id,
            "name": m.name,
            "source": display_url(self.source),  # never a SAS token or user:password@
            "bounds": {"min": m.bounds_min.tolist(), "max": m.bounds_max.tolist()},
            "triangles": m.triangles,
            "points": m.points,
            "meshes": len(m.meshes),
            "entities": self.count,
            "childCount": len(self.children[0]),
            "sceneGraphMode": m.scene_graph_mode,
            "transform": _numbers(self.placement),
            "hidden": effective["hidden"],
            "tint": effective["tint"],
            "seeThrough": effective["seeThrough"],
            "selected": effective["selected"],
        }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _numbers(matrix: F64) -> list[float]:
    return [float(x) for x in np.asarray(matrix).reshape(-1)]


def replaced_material(entities: ModelEntities, index: int, changes: dict[str, Any]) -> Any:
    """The material `index` with `changes` (Material field names) applied; ValueError says what is wrong."""
    if not 0 <= index < len(entities.materials):
        raise EntityRefused(
            f"material {index} does not exist: this model has {len(entities.materials)} (indices 0 to "
            f"{len(entities.materials) - 1})"
        )
    return dataclasses.replace(entities.materials[index], **changes)
