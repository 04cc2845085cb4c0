"""Offscreen rendering of a session's loaded models into RGB frames (moderngl on EGL).

One standalone EGL context per renderer; nothing is ever shown in a window. Geometry is uploaded once per
model, and a frame costs one uniform write per entity and mesh, so Python overhead stays flat as models grow.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import moderngl
import numpy as np
import numpy.typing as npt

from openrr.protocol.render import MAX_CUT_PLANES
from openrr.render.camera import Camera, look_at, perspective

logger = logging.getLogger(__name__)

SEE_THROUGH_ALPHA = 0.35
POINT_SIZE_PX = 2.5
OUTLINE_PX = 3.0
CHECKER_PX = 32
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")
GL_CLIP_DISTANCE0 = 0x3000  # moderngl has no flag for it; enabled with enable_direct

# Interleaved per-vertex layout: position, normal, colour as four normalised bytes (a quarter of float32's
# memory and fetch bandwidth, which software rasterisers feel), texture coordinates.
_VERTEX_DTYPE = np.dtype([("position", "<f4", 3), ("normal", "<f4", 3), ("color", "u1", 4), ("uv", "<f4", 2)])
_VERTEX_FORMAT = "3f 3f 4f1 2f"
_VERTEX_ATTRIBUTES = ("in_position", "in_normal", "in_color", "in_uv")

# Dense meshes are lit per vertex (Gouraud), for both sides of the surface, and the fragment shader only picks a
# side and, for textured meshes, multiplies in the texture. On llvmpipe the fragment shader is the cost: lighting
# per pixel (two normalisations and a pow per pixel) ran at 0.67x of a minimal shader at 100k triangles and 720p,
# per vertex at 0.95x (bench/RESULTS.md). Where triangles are smaller than a few pixels the two look the same;
# a coarse mesh (fewer than PER_PIXEL_BELOW triangles, a box with eight shared corner normals, say) would look
# wrong per vertex and is lit per pixel.
#
# The source is compiled in variants: TEXTURED (sample a base-colour texture), PER_PIXEL (lighting), and
# CUT_PLANES (write clip distances), so that nothing pays for what it does not use.
PER_PIXEL_BELOW = 20_000

_SHADING = """
uniform vec3 u_camera_position;
uniform vec3 u_key_light;
uniform vec4 u_tint;
uniform float u_alpha;
uniform float u_unlit;

// (diffuse factor, specular term) of a surface with unit normal n seen from unit direction v.
vec2 shade(vec3 n, vec3 v) {
    if (u_unlit > 0.5) {
        return vec2(1.0, 0.0);
    }
    float head = max(dot(n, v), 0.0);
    float key = max(dot(n, u_key_light), 0.0);
    float spec = pow(max(dot(n, normalize(v + u_key_light)), 0.0), 32.0);
    return vec2(0.18 + 0.5 * head + 0.32 * key, 0.15 * spec);
}
"""

_SCENE_VERTEX_SHADER = """
uniform mat4 u_view_proj;
uniform mat4 u_model;
uniform mat3 u_normal_matrix;
#if CUT_PLANES
uniform vec4 u_cut_planes[MAX_CUT_PLANES];
out float gl_ClipDistance[MAX_CUT_PLANES];
#endif

in vec3 in_position;
in vec3 in_normal;
in vec4 in_color;
#if TEXTURED
in vec2 in_uv;
out vec2 v_uv;
#endif
#if PER_PIXEL
out vec3 v_world;
out vec3 v_normal;
out vec4 v_color;
#elif TEXTURED
out vec4 v_color;
out vec4 v_light;  // shade() for the side the normal points to, then for the other side
out float v_facing;  // > 0 where the normal's side faces the camera; interpolated, so the side is picked per pixel
#else
out vec4 v_front;  // the final colour of the side the normal points to, with alpha
out vec3 v_back;
out float v_facing;
#endif

