"""Offscreen rendering of a session's loaded models into RGB frames (moderngl on EGL).

One standalone EGL context per renderer; nothing is ever shown in a window. A model is uploaded once, as one
vertex/index buffer per (material, triangles or points) with each vertex's part (node) index in it
(render/batches.py). Per-part state — the delta matrix of a moved part, hidden, see-through, selected, tint — is a
row of a float texture that the vertex shader reads, so a frame costs a few draws per material whatever the
number of parts, and changing a part rewrites a texture row, not a draw list. Shading is glTF metallic-roughness
as three.js computes it (render/pbr.py), lit by an environment (render/environment.py) and punctual lights
(render/lighting.py), tone-mapped and sRGB-encoded in the fragment shader; dense meshes are lit per vertex with
the same formulas (PER_PIXEL_BELOW).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import moderngl
import numpy as np
import numpy.typing as npt

from openrr.model.mesh import (
    CLAMP_TO_EDGE,
    LINEAR,
    LINEAR_MIPMAP_LINEAR,
    MIRRORED_REPEAT,
    REPEAT,
    ImageData,
    Material,
    ModelData,
    Sampler,
)
from openrr.protocol.render import MAX_CUT_PLANES
from openrr.render import pbr
from openrr.render.batches import BatchArrays, build_batches
from openrr.render.camera import Camera, look_at, perspective
from openrr.render.environment import Environment, brdf_lut, default_environment
from openrr.render.lighting import ANTIALIASING_MODES, MAX_LIGHTS, TONE_MAPPINGS, Light

logger = logging.getLogger(__name__)

SEE_THROUGH_ALPHA = 0.35
POINT_SIZE_PX = 2.5
OUTLINE_PX = 3.0
CHECKER_PX = 32
MSAA_SAMPLES = 4
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")
FRONT_FACES_FIRST_BELOW = 250_000
"""Triangles of a double-sided draw up to which llvmpipe draws front faces before back faces (see _draw_batch):
measured at 1280×720, CPU time per frame, 100k triangles -8 %, 1M triangles +14 % (vertex work doubles)."""
PER_PIXEL_BELOW = 20_000
"""Triangles in a batch from which it is lit per vertex (pbr.py's VERTEX_LIT: the same BRDF, split as albedo × P + Q
so that the base colour texture still applies per pixel), unless its material has a normal, metallic-roughness or
occlusion texture. As the renderer before issue 11 did: on llvmpipe the cost of a frame is the fragment shader's
length, and a dense mesh's triangles cover a few pixels each, where per-vertex and per-pixel light look the same
(tests/unit/test_renderer.py holds them to it); a coarse mesh (a box with shared corner normals) would not."""
GL_CLIP_DISTANCE0 = 0x3000  # moderngl has no flag for it; enabled with enable_direct
GL_SRGB8_ALPHA8 = 0x8C43

# Anti-aliasing when none is asked for, chosen by quality per millisecond (bench/frame_time.py, llvmpipe, 1280×720,
# 100k triangles, PBR + IBL, wall medians): FXAA adds ~20 ms (30 → 52 ms lit per vertex) and cuts the RMS error
# against 9× supersampling from 1.81 to 1.56 levels; 4× MSAA adds ~110 ms for 0.79 levels: FXAA buys more per
# millisecond and keeps the frame rate usable. Of FXAA's ~20 ms a bare full-screen copy pass is ~6; green-as-luma
# gathers, FXAA's "default" edge thresholds (0.166, 0.0833) and dropping the outer pair of taps measured no faster.
# On a GPU 4× MSAA costs little and is the better picture (not measured here: no GPU on this machine).
DEFAULT_ANTIALIASING = {True: "fxaa", False: "msaa"}

_ATTRIBUTE_FORMATS = {
    "positions": ("3f", "in_position"),
    "normals": ("3f", "in_normal"),
    "colors": ("4f2", "in_color"),
    "node": ("1u", "in_node"),
    "uv0": ("2f", "in_uv0"),
    "uv1": ("2f", "in_uv1"),
    "tangents": ("4f", "in_tangent"),
    "curvature": ("1f", "in_curvature"),
}
_IDENTITY4 = np.identity(4)
_ALPHA_CODES = {"OPAQUE": 0, "MASK": 1, "BLEND": 2}
_WRAP_CODES = {REPEAT: 0, CLAMP_TO_EDGE: 1, MIRRORED_REPEAT: 2}
DEFAULT_STATE = np.zeros(7, dtype=np.float32)
"""hidden, see-through, selected, tint r, g, b, a (sRGB display values)."""


@dataclass
class FrameStats:
    render_ms: float
    """Wall time to render and read back this frame (readback waits for the GPU, so GPU time is in it)."""
    triangles_drawn: int
    points_drawn: int


def _gl_matrix(m: npt.ArrayLike) -> bytes:
    """Row-major numpy matrix → the column-major bytes GLSL expects."""
    return np.ascontiguousarray(np.asarray(m).T, dtype=np.float32).tobytes()


def _f32(*values: float) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def _normal_matrix(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = m[:3, :3]
    try:
        return np.asarray(np.linalg.inv(linear).T)
    except np.linalg.LinAlgError:
        return linear  # a flattened (zero-scale) axis has no inverse; its surface is edge-on anyway


class _Shader:
    """One compiled variant, with its uniforms looked up once; uniforms the compiler dropped are ignored."""

    def __init__(self, ctx: moderngl.Context, header: str, vertex: str, fragment: str) -> None:
        self.program = ctx.program(vertex_shader=header + vertex, fragment_shader=header + fragment)
        self.uniforms: dict[str, moderngl.Uniform] = {}
        for name in self.program:
            member = self.program[name]
            if isinstance(member, moderngl.Uniform):
                self.uniforms[name] = member
        self.globals_version = -1

    def set(self, name: str, data: bytes) -> None:
        uniform = self.uniforms.get(name)
        if uniform is not None:
            uniform.write(data)

    def set_array(self, name: str, values: npt.NDArray[Any]) -> None:
        """An array uniform; the compiler may have shortened it to the elements the variant reads."""
        uniform = self.uniforms.get(name)
        if uniform is not None:
            uniform.write(np.ascontiguousarray(values[: uniform.array_length]).tobytes())


@dataclass
class _Batch:
    arrays: BatchArrays
    buffers: list[tuple[moderngl.Buffer, str, str]]
    ibo: moderngl.Buffer | None
    vaos: dict[int, moderngl.VertexArray] = field(default_factory=dict)

    @property
    def mode(self) -> int:
        return moderngl.POINTS if self.ibo is None else moderngl.TRIANGLES


@dataclass
class _Model:
    batches: list[_Batch]
    materials: list[Material]
    images: list[ImageData]
    center: npt.NDArray[np.float64]
    node_texture: moderngl.Texture
    node_texels: npt.NDArray[np.float32]
    """(rows × NODE_ROW, 4): the node texture's contents."""
    deltas: npt.NDArray[np.float64]
    states: npt.NDArray[np.float32]
    node_triangles: npt.NDArray[np.int64]
    node_points: npt.NDArray[np.int64]
    textures: dict[tuple[int, bool], moderngl.Texture] = field(default_factory=dict)
    transform: npt.NDArray[np.float64] = field(default_factory=lambda: np.identity(4))
    model_bytes: bytes = _gl_matrix(np.identity(4))
    normal_bytes: bytes = _gl_matrix(np.identity(3))
    node_state: bool = False
    """Some part is moved or has a non-default state: draw with the node-reading shader variants."""
    all_hidden: bool = False
    any_see_through: bool = False
    any_selected: bool = False
    triangles: int = 0
    points: int = 0

    def refresh(self) -> None:
        """Recompute the per-model flags from the node arrays (after any change to them)."""
        moved = not np.array_equal(self.deltas, np.broadcast_to(_IDENTITY4, self.deltas.shape))
        self.node_state = moved or bool(self.states.any())
        hidden = self.states[:, 0] > 0.5
        self.all_hidden = bool(hidden.all())
        visible = ~hidden
        self.any_see_through = bool((self.states[:, 1] > 0.5)[visible].any())
        self.any_selected = bool((self.states[:, 2] > 0.5)[visible].any())
        self.triangles = int(self.node_triangles[visible].sum())
        self.points = int(self.node_points[visible].sum())