void main() {
    vec4 world = u_model * vec4(in_position, 1.0);
#if CUT_PLANES
    // Cut planes as clip distances rather than a discard in the fragment shader: clipping is exact, and a
    // shader without discard keeps llvmpipe's early depth test.
    for (int i = 0; i < MAX_CUT_PLANES; ++i) {
        gl_ClipDistance[i] = dot(u_cut_planes[i].xyz, world.xyz) + u_cut_planes[i].w;
    }
#endif
    gl_Position = u_view_proj * world;
    vec3 normal = u_normal_matrix * in_normal;
#if TEXTURED
    v_uv = in_uv;
#endif
#if PER_PIXEL
    v_world = world.xyz;
    v_normal = normal;
    v_color = in_color;
#else
    float normal_len = length(normal);
    // Point clouds often come without normals: show their colours unlit rather than black.
    vec4 light = vec4(1.0, 0.0, 1.0, 0.0);
    v_facing = 1.0;
    if (normal_len > 1e-6) {
        vec3 n = normal / normal_len;
        vec3 v = normalize(u_camera_position - world.xyz);
        // Back-face culling is off (models may be single-sided), so whichever side faces the camera is lit.
        light = vec4(shade(n, v), shade(-n, v));
        v_facing = dot(n, v);
    }
  #if TEXTURED
    v_color = in_color;
    v_light = light;
  #else
    vec3 base = mix(in_color.rgb, u_tint.rgb, u_tint.a);
    v_front = vec4(base * light.x + light.y, u_alpha * in_color.a);
    v_back = base * light.z + light.w;
  #endif
#endif
}
"""

_SCENE_FRAGMENT_SHADER = """
#if TEXTURED
uniform sampler2D u_texture;
in vec2 v_uv;
#endif
#if PER_PIXEL
in vec3 v_world;
in vec3 v_normal;
in vec4 v_color;
#elif TEXTURED
in vec4 v_color;
in vec4 v_light;
in float v_facing;
#else
in vec4 v_front;
in vec3 v_back;
in float v_facing;
#endif

out vec4 f_color;

void main() {
#if PER_PIXEL || TEXTURED
    vec4 base = v_color;
  #if TEXTURED
    base *= texture(u_texture, v_uv);
  #endif
    base.rgb = mix(base.rgb, u_tint.rgb, u_tint.a);
  #if PER_PIXEL
    vec2 light = vec2(1.0, 0.0);
    float normal_len = length(v_normal);
    if (normal_len > 1e-6) {
        vec3 n = v_normal / normal_len;
        vec3 v = normalize(u_camera_position - v_world);
        light = dot(n, v) >= 0.0 ? shade(n, v) : shade(-n, v);
    }
  #else
    vec2 light = v_facing >= 0.0 ? v_light.xy : v_light.zw;
  #endif
    f_color = vec4(base.rgb * light.x + light.y, u_alpha * base.a);
#else
    f_color = v_facing >= 0.0 ? v_front : vec4(v_back, v_front.a);
#endif
}
"""

# The selected outline: the mesh's hull pushed out along its screen-space normals, in one flat colour.
_OUTLINE_VERTEX_SHADER = """
uniform mat4 u_view_proj;
uniform mat4 u_model;
uniform mat3 u_normal_matrix;
uniform vec2 u_viewport;
uniform float u_outline_px;
#if CUT_PLANES
uniform vec4 u_cut_planes[MAX_CUT_PLANES];
out float gl_ClipDistance[MAX_CUT_PLANES];
#endif

in vec3 in_position;
in vec3 in_normal;

void main() {
    vec4 world = u_model * vec4(in_position, 1.0);
#if CUT_PLANES
    for (int i = 0; i < MAX_CUT_PLANES; ++i) {
        gl_ClipDistance[i] = dot(u_cut_planes[i].xyz, world.xyz) + u_cut_planes[i].w;
    }
#endif
    vec4 clip = u_view_proj * world;
    // Push the hull out by a fixed number of pixels, whatever the distance.
    vec2 n = (u_view_proj * vec4(u_normal_matrix * in_normal, 0.0)).xy;
    float len = length(n);
    if (len > 1e-8) {
        clip.xy += (n / len) * (2.0 * u_outline_px / u_viewport) * clip.w;
    }
    gl_Position = clip;
}
"""

_OUTLINE_FRAGMENT_SHADER = """
out vec4 f_color;
void main() {
    f_color = vec4(1.0, 0.62, 0.05, 1.0);
}
"""

_CHECKER_VERTEX_SHADER = f"""
#version 330
out float gl_ClipDistance[{MAX_CUT_PLANES}];
void main() {{
    // Clip distances stay enabled while cut planes are set; keep this triangle on their inside.
    for (int i = 0; i < {MAX_CUT_PLANES}; ++i) {{
        gl_ClipDistance[i] = 1.0;
    }}
    // One triangle that covers the whole viewport, with no vertex buffer.
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}}
"""

_CHECKER_FRAGMENT_SHADER = f"""
#version 330
out vec4 f_color;
void main() {{
    ivec2 cell = ivec2(gl_FragCoord.xy) / {CHECKER_PX};
    float on = float((cell.x + cell.y) & 1);
    f_color = vec4(mix(vec3(0.30), vec3(0.62), on), 1.0);
}}
"""


class MeshLike(Protocol):
    """What the renderer reads from `openrr.model.mesh.MeshData` (uvs in glTF's convention: v = 0 at the top)."""

    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    indices: np.ndarray | None
    uvs: np.ndarray | None
    texture: np.ndarray | None
    double_sided: bool
    """False: back faces are culled (a converted asset's opaqueMaterialDefaultSidedness=SingleSided)."""
    unlit: bool
    """Shown in its own colours, without lighting (a converted asset's unlitMaterials)."""


class ModelLike(Protocol):
    """What the renderer reads from `openrr.model.mesh.ModelData`."""

    name: str
    bounds_min: np.ndarray
    bounds_max: np.ndarray

    @property
    def meshes(self) -> Sequence[MeshLike]: ...


@dataclass
class FrameStats:
    render_ms: float
    """Wall time to render and read back this frame (readback waits for the GPU, so GPU time is in it)."""
    triangles_drawn: int
    points_drawn: int


def _gl_matrix(m: npt.NDArray[Any]) -> bytes:
    """Row-major numpy matrix → the column-major bytes GLSL expects."""
    return np.ascontiguousarray(m.T, dtype=np.float32).tobytes()


def _f32(*values: float) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


class _Shader:
    """One compiled variant of a shader source, and its uniforms looked up once (moderngl's by-name lookup is a
    dict access plus a Python call per uniform per draw). Uniforms the compiler dropped are ignored."""

    def __init__(self, ctx: moderngl.Context, vertex: str, fragment: str, **defines: bool) -> None:
        header = f"#version 330\n#define MAX_CUT_PLANES {MAX_CUT_PLANES}\n"
        header += "".join(f"#define {name} {int(on)}\n" for name, on in defines.items())
        if "shade(" in vertex + fragment:
            header += _SHADING
        self.program = ctx.program(vertex_shader=header + vertex, fragment_shader=header + fragment)
        self._uniforms: dict[str, moderngl.Uniform] = {}
        for name in self.program:
            member = self.program[name]
            if isinstance(member, moderngl.Uniform):
                self._uniforms[name] = member

    def set(self, name: str, data: bytes) -> None:
        uniform = self._uniforms.get(name)
        if uniform is not None:
            uniform.write(data)

    def vertex_array(
        self, ctx: moderngl.Context, vbo: moderngl.Buffer, ibo: moderngl.Buffer | None
    ) -> moderngl.VertexArray:
        # skip_errors: a variant that does not read an attribute (uv without a texture) simply skips it.
        return ctx.vertex_array(
            self.program,
            [(vbo, _VERTEX_FORMAT, *_VERTEX_ATTRIBUTES)],
            index_buffer=ibo,
            index_element_size=4,
            skip_errors=True,
        )


@dataclass
class _GpuMesh:
    vbo: moderngl.Buffer
    ibo: moderngl.Buffer | None
    texture: moderngl.Texture | None
    double_sided: bool
    unlit: bool
    per_pixel: bool
    """Lit per pixel: a coarse mesh (see PER_PIXEL_BELOW)."""
    vaos: dict[bool, moderngl.VertexArray]
    """Shaded, keyed by whether cut planes are on."""
    outline_vaos: dict[bool, moderngl.VertexArray]
    triangles: int
    points: int

    @property
    def mode(self) -> int:
        return moderngl.POINTS if self.ibo is None else moderngl.TRIANGLES


@dataclass
class _Entity:
    meshes: list[_GpuMesh]
    center: npt.NDArray[np.float64]
    """Model-space centre of the bounds; sorts see-through entities back to front."""
    transform: npt.NDArray[np.float64] = field(default_factory=lambda: np.identity(4))
    model_bytes: bytes = _gl_matrix(np.identity(4))
    normal_bytes: bytes = _gl_matrix(np.identity(3))
    hidden: bool = False
    tint: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    see_through: bool = False
    selected: bool = False

    @property
    def triangles(self) -> int:
        return sum(m.triangles for m in self.meshes)

    @property
    def points(self) -> int:
        return sum(m.points for m in self.meshes)


class Renderer:
    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        background: tuple[float, float, float] = (0.12, 0.12, 0.14),
    ) -> None:
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
        self._entities: dict[int, _Entity] = {}

        ctx = self.ctx
        # Keyed by (textured, lit per pixel, cut planes on); outlines by cut planes on.
        self._shaded = {
            key: _Shader(
                ctx,
                _SCENE_VERTEX_SHADER,
                _SCENE_FRAGMENT_SHADER,
                TEXTURED=key[0],
                PER_PIXEL=key[1],
                CUT_PLANES=key[2],
            )
            for key in itertools.product((False, True), repeat=3)
        }
        self._outline = {
            clipped: _Shader(ctx, _OUTLINE_VERTEX_SHADER, _OUTLINE_FRAGMENT_SHADER, CUT_PLANES=clipped)
            for clipped in (False, True)
        }
        self._shaders = [*self._shaded.values(), *self._outline.values()]
        self._checker_program = ctx.program(
            vertex_shader=_CHECKER_VERTEX_SHADER, fragment_shader=_CHECKER_FRAGMENT_SHADER
        )
        self._checker_vao = ctx.vertex_array(self._checker_program, [])
        key = np.array([0.45, 0.8, 0.4])
        for shader in self._shaders:
            shader.set("u_key_light", _f32(*(key / np.linalg.norm(key))))
            shader.set("u_texture", np.int32(0).tobytes())
            shader.set("u_outline_px", _f32(OUTLINE_PX))
        self._clipped = False
        self.set_cut_planes([])

        self.width = 0
        self.height = 0
        self._fbo: moderngl.Framebuffer | None = None
        self.resize(width, height)

    # -- frame buffer ---------------------------------------------------------------------------------------

    def resize(self, width: int, height: int) -> None:
        limit = int(self.ctx.info["GL_MAX_RENDERBUFFER_SIZE"])
        if not (0 < width <= limit and 0 < height <= limit):
            raise ValueError(f"frame size must be within 1..{limit}, got {width}x{height}")
        if (width, height) == (self.width, self.height):
            return
        self._release_fbo()
        self._fbo = self.ctx.framebuffer(
            color_attachments=[self.ctx.renderbuffer((width, height), 4)],
            depth_attachment=self.ctx.depth_renderbuffer((width, height)),
        )
        self.width, self.height = width, height
        for shader in self._outline.values():
            shader.set("u_viewport", _f32(width, height))

    def _release_fbo(self) -> None:
        if self._fbo is None:
            return
        for attachment in (*self._fbo.color_attachments, self._fbo.depth_attachment):
            attachment.release()
        self._fbo.release()
        self._fbo = None

    # -- scene ----------------------------------------------------------------------------------------------

    def add_model(self, entity_id: int, model: ModelLike) -> None:
        """Upload a model's buffers and textures once; an existing entity with this id is replaced."""
        meshes = [self._upload(mesh) for mesh in model.meshes if len(mesh.positions)]
        center = (np.asarray(model.bounds_min, dtype=np.float64) + np.asarray(model.bounds_max, dtype=np.float64)) / 2
        self.remove(entity_id)
        self._entities[entity_id] = _Entity(meshes=meshes, center=center)

    def remove(self, entity_id: int) -> None:
        """Free an entity's GPU objects; removing an unknown id does nothing."""
        entity = self._entities.pop(entity_id, None)
        if entity is not None:
            for mesh in entity.meshes:
                self._release_mesh(mesh)

    def set_transform(self, entity_id: int, matrix: npt.ArrayLike) -> None:
        """4×4 row-major model→world: p_world = M @ [p, 1]. KeyError for an unknown entity."""
        entity = self._entities[entity_id]
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise ValueError(f"transform must be a finite 4x4 matrix, got shape {m.shape}")
        linear = m[:3, :3]
        try:
            normal = np.linalg.inv(linear).T
        except np.linalg.LinAlgError:
            # A flattened (zero-scale) axis has no inverse; its surface is edge-on anyway.
            normal = linear
        entity.transform = m
        entity.model_bytes = _gl_matrix(m)
        entity.normal_bytes = _gl_matrix(normal)

    def set_override(
        self,
        entity_id: int,
        *,
        hidden: bool | None = None,
        tint: tuple[float, float, float, float] | None = None,
        see_through: bool | None = None,
        selected: bool | None = None,
    ) -> None:
        """Change an entity's display state; None leaves a property as it is, tint (0, 0, 0, 0) clears it.

        Tint alpha blends the tint colour over the base colour. KeyError for an unknown entity.
        """
        entity = self._entities[entity_id]
        if hidden is not None:
            entity.hidden = hidden
        if tint is not None:
            if len(tint) != 4:
                raise ValueError(f"tint must be (r, g, b, a), got {tint!r}")
            r, g, b, a = (min(max(float(c), 0.0), 1.0) for c in tint)
            entity.tint = (r, g, b, a)
        if see_through is not None:
            entity.see_through = see_through
        if selected is not None:
            entity.selected = selected

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
        for shader in self._shaders:
            shader.set("u_cut_planes", packed.tobytes())
        self._clipped = bool(planes)
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
        ctx, fbo = self.ctx, self._fbo
        assert fbo is not None, "renderer released"
        fbo.use()
        ctx.clear(*self.background, 1.0, depth=1.0)
        triangles = points = 0
        if self.over_limit:
            ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
            self._checker_vao.render(moderngl.TRIANGLES, vertices=3)
        else:
            triangles, points = self._draw_scene(fbo)
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8) if into is None else into
        shapes = ((self.height, self.width, 3), (self.height, self.width, 4))
        if frame.shape not in shapes or not frame.flags.c_contiguous:
            raise ValueError(
                f"need a contiguous {self.height}x{self.width}x3 or x4 array to read into, got {frame.shape}"
            )
        fbo.read_into(frame, components=frame.shape[2], alignment=1)
        return frame, FrameStats((time.perf_counter() - start) * 1000.0, triangles, points)

    def _draw_scene(self, fbo: moderngl.Framebuffer) -> tuple[int, int]:
        ctx = self.ctx
        camera = self.camera
        view = look_at(camera)
        proj = perspective(camera, self.width / self.height)
        # Flip y in clip space so that GL's bottom-up readback already comes out top row first: no copy per
        # frame. That mirrors the winding on screen, so "front" becomes clockwise for the outline's culling.
        proj[1] *= -1.0
        view_proj = _gl_matrix(proj @ view)
        eye_bytes = _f32(*camera.position)
        for shader in (*self._shaded.values(), *self._outline.values()):
            shader.set("u_view_proj", view_proj)
            shader.set("u_camera_position", eye_bytes)
        ctx.front_face = "cw"
        ctx.cull_face = "front"
        ctx.point_size = POINT_SIZE_PX
        fbo.depth_mask = True
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.BLEND | moderngl.CULL_FACE)

        visible = [e for e in self._entities.values() if not e.hidden and e.meshes]
        opaque = [e for e in visible if not e.see_through]
        clear = [e for e in visible if e.see_through]
        for entity in opaque:
            self._draw_entity(entity, 1.0)
        for entity in opaque:
            if entity.selected:
                self._draw_outline(entity)

        if clear:
            eye = np.asarray(camera.position)
            clear.sort(key=lambda e: -float(np.linalg.norm((e.transform @ (*e.center, 1.0))[:3] - eye)))
            for entity in clear:
                if entity.selected:
                    self._draw_outline(entity)
            ctx.enable(moderngl.BLEND)
            ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
            # The depth mask is framebuffer state in moderngl (a Context has no such attribute to set).
            fbo.depth_mask = False
            # Far faces before near ones, so a closed see-through model blends in depth order without sorting
            # its triangles; each triangle is still drawn exactly once whatever its winding.
            ctx.enable(moderngl.CULL_FACE)
            for entity in clear:
                ctx.cull_face = "front"
                self._draw_entity(entity, SEE_THROUGH_ALPHA, "front")
                ctx.cull_face = "back"
                self._draw_entity(entity, SEE_THROUGH_ALPHA, "back")
            ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
            fbo.depth_mask = True
        return sum(e.triangles for e in visible), sum(e.points for e in visible)

    def _draw_entity(self, entity: _Entity, alpha: float, culled: str | None = None) -> None:
        """`culled`: the faces this pass culls ("front" or "back"), None if it draws both."""
        ctx = self.ctx
        tint, alpha_bytes = _f32(*entity.tint), _f32(alpha)
        for mesh in entity.meshes:
            if not mesh.double_sided and culled == "front":
                continue  # a pass for back faces: a single-sided mesh has none to show
            shader = self._shaded[(mesh.texture is not None, mesh.per_pixel, self._clipped)]
            shader.set("u_model", entity.model_bytes)
            shader.set("u_normal_matrix", entity.normal_bytes)
            shader.set("u_tint", tint)
            shader.set("u_alpha", alpha_bytes)
            shader.set("u_unlit", _f32(float(mesh.unlit)))
            if mesh.texture is not None:
                mesh.texture.use(0)
            single_sided = not mesh.double_sided and culled is None
            if single_sided:
                ctx.enable(moderngl.CULL_FACE)
                ctx.cull_face = "back"
            mesh.vaos[self._clipped].render(mesh.mode)
            if single_sided:
                ctx.disable(moderngl.CULL_FACE)
                ctx.cull_face = "front"

    def _draw_outline(self, entity: _Entity) -> None:
        """A highlight rim: triangles as an inflated back-face hull, points as larger dots behind the real ones."""
        ctx = self.ctx
        shader = self._outline[self._clipped]
        shader.set("u_model", entity.model_bytes)
        shader.set("u_normal_matrix", entity.normal_bytes)
        for mesh in entity.meshes:
            vao = mesh.outline_vaos[self._clipped]
            if mesh.ibo is None:
                # Same vertices, same depth: GL_LESS rejects the centre of each big dot where the real point is.
                shader.set("u_outline_px", _f32(0.0))
                ctx.point_size = POINT_SIZE_PX + 2.0 * OUTLINE_PX
                vao.render(moderngl.POINTS)
                ctx.point_size = POINT_SIZE_PX
                shader.set("u_outline_px", _f32(OUTLINE_PX))
            else:
                ctx.enable(moderngl.CULL_FACE)
                vao.render(moderngl.TRIANGLES)
                ctx.disable(moderngl.CULL_FACE)

    # -- upload / release -----------------------------------------------------------------------------------

    def _upload(self, mesh: MeshLike) -> _GpuMesh:
        positions = np.asarray(mesh.positions, dtype=np.float32)
        n = len(positions)
        if positions.shape != (n, 3):
            raise ValueError(f"positions must be (N, 3), got {positions.shape}")
        vertices = np.zeros(n, dtype=_VERTEX_DTYPE)
        vertices["position"] = positions
        vertices["normal"] = np.asarray(mesh.normals, dtype=np.float32).reshape(n, 3)
        colors = np.asarray(mesh.colors, dtype=np.float32).reshape(n, 4)
        vertices["color"] = np.rint(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)
        if mesh.uvs is not None:
            vertices["uv"] = np.asarray(mesh.uvs, dtype=np.float32).reshape(n, 2)

        ibo = None
        triangles = 0
        if mesh.indices is not None:
            indices = np.ascontiguousarray(mesh.indices, dtype=np.uint32).reshape(-1, 3)
            # An out-of-range index reads past the buffer: garbage at best, a crashed driver at worst.
            if len(indices) and int(indices.max()) >= n:
                raise ValueError(f"index {int(indices.max())} out of range for {n} vertices")
            triangles = len(indices)
            ibo = self.ctx.buffer(indices.tobytes())
        vbo = self.ctx.buffer(vertices.tobytes())
        texture = self._upload_texture(mesh.texture) if mesh.texture is not None and mesh.uvs is not None else None
        textured = texture is not None
        per_pixel = 0 < triangles < PER_PIXEL_BELOW
        return _GpuMesh(
            vbo,
            ibo,
            texture,
            mesh.double_sided,
            mesh.unlit,
            per_pixel,
            {c: self._shaded[(textured, per_pixel, c)].vertex_array(self.ctx, vbo, ibo) for c in (False, True)},
            {c: self._outline[c].vertex_array(self.ctx, vbo, ibo) for c in (False, True)},
            triangles,
            0 if ibo is not None else n,
        )

    def _upload_texture(self, image: npt.ArrayLike) -> moderngl.Texture:
        pixels = np.asarray(image, dtype=np.uint8)
        if pixels.ndim != 3 or pixels.shape[2] != 4:
            raise ValueError(f"texture must be (H, W, 4) RGBA, got {pixels.shape}")
        height, width = pixels.shape[:2]
        # uvs follow glTF (v = 0 is the image's top row, row 0 of the array) and GL puts the first uploaded row
        # at v = 0: the rows go up as they are, no flip.
        texture = self.ctx.texture((width, height), 4, np.ascontiguousarray(pixels).tobytes())
        texture.build_mipmaps()
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        return texture

    @staticmethod
    def _release_mesh(mesh: _GpuMesh) -> None:
        for obj in (*mesh.vaos.values(), *mesh.outline_vaos.values(), mesh.vbo, mesh.ibo, mesh.texture):
            if obj is not None:
                obj.release()

    def release(self) -> None:
        """Free every GPU object and the context; the renderer is unusable afterwards."""
        if self._released:
            return
        self._released = True
        for entity_id in list(self._entities):
            self.remove(entity_id)
        self._release_fbo()
        self._checker_vao.release()
        for program in (self._checker_program, *(shader.program for shader in self._shaders)):
            program.release()
        self.ctx.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