class Renderer:
    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        background: tuple[float, float, float] = (0.12, 0.12, 0.14),
        per_pixel_below: int = PER_PIXEL_BELOW,
    ) -> None:
        """`background`: the solid colour behind the scene, in sRGB display values (0..1). `per_pixel_below`: see
        PER_PIXEL_BELOW (0 lights every eligible batch per vertex; a huge value lights everything per pixel)."""
        self.per_pixel_below = per_pixel_below
        # The stub types **settings as dicts; moderngl passes them on to glcontext as plain keyword values.
        self.ctx = moderngl.create_context(standalone=True, backend="egl")  # type: ignore[arg-type]
        self._released = False
        self.gl_renderer: str = str(self.ctx.info["GL_RENDERER"])
        self.software = any(name in self.gl_renderer.lower() for name in SOFTWARE_RENDERERS)
        logger.info(
            "GL_RENDERER %s (%s rendering), GL %s",
            self.gl_renderer,
            "software" if self.software else "hardware",
            self.ctx.info["GL_VERSION"],
        )
        self.background = background
        self.camera = Camera()
        self.over_limit = False
        self._models: dict[int, _Model] = {}
        self._shaders: dict[tuple[str, pbr.ShaderKey], _Shader] = {}
        self._globals_version = 0
        self._samplers: dict[tuple[int, int, bool], moderngl.Sampler] = {}

        ctx = self.ctx
        self._checker = ctx.program(
            vertex_shader=pbr.FULL_SCREEN_VERTEX, fragment_shader=pbr.checker_fragment(CHECKER_PX)
        )
        self._fxaa = ctx.program(vertex_shader=pbr.FULL_SCREEN_VERTEX, fragment_shader=pbr.FXAA_FRAGMENT)
        self._full_screen = {p: ctx.vertex_array(p, []) for p in (self._checker, self._fxaa)}
        self._env: moderngl.Texture | None = None
        self._env_levels = 0
        self._sh = np.zeros((9, 3), dtype=np.float32)
        self._env_intensity = 0.0
        self._dfg = self._upload_dfg()
        self._lights: list[Light] = []
        self._exposure = 1.0
        self._tone = "none"
        self._cut_planes = np.zeros((MAX_CUT_PLANES, 4), dtype=np.float32)
        self._clipped = False
        self.set_cut_planes([])
        self.antialiasing = DEFAULT_ANTIALIASING[self.software]
        self.front_faces_first = self.software
        """On a GPU early-z and hierarchical z make it pointless."""
        self.set_environment(default_environment())

        self.width = 0
        self.height = 0
        self._targets: list[Any] = []
        self._out_fbo: moderngl.Framebuffer | None = None
        self._scene_fbo: moderngl.Framebuffer | None = None
        self._scene_texture: moderngl.Texture | None = None
        self.resize(width, height)

    # -- frame buffers ----------------------------------------------------------------------------------------

    def resize(self, width: int, height: int) -> None:
        limit = int(self.ctx.info["GL_MAX_RENDERBUFFER_SIZE"])
        if not (0 < width <= limit and 0 < height <= limit):
            raise ValueError(f"frame size must be within 1..{limit}, got {width}x{height}")
        if (width, height) == (self.width, self.height):
            return
        self.width, self.height = width, height
        self._build_targets()

    def set_antialiasing(self, mode: str) -> None:
        """ "none", "fxaa" (one post pass) or "msaa" (4 samples per pixel, resolved before readback)."""
        if mode not in ANTIALIASING_MODES:
            raise ValueError(f"antialiasing must be one of {', '.join(ANTIALIASING_MODES)}, got {mode!r}")
        if mode != self.antialiasing:
            self.antialiasing = mode
            self._build_targets()

    def _build_targets(self) -> None:
        self._release_targets()
        ctx, size = self.ctx, (self.width, self.height)
        colour, depth = ctx.renderbuffer(size, 4), ctx.depth_renderbuffer(size)
        self._out_fbo = ctx.framebuffer(color_attachments=[colour], depth_attachment=depth)
        self._targets = [self._out_fbo, colour, depth]
        self._scene_fbo = self._out_fbo
        self._scene_texture = None
        if self.antialiasing == "msaa":
            samples = min(MSAA_SAMPLES, int(ctx.info["GL_MAX_SAMPLES"]))
            ms_colour = ctx.renderbuffer(size, 4, samples=samples)
            ms_depth = ctx.depth_renderbuffer(size, samples=samples)
            self._scene_fbo = ctx.framebuffer(color_attachments=[ms_colour], depth_attachment=ms_depth)
            self._targets += [self._scene_fbo, ms_colour, ms_depth]
        elif self.antialiasing == "fxaa":
            self._scene_texture = ctx.texture(size, 4)
            self._scene_texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self._scene_texture.repeat_x = self._scene_texture.repeat_y = False
            scene_depth = ctx.depth_renderbuffer(size)
            self._scene_fbo = ctx.framebuffer(color_attachments=[self._scene_texture], depth_attachment=scene_depth)
            self._targets += [self._scene_fbo, self._scene_texture, scene_depth]
            texel = self._fxaa["u_texel"]
            assert isinstance(texel, moderngl.Uniform)
            texel.write(_f32(1.0 / self.width, 1.0 / self.height))
        self._globals_version += 1  # the outline shaders' viewport

    def _release_targets(self) -> None:
        for target in self._targets:
            target.release()
        self._targets = []
        self._out_fbo = self._scene_fbo = None

    # -- scene ----------------------------------------------------------------------------------------------

    def add_model(self, model_id: int, model: ModelData) -> None:
        """Upload a model's buffers once (textures on first use); an existing model with this id is replaced.
        Every part starts unmoved, with the default state."""
        arrays = build_batches(model, curvature_from=self.per_pixel_below)
        node_count = len(model.tree())
        batches = [self._upload(a) for a in arrays]
        rows = -(-node_count * pbr.NODE_TEXELS // pbr.NODE_ROW)
        texels = np.zeros((rows * pbr.NODE_ROW, 4), dtype=np.float32)
        node_texture = self.ctx.texture((pbr.NODE_ROW, rows), 4, dtype="f4")
        node_texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        triangles = np.zeros(node_count, dtype=np.int64)
        points = np.zeros(node_count, dtype=np.int64)
        for a in arrays:
            for r in a.ranges:
                if a.points:
                    points[r.node] += r.count
                else:
                    triangles[r.node] += r.count // 3
        center = (np.asarray(model.bounds_min, dtype=np.float64) + np.asarray(model.bounds_max, dtype=np.float64)) / 2
        self.remove(model_id)
        entry = _Model(
            batches=batches,
            materials=list(model.materials),
            images=list(model.images),
            center=center,
            node_texture=node_texture,
            node_texels=texels,
            deltas=np.tile(_IDENTITY4, (node_count, 1, 1)),
            states=np.zeros((node_count, 7), dtype=np.float32),
            node_triangles=triangles,
            node_points=points,
        )
        self._models[model_id] = entry
        self._write_nodes(entry, np.arange(node_count))
        entry.refresh()

    def remove(self, model_id: int) -> None:
        """Free a model's GPU objects; removing an unknown id does nothing."""
        entry = self._models.pop(model_id, None)
        if entry is None:
            return
        for batch in entry.batches:
            for obj in (*batch.vaos.values(), *(b for b, _, _ in batch.buffers), batch.ibo):
                if obj is not None:
                    obj.release()
        for texture in entry.textures.values():
            texture.release()
        entry.node_texture.release()

    def set_transform(self, model_id: int, matrix: npt.ArrayLike) -> None:
        """4×4 row-major model→world: p_world = M @ [p, 1]. KeyError for an unknown model."""
        entry = self._models[model_id]
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"transform must be a finite 4x4 matrix, got shape {m.shape}")
        entry.transform = m
        entry.model_bytes = _gl_matrix(m)
        entry.normal_bytes = _gl_matrix(_normal_matrix(m))

    def set_node_matrices(self, model_id: int, nodes: Sequence[int], matrices: npt.ArrayLike) -> None:
        """Per-part deltas (k, 4, 4) in model space: world(now) @ inverse(world(rest)); identity = unmoved."""
        entry = self._models[model_id]
        index = self._node_index(entry, nodes)
        m = np.asarray(matrices, dtype=np.float64)
        if m.shape != (len(index), 4, 4) or not np.isfinite(m).all():
            raise ValueError(f"need {len(index)} finite 4x4 matrices, got shape {m.shape}")
        entry.deltas[index] = m
        self._write_nodes(entry, index)
        entry.refresh()

    def set_node_states(self, model_id: int, nodes: Sequence[int], states: npt.ArrayLike) -> None:
        """Per-part (k, 7): hidden, see-through, selected (0/1), tint r, g, b, a (sRGB, a blends it over the base
        colour), already resolved down the tree by the session."""
        entry = self._models[model_id]
        index = self._node_index(entry, nodes)
        s = np.asarray(states, dtype=np.float32)
        if s.shape != (len(index), 7) or not np.isfinite(s).all():
            raise ValueError(f"need {len(index)} finite rows of 7 state values, got shape {s.shape}")
        entry.states[index] = np.clip(s, 0.0, 1.0)
        self._write_nodes(entry, index)
        entry.refresh()

    def set_override(
        self,
        model_id: int,
        *,
        hidden: bool | None = None,
        tint: tuple[float, float, float, float] | None = None,
        see_through: bool | None = None,
        selected: bool | None = None,
    ) -> None:
        """One state for every part of a model (the whole-model override of before entities had parts); None leaves
        a property as it is, tint (0, 0, 0, 0) clears it. KeyError for an unknown model."""
        entry = self._models[model_id]
        states = entry.states.copy()
        for column, value in ((0, hidden), (1, see_through), (2, selected)):
            if value is not None:
                states[:, column] = float(value)
        if tint is not None:
            if len(tint) != 4:
                raise ValueError(f"tint must be (r, g, b, a), got {tint!r}")
            states[:, 3:] = tint
        self.set_node_states(model_id, range(len(states)), states)

    @staticmethod
    def _node_index(entry: _Model, nodes: Sequence[int]) -> npt.NDArray[np.int64]:
        index = np.asarray(nodes, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= len(entry.states)):
            raise ValueError(f"node index out of range for {len(entry.states)} nodes")
        return index

    def _write_nodes(self, entry: _Model, index: npt.NDArray[np.int64]) -> None:
        """Refresh the texels of these nodes, and upload only the texture rows they fall in."""
        if not len(index):
            return
        base = index * pbr.NODE_TEXELS
        texels = entry.node_texels
        for row in range(3):
            texels[base + row] = entry.deltas[index, row, :]
        texels[base + 3, :3] = entry.states[index, :3]
        texels[base + 4] = entry.states[index, 3:]
        first = int(base.min()) // pbr.NODE_ROW
        last = int(base.max() + pbr.NODE_TEXELS - 1) // pbr.NODE_ROW
        rows = texels[first * pbr.NODE_ROW : (last + 1) * pbr.NODE_ROW]
        entry.node_texture.write(rows.tobytes(), viewport=(0, first, pbr.NODE_ROW, last - first + 1))

    def set_material(self, model_id: int, index: int, material: Material) -> None:
        """Replace the renderer's copy of one material (texture references index the model's images)."""
        entry = self._models[model_id]
        if not 0 <= index < len(entry.materials):
            raise ValueError(f"material {index} out of range for {len(entry.materials)} materials")
        for ref in material.textures():
            if not 0 <= ref.image < len(entry.images):
                raise ValueError(f"texture image {ref.image} out of range for {len(entry.images)} images")
        entry.materials[index] = material

    def set_environment(self, env: Environment, intensity: float = 1.0) -> None:
        """Image-based light: the environment's SH irradiance and its prefiltered specular levels as one texture's
        mip levels (they halve exactly), sampled at LOD roughness × (levels - 1)."""
        if not (math.isfinite(intensity) and intensity >= 0.0):
            raise ValueError(f"environment intensity must be a finite number >= 0, got {intensity!r}")
        levels = [np.asarray(level, dtype=np.float32) for level in env.specular]
        height, width = levels[0].shape[:2]
        texture = self.ctx.texture((width, height), 3, levels[0].astype(np.float16).tobytes(), dtype="f2")
        texture.build_mipmaps(0, len(levels) - 1)
        for i, level in enumerate(levels[1:], start=1):
            size = (max(width >> i, 1), max(height >> i, 1))
            # environment.py's levels halve exactly; anything else is brought to the mip level's size
            fitted = (
                level
                if (level.shape[1], level.shape[0]) == size
                else cv2.resize(level, size, interpolation=cv2.INTER_AREA)
            )
            texture.write(np.ascontiguousarray(fitted, dtype=np.float16).tobytes(), level=i)
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        texture.repeat_x, texture.repeat_y = True, False  # longitude wraps around, latitude does not
        if self._env is not None:
            self._env.release()
        self._env = texture
        self._env_levels = len(levels)
        self._sh = np.asarray(env.irradiance_sh, dtype=np.float32).reshape(9, 3)
        self._env_intensity = float(intensity)
        self._globals_version += 1

    def set_environment_intensity(self, intensity: float) -> None:
        """Scale the environment's light without uploading it again."""
        if not (math.isfinite(intensity) and intensity >= 0.0):
            raise ValueError(f"environment intensity must be a finite number >= 0, got {intensity!r}")
        self._env_intensity = float(intensity)
        self._globals_version += 1

    def set_lights(self, lights: Sequence[Light]) -> None:
        if len(lights) > MAX_LIGHTS:
            raise ValueError(f"at most {MAX_LIGHTS} lights, got {len(lights)}")
        if not all(isinstance(light, Light) for light in lights):
            raise ValueError("lights must be render.lighting.Light values")
        self._lights = list(lights)
        self._globals_version += 1

    def set_output(self, exposure: float, tone_mapping: str) -> None:
        if not (math.isfinite(exposure) and exposure > 0.0):
            raise ValueError(f"exposure must be a finite number > 0, got {exposure!r}")
        if tone_mapping not in TONE_MAPPINGS:
            raise ValueError(f"tone mapping must be one of {', '.join(TONE_MAPPINGS)}, got {tone_mapping!r}")
        self._exposure, self._tone = float(exposure), tone_mapping
        self._globals_version += 1

    def set_cut_planes(self, planes: Sequence[tuple[Sequence[float], Sequence[float]]]) -> None:
        """World-space (normal, point) pairs; geometry is kept where dot(normal, p - point) >= 0."""
        if len(planes) > MAX_CUT_PLANES:
            raise ValueError(f"at most {MAX_CUT_PLANES} cut planes, got {len(planes)}")
        packed = np.zeros((MAX_CUT_PLANES, 4), dtype=np.float32)
        for i, (normal, point) in enumerate(planes):
            n = np.asarray(normal, dtype=np.float64)
            p = np.asarray(point, dtype=np.float64)
            if n.shape != (3,) or p.shape != (3,) or not (np.isfinite(n).all() and np.isfinite(p).all()):
                raise ValueError(f"cut plane {i}: normal and point must be finite 3-vectors")
            length = np.linalg.norm(n)
            if length < 1e-12:
                raise ValueError(f"cut plane {i}: normal is zero")
            n /= length
            packed[i] = (*n, -float(n @ p))
        packed[len(planes) :, 3] = 1.0  # unused slots keep everything, whether enabled or not
        self._cut_planes = packed
        self._clipped = bool(planes)
        self._globals_version += 1
        for i in range(MAX_CUT_PLANES):
            (self.ctx.enable_direct if i < len(planes) else self.ctx.disable_direct)(GL_CLIP_DISTANCE0 + i)

    def set_camera(self, camera: Camera) -> None:
        self.camera = camera

    def set_over_limit(self, over: bool) -> None:
        """While True, frames show a checkerboard instead of the scene, as ARR did past a session's limit."""
        self.over_limit = over

    # -- frame ----------------------------------------------------------------------------------------------

    def render(self, into: npt.NDArray[np.uint8] | None = None) -> tuple[npt.NDArray[np.uint8], FrameStats]:
        """One frame as (height, width, 3) uint8 RGB, top row first; read back into `into` if given: a writable,
        C-contiguous array of that shape, or of (height, width, 4) for RGBA with alpha 255 (the render process reads
        RGBA straight into shared memory; llvmpipe reads RGBA back faster than RGB)."""
        start = time.perf_counter()
        ctx, out = self.ctx, self._out_fbo
        assert out is not None and self._scene_fbo is not None, "renderer released"
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8) if into is None else into
        shapes = ((self.height, self.width, 3), (self.height, self.width, 4))
        if frame.shape not in shapes or not frame.flags.c_contiguous:
            raise ValueError(
                f"need a contiguous {self.height}x{self.width}x3 or x4 array to read into, got {frame.shape}"
            )
        triangles = points = 0
        if self.over_limit:
            out.use()
            ctx.clear(*self.background, 1.0, depth=1.0)
            ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
            self._full_screen[self._checker].render(moderngl.TRIANGLES, vertices=3)
        else:
            scene = self._scene_fbo
            scene.use()
            ctx.clear(*self.background, 1.0, depth=1.0)
            triangles, points = self._draw_scene(scene)
            if self.antialiasing == "msaa":
                ctx.copy_framebuffer(out, scene)
            elif self.antialiasing == "fxaa":
                assert self._scene_texture is not None
                out.use()
                ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
                # A material's sampler object left on unit 0 would override the frame texture's own filtering.
                ctx.clear_samplers(0, 1)
                self._scene_texture.use(0)
                self._full_screen[self._fxaa].render(moderngl.TRIANGLES, vertices=3)
        out.read_into(frame, components=frame.shape[2], alignment=1)
        return frame, FrameStats((time.perf_counter() - start) * 1000.0, triangles, points)

    def _draw_scene(self, fbo: moderngl.Framebuffer) -> tuple[int, int]:
        ctx = self.ctx
        camera = self.camera
        proj = perspective(camera, self.width / self.height)
        # Flip y in clip space so that GL's bottom-up readback already comes out top row first: no copy per
        # frame. That mirrors the winding on screen, so front faces are clockwise on screen.
        proj[1] *= -1.0
        self._view_proj = _gl_matrix(proj @ look_at(camera))
        self._eye = _f32(*camera.position)
        # A pixel's height in world units per unit of distance from the eye (the per-vertex geometry roughness).
        self._pixel_angle = _f32(2.0 * math.tan(math.radians(camera.fov_y_deg) / 2.0) / self.height)
        ctx.front_face = "cw"
        ctx.point_size = POINT_SIZE_PX
        fbo.depth_mask = True
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.BLEND | moderngl.CULL_FACE)

        visible = [m for m in self._models.values() if not m.all_hidden and m.batches]
        for entry in visible:
            for batch in entry.batches:
                if entry.materials[batch.arrays.material].alpha_mode != "BLEND":
                    self._draw_batch(entry, batch, pbr.PASS_NORMAL)
        for entry in visible:
            if entry.any_selected:
                self._draw_outline(entry)

        eye = np.asarray(camera.position, dtype=np.float64)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        # The depth mask is framebuffer state in moderngl (a Context has no such attribute to set).
        fbo.depth_mask = False
        self._draw_blended(visible, eye)
        clear = [m for m in visible if m.any_see_through]
        clear.sort(key=lambda m: -float(np.linalg.norm((m.transform @ (*m.center, 1.0))[:3] - eye)))
        for entry in clear:
            # Far faces before near ones, so a closed see-through part blends in depth order without sorting its
            # triangles; each triangle is still drawn exactly once whatever its winding.
            for culled in ("front", "back"):
                for batch in entry.batches:
                    self._draw_batch(entry, batch, pbr.PASS_SEE_THROUGH, culled=culled)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        fbo.depth_mask = True
        return sum(m.triangles for m in visible), sum(m.points for m in visible)

    def _draw_blended(self, visible: list[_Model], eye: npt.NDArray[np.float64]) -> None:
        """BLEND materials, part by part from the farthest to the nearest (as three.js sorts transparent objects),
        each double-sided part's back faces before its front faces."""
        ranges: list[tuple[float, _Model, _Batch, int, int]] = []
        for entry in visible:
            for batch in entry.batches:
                if entry.materials[batch.arrays.material].alpha_mode != "BLEND":
                    continue
                for r in batch.arrays.ranges:
                    if entry.states[r.node, 0] > 0.5:
                        continue
                    world = entry.transform @ entry.deltas[r.node] @ (*r.center, 1.0)
                    ranges.append((float(np.linalg.norm(world[:3] - eye)), entry, batch, r.first, r.count))
        ranges.sort(key=lambda item: -item[0])
        for _, entry, batch, first, count in ranges:
            if entry.materials[batch.arrays.material].double_sided:
                self._draw_batch(entry, batch, pbr.PASS_NORMAL, culled="front", span=(first, count))
                self._draw_batch(entry, batch, pbr.PASS_NORMAL, culled="back", span=(first, count))
            else:
                self._draw_batch(entry, batch, pbr.PASS_NORMAL, span=(first, count))

    def _key(self, entry: _Model, batch: _Batch, material: Material) -> pbr.ShaderKey:
        refs = {
            "base": material.base_color_texture,
            "mr": material.metallic_roughness_texture,
            "normal": material.normal_texture,
            "occlusion": material.occlusion_texture,
            "emissive": material.emissive_texture,
        }
        arrays = batch.arrays
        lit = not material.unlit
        used = {slot: ref for slot, ref in refs.items() if ref is not None and (lit or slot == "base")}
        sets = {ref.tex_coord for ref in used.values()}
        wraps = {w for ref in used.values() for w in (ref.sampler.wrap_s, ref.sampler.wrap_t)}
        return pbr.ShaderKey(
            LIT=lit,
            POINTS=arrays.points,
            BASE_TEX="base" in used,
            MR_TEX="mr" in used,
            NORMAL_TEX="normal" in used,
            OCC_TEX="occlusion" in used and self._env_intensity > 0.0,
            EMISSIVE_TEX="emissive" in used,
            TANGENTS="normal" in used and arrays.tangents_complete,
            UV0=0 in sets,
            UV1=1 in sets,
            TC_BASE=refs["base"].tex_coord if refs["base"] else 0,
            TC_MR=refs["mr"].tex_coord if refs["mr"] else 0,
            TC_NORMAL=refs["normal"].tex_coord if refs["normal"] else 0,
            TC_OCCLUSION=refs["occlusion"].tex_coord if refs["occlusion"] else 0,
            TC_EMISSIVE=refs["emissive"].tex_coord if refs["emissive"] else 0,
            CUSTOM_WRAP=bool(wraps - {REPEAT}),
            ALPHA=_ALPHA_CODES[material.alpha_mode],
            METAL=int(material.metallic) if "mr" not in used and material.metallic in (0.0, 1.0) else 2,
            DOUBLE_SIDED=material.double_sided,
            VERTEX_LIT=self._vertex_lit(arrays, material, used.keys()),
            NODE_STATE=entry.node_state,
            CUT_PLANES=self._clipped,
            NUM_LIGHTS=len(self._lights) if lit else 0,
            ENV=lit and self._env is not None and self._env_intensity > 0.0,
            TONE=pbr.TONE_CODES[self._tone],
        )

    def _vertex_lit(self, arrays: BatchArrays, material: Material, textures: Iterable[str]) -> bool:
        """Light this batch per vertex (PER_PIXEL_BELOW): a dense lit triangle mesh, no texture that changes the
        light per pixel, and a specular lobe wide enough for linear interpolation between vertices. GGX's lobe is
        about α = roughness² radians wide and the reflection turns by twice the normal's step along an edge, so a
        dielectric (f0 = 0.04) needs α ≥ 2 × step; interpolation error grows as f0 × (step / α)², so a surface
        with a stronger specular f0 needs α larger by √(f0 / 0.04) for the same error (a gold-ish metal: ≈ 4.5×;
        measured on render_common's sphere grid: a metal at roughness 0.6 differs by 1.07 levels on average, at 1.0
        by 0.05, a dielectric at 0.5 by 0.09)."""
        if (
            material.unlit
            or arrays.points
            or set(textures) & {"mr", "normal", "occlusion"}
            or arrays.count // 3 < self.per_pixel_below
        ):
            return False
        f0 = max(0.04 + (c - 0.04) * material.metallic for c in material.base_color[:3])
        alpha = max(material.roughness, 0.045) ** 2
        return alpha >= 2.0 * arrays.normal_step * math.sqrt(max(f0, 0.04) / 0.04)

    def _shader(self, kind: str, key: pbr.ShaderKey) -> _Shader:
        shader = self._shaders.get((kind, key))
        if shader is None:
            if kind == "scene":
                shader = _Shader(self.ctx, key.header(), pbr.SCENE_VERTEX, pbr.SCENE_FRAGMENT)
            else:
                shader = _Shader(self.ctx, key.header(), pbr.OUTLINE_VERTEX, pbr.OUTLINE_FRAGMENT)
            shader.set_array("u_tex", np.arange(5, dtype=np.int32))
            shader.set("u_nodes", np.int32(pbr.NODE_UNIT).tobytes())
            shader.set("u_env", np.int32(pbr.ENV_UNIT).tobytes())
            shader.set("u_dfg", np.int32(pbr.DFG_UNIT).tobytes())
            self._shaders[(kind, key)] = shader
        if shader.globals_version != self._globals_version:
            self._write_globals(shader)
        shader.set("u_view_proj", self._view_proj)
        shader.set("u_camera_position", self._eye)
        shader.set("u_pixel_angle", self._pixel_angle)
        return shader

    def _write_globals(self, shader: _Shader) -> None:
        """Uniforms that change only with the renderer's settings: written once per program and change."""
        shader.globals_version = self._globals_version
        shader.set("u_cut_planes", self._cut_planes.tobytes())
        shader.set("u_exposure", _f32(self._exposure))
        shader.set("u_viewport", _f32(self.width, self.height))
        shader.set("u_outline_px", _f32(OUTLINE_PX))
        for channel, name in enumerate(("u_sh_r", "u_sh_g", "u_sh_b")):
            shader.set(name, _gl_matrix(_sh_quadratic_form(self._sh[:, channel])))
        shader.set("u_env_intensity", _f32(self._env_intensity))
        shader.set("u_env_lod", _f32(max(self._env_levels - 1, 0)))
        if self._lights:
            count = len(self._lights)
            position = np.zeros((count, 4), dtype=np.float32)
            direction = np.zeros((count, 4), dtype=np.float32)
            colour = np.zeros((count, 3), dtype=np.float32)
            cone = np.zeros((count, 2), dtype=np.float32)
            for i, light in enumerate(self._lights):
                kind = ("directional", "point", "spot").index(light.kind)
                position[i] = (*light.position, kind)
                to_light = -np.asarray(light.direction, dtype=np.float64)
                to_light /= max(float(np.linalg.norm(to_light)), 1e-12)
                direction[i] = (*to_light, light.range or 0.0)
                colour[i] = np.asarray(light.color) * light.intensity
                cone[i] = (math.cos(light.outer_cone_angle), math.cos(light.inner_cone_angle))
            shader.set("u_light_position", position.tobytes())
            shader.set("u_light_direction", direction.tobytes())
            shader.set("u_light_color", colour.tobytes())
            shader.set("u_light_cone", cone.tobytes())

    def _draw_batch(
        self,
        entry: _Model,
        batch: _Batch,
        pass_: int,
        culled: str | None = None,
        span: tuple[int, int] | None = None,
    ) -> None:
        """`culled`: the faces this draw culls ("front" or "back"), None for the material's own sidedness."""
        material = entry.materials[batch.arrays.material]
        if culled == "front" and not material.double_sided:
            return  # a pass for back faces: a single-sided material has none to show
        key = self._key(entry, batch, material)
        first, count = span or (0, batch.arrays.count)
        if culled is None and not material.double_sided and not batch.arrays.points:
            culled = "back"
        passes = [(key, culled)]
        if (
            culled is None
            and material.double_sided
            and self.front_faces_first
            and not key.VERTEX_LIT  # its fragments cost little: measured no faster split (29 against 27 ms at 100k)
            and key.ALPHA != 2
            and batch.ibo is not None
            and 0 < count < 3 * FRONT_FACES_FIRST_BELOW
        ):
            # Front faces, then back faces: the back of a closed double-sided part then fails the early depth test
            # instead of being shaded and overdrawn. It runs the vertex shader twice, so only below a size.
            passes = [(key, "back"), (key, "front")]
        if key.VERTEX_LIT and key.DOUBLE_SIDED:
            # A draw that shows one side lights that side only (per-vertex light computes both sides otherwise).
            passes = [
                (dataclasses.replace(k, DOUBLE_SIDED=False, BACK=side == "front"), side) if side else (k, side)
                for k, side in passes
            ]
        ctx = self.ctx
        for pass_key, side in passes:
            shader = self._use_shader(entry, material, pass_key, pass_)
            if side is None:
                ctx.disable(moderngl.CULL_FACE)
            else:
                ctx.enable(moderngl.CULL_FACE)
                ctx.cull_face = side
            self._vao(batch, shader).render(batch.mode, vertices=count, first=first)
        ctx.disable(moderngl.CULL_FACE)

    def _use_shader(self, entry: _Model, material: Material, key: pbr.ShaderKey, pass_: int) -> _Shader:
        """The scene shader of this variant, with the material's uniforms and textures bound."""
        shader = self._shader("scene", key)
        shader.set("u_model", entry.model_bytes)
        shader.set("u_normal_matrix", entry.normal_bytes)
        shader.set("u_pass", np.int32(pass_).tobytes())
        shader.set("u_alpha_scale", _f32(SEE_THROUGH_ALPHA if pass_ == pbr.PASS_SEE_THROUGH else 1.0))
        shader.set("u_base_color", _f32(*material.base_color))
        shader.set("u_metallic", _f32(material.metallic))
        shader.set("u_roughness", _f32(material.roughness))
        shader.set("u_normal_scale", _f32(material.normal_scale))
        shader.set("u_occlusion_strength", _f32(material.occlusion_strength))
        shader.set("u_emissive", _f32(*(np.asarray(material.emissive) * material.emissive_strength)))
        shader.set("u_alpha_cutoff", _f32(material.alpha_cutoff))
        self._bind_material(entry, material, shader)
        if key.NODE_STATE:
            entry.node_texture.use(pbr.NODE_UNIT)
        if key.ENV and self._env is not None:
            self._env.use(pbr.ENV_UNIT)
        self._dfg.use(pbr.DFG_UNIT)
        return shader

    def _bind_material(self, entry: _Model, material: Material, shader: _Shader) -> None:
        refs = (
            material.base_color_texture,
            material.metallic_roughness_texture,
            material.normal_texture,
            material.occlusion_texture,
            material.emissive_texture,
        )
        transforms = np.tile(np.identity(3, dtype=np.float32), (5, 1, 1))
        wraps = np.zeros((5, 2), dtype=np.int32)
        custom_wrap = any(
            w != REPEAT for ref in refs if ref is not None for w in (ref.sampler.wrap_s, ref.sampler.wrap_t)
        )
        for unit, ref in enumerate(refs):
            if ref is None:
                continue
            srgb = unit in (0, 4)  # base colour and emissive hold sRGB colours; the rest is linear data
            self._texture(entry, ref.image, srgb).use(unit)
            self._sampler(ref.sampler, custom_wrap).use(unit)
            if ref.transform is not None:
                transforms[unit] = np.asarray(ref.transform, dtype=np.float32).reshape(3, 3)
            wraps[unit] = (_WRAP_CODES.get(ref.sampler.wrap_s, 0), _WRAP_CODES.get(ref.sampler.wrap_t, 0))
        shader.set_array("u_uv_transform", transforms.transpose(0, 2, 1))
        shader.set_array("u_wrap", wraps)

    def _texture(self, entry: _Model, image: int, srgb: bool) -> moderngl.Texture:
        texture = entry.textures.get((image, srgb))
        if texture is None:
            pixels = np.ascontiguousarray(entry.images[image].pixels, dtype=np.uint8)
            if pixels.ndim != 3 or pixels.shape[2] != 4:
                raise ValueError(f"image {image} must be (H, W, 4) RGBA, got {pixels.shape}")
            height, width = pixels.shape[:2]
            # uvs follow glTF (v = 0 is the image's top row, row 0 of the array) and GL puts the first uploaded row
            # at t = 0: the rows go up as they are, no flip. sRGB textures are decoded by the texture unit (before
            # filtering, as the glTF specification asks).
            texture = self.ctx.texture(
                (width, height), 4, pixels.tobytes(), internal_format=GL_SRGB8_ALPHA8 if srgb else None
            )
            texture.build_mipmaps()
            entry.textures[(image, srgb)] = texture
        return texture

    def _sampler(self, sampler: Sampler, custom_wrap: bool) -> moderngl.Sampler:
        """GL sampler objects carry the filters and repeat/clamp (one texture serves several samplers). GL's mirrored
        repeat is not reachable through moderngl, so a material with any non-repeat wrap clamps here and wraps in
        the shader (pbr.py's sample_tex)."""
        min_filter = sampler.min_filter or LINEAR_MIPMAP_LINEAR
        mag_filter = sampler.mag_filter or LINEAR
        key = (min_filter, mag_filter, custom_wrap)
        gl_sampler = self._samplers.get(key)
        if gl_sampler is None:
            # moderngl's filter constants are the GL enums, which glTF's sampler values are too.
            gl_sampler = self.ctx.sampler(
                repeat_x=not custom_wrap, repeat_y=not custom_wrap, filter=(min_filter, mag_filter)
            )
            self._samplers[key] = gl_sampler
        return gl_sampler

    def _vao(self, batch: _Batch, shader: _Shader) -> moderngl.VertexArray:
        vao = batch.vaos.get(id(shader))
        if vao is None:
            # skip_errors: a variant that does not read an attribute (uv without a texture) simply skips it.
            vao = self.ctx.vertex_array(
                shader.program, batch.buffers, index_buffer=batch.ibo, index_element_size=4, skip_errors=True
            )
            batch.vaos[id(shader)] = vao
        return vao

    def _draw_outline(self, entry: _Model) -> None:
        """A highlight rim around the selected parts: triangles as an inflated back-face hull, points as larger dots
        behind the real ones."""
        ctx = self.ctx
        shader = self._shader("outline", pbr.ShaderKey(NODE_STATE=True, CUT_PLANES=self._clipped))
        shader.set("u_model", entry.model_bytes)
        shader.set("u_normal_matrix", entry.normal_bytes)
        shader.set("u_pass", np.int32(pbr.PASS_OUTLINE).tobytes())
        entry.node_texture.use(pbr.NODE_UNIT)
        for batch in entry.batches:
            vao = self._vao(batch, shader)
            if batch.ibo is None:
                # Same vertices, same depth: GL_LESS rejects the centre of each big dot where the real point is.
                shader.set("u_outline_px", _f32(0.0))
                ctx.point_size = POINT_SIZE_PX + 2.0 * OUTLINE_PX
                vao.render(moderngl.POINTS, vertices=batch.arrays.count)
                ctx.point_size = POINT_SIZE_PX
                shader.set("u_outline_px", _f32(OUTLINE_PX))
            else:
                ctx.enable(moderngl.CULL_FACE)
                ctx.cull_face = "front"
                vao.render(moderngl.TRIANGLES, vertices=batch.arrays.count)
                ctx.disable(moderngl.CULL_FACE)

    # -- upload / release -----------------------------------------------------------------------------------

    def _upload(self, arrays: BatchArrays) -> _Batch:
        buffers = []
        for name, values in arrays.attributes.items():
            fmt, attribute = _ATTRIBUTE_FORMATS[name]
            buffers.append((self.ctx.buffer(values.tobytes()), fmt, attribute))
        ibo = None if arrays.indices is None else self.ctx.buffer(arrays.indices.tobytes())
        return _Batch(arrays, buffers, ibo)

    def _upload_dfg(self) -> moderngl.Texture:
        """The split-sum LUT (scale, bias) with roughness along s and NdotV along t, as three.js's dfgLUT is read
        (environment.brdf_lut has NdotV along its columns: transposed here)."""
        lut = np.ascontiguousarray(np.asarray(brdf_lut(), dtype=np.float32).transpose(1, 0, 2))
        texture = self.ctx.texture((lut.shape[1], lut.shape[0]), 2, lut.tobytes(), dtype="f4")
        texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        texture.repeat_x = texture.repeat_y = False
        return texture

    def release(self) -> None:
        """Free every GPU object and the context; the renderer is unusable afterwards."""
        if self._released:
            return
        self._released = True
        for model_id in list(self._models):
            self.remove(model_id)
        self._release_targets()
        for vao in self._full_screen.values():
            vao.release()
        for obj in (self._checker, self._fxaa, self._dfg, self._env):
            if obj is not None:
                obj.release()
        for sampler in self._samplers.values():
            sampler.release()
        for shader in self._shaders.values():
            shader.program.release()
        self.ctx.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _sh_quadratic_form(c: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The 4×4 symmetric M with (n, 1)ᵀ M (n, 1) = Σ c_i Y_i(n), Y the real SH basis in three.js's order and with
    its constants (environment.evaluate_irradiance writes the same sum out)."""
    m = np.zeros((4, 4))
    x, y, z, w = range(4)
    m[x, x], m[y, y] = 0.546274 * c[8], -0.546274 * c[8]
    m[z, z] = 3.0 * 0.315392 * c[6]
    m[w, w] = 0.282095 * c[0] - 0.315392 * c[6]
    for (i, j), k, scale in (((x, y), 4, 1.092548), ((y, z), 5, 1.092548), ((x, z), 7, 1.092548)):
        m[i, j] = m[j, i] = scale * c[k] / 2.0
    for i, k in ((x, 3), (y, 1), (z, 2)):
        m[i, w] = m[w, i] = 0.488603 * c[k] / 2.0
    return m
