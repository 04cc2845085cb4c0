"""GLSL for the renderer: glTF metallic-roughness shading as three.js (r187) computes it, and its output stage.

The formulas follow the glTF specification's appendix B (GGX distribution, Smith height-correlated visibility,
Schlick Fresnel) in the exact forms three.js's MeshStandardMaterial uses, because the reference images hold
openrr's frames against three.js: its Fresnel approximation (exp2 form), its minimum roughness 0.045 plus the
"geometry roughness" of curved surfaces, its multiple-scattering terms for image-based light and the energy
compensation of direct specular light, its bent reflection vector, its specular occlusion, its punctual light
falloff (KHR_lights_punctual with three's smoothstep cone) and its tone-mapping and sRGB-encode functions.

Everything is compiled in variants (`ShaderKey`): a material without textures, lights or an environment pays for
none of them, and nothing has a `discard` unless its material is alpha MASK (llvmpipe keeps early depth tests).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from openrr.protocol.render import MAX_CUT_PLANES

# Per-node state texture (RGBA32F): NODE_TEXELS texels per node, NODE_ROW texels per row.
# Texels 0-2: the node's delta matrix rows (3×4 affine); 3: (hidden, see-through, selected, 0); 4: tint (sRGB rgb, a).
NODE_TEXELS = 8
NODE_ROW = 4096

# Texture slots of a material, in this order everywhere (units 0-4); then the node state, the environment, the LUT.
TEXTURE_SLOTS = ("base", "mr", "normal", "occlusion", "emissive")
NODE_UNIT, ENV_UNIT, DFG_UNIT = 5, 6, 7
TONE_CODES = {"none": 0, "aces": 1, "neutral": 2}

# Passes that decide which parts a draw keeps (the vertex shader collapses the others).
PASS_NORMAL, PASS_SEE_THROUGH, PASS_OUTLINE = 0, 1, 2


@dataclass(frozen=True)
class ShaderKey:
    """One compiled variant; every field becomes a `#define NAME value`."""

    LIT: bool = True
    POINTS: bool = False
    BASE_TEX: bool = False
    MR_TEX: bool = False
    NORMAL_TEX: bool = False
    OCC_TEX: bool = False
    EMISSIVE_TEX: bool = False
    TANGENTS: bool = False
    UV0: bool = False
    UV1: bool = False
    TC_BASE: int = 0
    TC_MR: int = 0
    TC_NORMAL: int = 0
    TC_OCCLUSION: int = 0
    TC_EMISSIVE: int = 0
    CUSTOM_WRAP: bool = False
    ALPHA: int = 0
    """0 OPAQUE, 1 MASK, 2 BLEND."""
    METAL: int = 2
    """0: a dielectric, 1: a metal (metallic exactly 0 or 1 and no metallic-roughness texture: the compiler drops the
    other half of the BRDF), 2: metallic read at run time."""
    DOUBLE_SIDED: bool = True
    VERTEX_LIT: bool = False
    """Lit per vertex (a dense mesh: see renderer.PER_PIXEL_BELOW); the fragment shader only applies the albedo."""
    BACK: bool = False
    """Per-vertex light of a draw that shows back faces only (DOUBLE_SIDED off): light the flipped normal."""
    NODE_STATE: bool = False
    CUT_PLANES: bool = False
    NUM_LIGHTS: int = 0
    ENV: bool = False
    TONE: int = 0

    def header(self) -> str:
        lines = ["#version 330", f"#define MAX_CUT_PLANES {MAX_CUT_PLANES}", f"#define NODE_TEXELS {NODE_TEXELS}"]
        lines += [f"#define {name} {int(value)}" for name, value in asdict(self).items()]
        # Per-vertex light with nothing per pixel to apply (no base colour or emissive texture): the vertex shader
        # also tone-maps and encodes, and the fragment shader only picks a side (as the renderer before issue 11).
        final = self.VERTEX_LIT and not (self.BASE_TEX or self.EMISSIVE_TEX)
        lines.append(f"#define VERTEX_FINAL {int(final)}")
        return "\n".join(lines) + "\n"


_NODE_FETCH = """
#if NODE_STATE
uniform sampler2D u_nodes;
uniform int u_pass;
in uint in_node;
vec4 node_texel(int node, int k) {
    int i = node * NODE_TEXELS + k;
    return texelFetch(u_nodes, ivec2(i & 4095, i >> 12), 0);
}
// False where this pass leaves the vertex's part out: hidden parts always; see-through ones in the normal pass,
// the others in the see-through pass; unselected ones in the outline pass.
bool node_kept(vec4 state) {
    if (state.x > 0.5) return false;
    if (u_pass == 0) return state.y < 0.5;
    if (u_pass == 1) return state.y > 0.5;
    return state.z > 0.5;
}
#endif
"""

_CLIP = """
#if CUT_PLANES
uniform vec4 u_cut_planes[MAX_CUT_PLANES];
out float gl_ClipDistance[MAX_CUT_PLANES];
#endif
void clip_world(vec3 world) {
#if CUT_PLANES
    // Cut planes as clip distances rather than a discard: exact, and llvmpipe keeps its early depth test.
    for (int i = 0; i < MAX_CUT_PLANES; ++i) {
        gl_ClipDistance[i] = dot(u_cut_planes[i].xyz, world) + u_cut_planes[i].w;
    }
#endif
}
"""


# Output stage: exposure, tone mapping, sRGB encode, exactly as three.js's tonemapping_pars_fragment and
# colorspace_pars_fragment (which encode with the exponent 0.41666, not 1/2.4).
OUTPUT_GLSL = """
uniform float u_exposure;
vec3 aces_fit(vec3 v) {
    vec3 a = v * (v + 0.0245786) - 0.000090537;
    vec3 b = v * (0.983729 * v + 0.4329510) + 0.238081;
    return a / b;
}
vec3 tone_map(vec3 color) {
#if TONE == 1
    const mat3 ACES_IN = mat3(vec3(0.59719, 0.07600, 0.02840), vec3(0.35458, 0.90834, 0.13383),
                              vec3(0.04823, 0.01566, 0.83777));
    const mat3 ACES_OUT = mat3(vec3(1.60475, -0.10208, -0.00327), vec3(-0.53108, 1.10813, -0.07276),
                               vec3(-0.07367, -0.00605, 1.07602));
    color *= u_exposure / 0.6;
    return clamp(ACES_OUT * aces_fit(ACES_IN * color), 0.0, 1.0);
#elif TONE == 2
    const float START = 0.8 - 0.04;
    const float DESATURATION = 0.15;
    color *= u_exposure;
    float x = min(color.r, min(color.g, color.b));
    float offset = x < 0.08 ? x - 6.25 * x * x : 0.04;
    color -= offset;
    float peak = max(color.r, max(color.g, color.b));
    if (peak < START) return color;
    float d = 1.0 - START;
    float new_peak = 1.0 - d * d / (peak + d - START);
    color *= new_peak / peak;
    float g = 1.0 - 1.0 / (DESATURATION * (peak - new_peak) + 1.0);
    return mix(color, vec3(new_peak), g);
#else
    // three.js ignores exposure without tone mapping; here it still scales (1 by default: the same picture).
    return color * u_exposure;
#endif
}
vec3 srgb_encode(vec3 c) {
    c = clamp(c, 0.0, 1.0);
    return mix(pow(c, vec3(0.41666)) * 1.055 - vec3(0.055), c * 12.92, vec3(lessThanEqual(c, vec3(0.0031308))));
}
"""

# What both stages need to light a surface: the per-pixel path runs it in the fragment shader, the per-vertex path
# (VERTEX_LIT) in the vertex shader.
_LIGHTING_GLSL = """
#define PI 3.141592653589793
#define RECIPROCAL_PI 0.3183098861837907
uniform vec3 u_camera_position;
uniform vec4 u_base_color;
uniform float u_metallic;
uniform float u_roughness;
uniform sampler2D u_dfg;
#if ENV
uniform sampler2D u_env;
uniform float u_env_lod;  // levels - 1: mip level i is the environment prefiltered for roughness i / u_env_lod
uniform mat4 u_sh_r;
uniform mat4 u_sh_g;
uniform mat4 u_sh_b;
uniform float u_env_intensity;
#endif
#if NUM_LIGHTS > 0
uniform vec4 u_light_position[NUM_LIGHTS];  // xyz world, w: 0 directional, 1 point, 2 spot
uniform vec4 u_light_direction[NUM_LIGHTS];  // xyz towards the light (directional and spot), w: range (0 = none)
uniform vec3 u_light_color[NUM_LIGHTS];  // colour × intensity
uniform vec2 u_light_cone[NUM_LIGHTS];  // cos(outer), cos(inner)
#endif

vec3 srgb_decode(vec3 c) {
    return mix(pow(c * 0.9478672986 + vec3(0.0521327014), vec3(2.4)), c * 0.0773993808,
               vec3(lessThanEqual(c, vec3(0.04045))));
}

float fresnel_weight(float dotVH) {
    return exp2((-5.55473 * dotVH - 6.98316) * dotVH);
}

vec3 F_Schlick(vec3 f0, float f90, float dotVH) {
    float fresnel = fresnel_weight(dotVH);
    return f0 * (1.0 - fresnel) + f90 * fresnel;
}

// GGX distribution × Smith height-correlated visibility: the specular BRDF without its Fresnel factor.
float GGX_VD(vec3 l, vec3 v, vec3 n, vec3 h, float roughness) {
    float alpha = roughness * roughness;
    float dotNL = clamp(dot(n, l), 0.0, 1.0);
    float dotNV = clamp(dot(n, v), 0.0, 1.0);
    float dotNH = clamp(dot(n, h), 0.0, 1.0);
    float a2 = alpha * alpha;
    float gv = dotNL * sqrt(a2 + (1.0 - a2) * dotNV * dotNV);
    float gl = dotNV * sqrt(a2 + (1.0 - a2) * dotNL * dotNL);
    float V = 0.5 / max(gv + gl, 1e-6);
    float denom = dotNH * dotNH * (a2 - 1.0) + 1.0;
    float D = RECIPROCAL_PI * a2 / (denom * denom);
    return V * D;
}

vec3 BRDF_GGX(vec3 l, vec3 v, vec3 n, vec3 f0, float roughness) {
    vec3 h = normalize(l + v);
    float dotVH = clamp(dot(v, h), 0.0, 1.0);
    return F_Schlick(f0, 1.0, dotVH) * GGX_VD(l, v, n, h, roughness);
}

void multiscatter(vec2 fab, vec3 f0, inout vec3 single_scatter, inout vec3 multi_scatter) {
    vec3 FssEss = f0 * fab.x + fab.y;
    float Ems = 1.0 - (fab.x + fab.y);
    vec3 Favg = f0 + (1.0 - f0) * 0.047619;
    vec3 Fms = FssEss * Favg / (1.0 - Ems * Favg);
    single_scatter += FssEss;
    multi_scatter += Fms * Ems;
}

#if NUM_LIGHTS > 0
// Light i's radiance arriving at `world` (falloff, range window and spot cone as three.js), and the unit vector
// towards it.
vec3 light_radiance(int i, vec3 world, out vec3 l) {
    l = u_light_direction[i].xyz;
    vec3 radiance = u_light_color[i];
    if (u_light_position[i].w > 0.5) {
        vec3 to_light = u_light_position[i].xyz - world;
        float d = length(to_light);
        l = to_light / d;
        float falloff = 1.0 / max(d * d, 0.01);
        float range = u_light_direction[i].w;
        if (range > 0.0) {
            float r = d / range;
            float window = clamp(1.0 - r * r * r * r, 0.0, 1.0);
            falloff *= window * window;
        }
        radiance *= falloff;
        if (u_light_position[i].w > 1.5) {
            radiance *= smoothstep(u_light_cone[i].x, u_light_cone[i].y, dot(l, u_light_direction[i].xyz));
        }
    }
    return radiance;
}
#endif

#if ENV
// three.js's equirectUv: the same equirect file lights both renderers the same way (environment.py's convention).
vec3 env_radiance(vec3 dir, float roughness) {
    vec2 uv = vec2(atan(dir.z, dir.x) * (0.5 * RECIPROCAL_PI) + 0.5,
                   asin(clamp(dir.y, -1.0, 1.0)) * RECIPROCAL_PI + 0.5);
    uv.y = 1.0 - uv.y;  // row 0 of the equirect (the zenith) was uploaded first, at t = 0
    // Explicit LOD: implicit derivatives jump at the u = 0/1 seam.
    return textureLod(u_env, uv, roughness * u_env_lod).rgb;
}

vec3 sh_irradiance(vec3 n) {
    // E(n) from environment.py's 9 SH coefficients (three.js's SH order), folded on the CPU into one quadratic
    // form per channel (Ramamoorthi & Hanrahan 2001, eq. 12): E_c(n) = (n, 1)ᵀ M_c (n, 1): 3 × 20 operations.
    vec4 h = vec4(n, 1.0);
    return vec3(dot(h, u_sh_r * h), dot(h, u_sh_g * h), dot(h, u_sh_b * h));
}
#endif
"""

# Per-vertex lighting of dense meshes (VERTEX_LIT). The outgoing light is split as albedo * P + Q, P and Q computed
# per vertex and interpolated, so the fragment shader only multiplies in the albedo of the pixel (base colour factor
# × vertex colour × base colour texture, tint) and adds emissive. The same BRDF as the per-pixel path: with
# f0 = mix(0.04, albedo, metallic), the split-sum specular R·(f0·A + B) and each light's F = f0·(1-w) + w are linear
# in f0 and so in the albedo; the diffuse energy factors (1 - F) already use the dielectric F (as three.js does).
# Two factors are not linear in the albedo: the multiple-scattering terms (the lights' energy compensation
# 1 + f0·(1/(A+B) - 1) and the environment's Favg·Ems / (1 - Ems·Favg)); they are evaluated at the albedo known per
# vertex (base colour factor × vertex colour, tint), i.e. exactly unless a base colour texture varies it, where they
# are off by a few per cent at most. The "geometry roughness" (normal derivatives) has no per-vertex value and is
# left out: on the small triangles this path serves it is what the interpolation itself smooths.
_VERTEX_LIGHT = """
#if VERTEX_LIT
in float in_curvature;  // radians per model unit (batches.vertex_curvature)
uniform float u_pixel_angle;  // a pixel's size in world units per unit of distance
out vec3 v_p;
out vec3 v_q;
  #if DOUBLE_SIDED
out vec3 v_p_back;
out vec3 v_q_back;
  #endif
// turn_px: how far the normal turns across one pixel seen face-on; foreshortened by 1 / dotNV along one screen
// axis, it stands in for three.js's geometry roughness max(|dFdx(n)|, |dFdy(n)|).
void vertex_light(vec3 n, vec3 v, vec3 world, vec3 albedo, float turn_px, out vec3 P, out vec3 Q) {
  #if METAL == 2
    float metallic = u_metallic;
  #else
    const float metallic = float(METAL);
  #endif
    float dotNV = clamp(dot(n, v), 0.0, 1.0);
    float roughness = min(max(u_roughness, 0.045) + min(turn_px / max(dotNV, 1e-3), 1.0), 1.0);
    vec2 dfg = textureLod(u_dfg, vec2(roughness, dotNV), 0.0).rg;
    float c0 = 0.04 * (1.0 - metallic);  // f0 = c0 + metallic * albedo
    P = vec3(0.0);
    Q = vec3(0.0);
  #if NUM_LIGHTS > 0
    vec3 ms_compensation = 1.0 + (c0 + metallic * albedo) * (1.0 / (dfg.x + dfg.y) - 1.0);
    for (int i = 0; i < NUM_LIGHTS; ++i) {
        vec3 l;
        vec3 irradiance = light_radiance(i, world, l);
        irradiance *= clamp(dot(n, l), 0.0, 1.0);
        vec3 h = normalize(l + v);
        float w = fresnel_weight(clamp(dot(v, h), 0.0, 1.0));
        vec3 specular = irradiance * GGX_VD(l, v, n, h, roughness) * ms_compensation;
        P += specular * (metallic * (1.0 - w)) + irradiance * (RECIPROCAL_PI * (1.0 - metallic) * (0.96 - 0.96 * w));
        Q += specular * (c0 * (1.0 - w) + w);
    }
  #endif
  #if ENV
    vec3 cosine_irradiance = max(sh_irradiance(n), 0.0) * (u_env_intensity * RECIPROCAL_PI);
    vec3 r = reflect(-v, n);
    float r2 = roughness * roughness;
    r = normalize(mix(r, n, r2 * r2));
    vec3 radiance = env_radiance(r, roughness) * u_env_intensity;
    vec3 ss_d = vec3(0.0), ms_d = vec3(0.0);
    multiscatter(dfg, vec3(0.04), ss_d, ms_d);
    float Ems = 1.0 - (dfg.x + dfg.y);
    vec3 Favg = albedo + (1.0 - albedo) * 0.047619;
    vec3 G = Favg * Ems / (1.0 - Ems * Favg);  // the metal's multiple scattering per unit of its single scattering
    P += metallic * dfg.x * (radiance + G * cosine_irradiance)
         + (1.0 - metallic) * (1.0 - ss_d - ms_d) * cosine_irradiance;
    Q += radiance * ((1.0 - metallic) * ss_d + metallic * dfg.y)
         + ((1.0 - metallic) * ms_d + metallic * dfg.y * G) * cosine_irradiance;
  #endif
}
#endif
"""

SCENE_VERTEX = (
    _NODE_FETCH
    + _CLIP
    + """
#if VERTEX_LIT
"""
    + _LIGHTING_GLSL
    + """
#endif
#if VERTEX_FINAL
"""
    + OUTPUT_GLSL
    + """
uniform vec3 u_emissive;
out vec4 v_front;  // display values and alpha of the side the normal points to
  #if DOUBLE_SIDED
out vec3 v_back;
  #endif
#endif
"""
    + _VERTEX_LIGHT
    + """
uniform mat4 u_view_proj;
uniform mat4 u_model;
uniform mat3 u_normal_matrix;

in vec3 in_position;
in vec3 in_normal;
in vec4 in_color;
out vec3 v_world;
out vec3 v_normal;
out vec4 v_color;
#if UV0
in vec2 in_uv0;
out vec2 v_uv0;
#endif
#if UV1
in vec2 in_uv1;
out vec2 v_uv1;
#endif
#if TANGENTS
in vec4 in_tangent;
out vec4 v_tangent;
#endif
#if NODE_STATE
flat out vec4 v_tint;
#endif

void main() {
    vec3 p = in_position;
    vec3 n = in_normal;
#if TANGENTS
    vec3 t = in_tangent.xyz;
#endif
#if NODE_STATE
    int node = int(in_node);
    if (!node_kept(node_texel(node, 3))) {
        gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // beyond the far plane: the whole triangle is clipped away
        clip_world(vec3(0.0));
        return;
    }
    vec4 r0 = node_texel(node, 0), r1 = node_texel(node, 1), r2 = node_texel(node, 2);
    mat3 lin = mat3(r0.x, r1.x, r2.x, r0.y, r1.y, r2.y, r0.z, r1.z, r2.z);
    p = lin * p + vec3(r0.w, r1.w, r2.w);
    // det · inverse-transpose from cross products (cheaper than inverse()); the sign keeps mirrored parts right.
    mat3 cof = mat3(cross(lin[1], lin[2]), cross(lin[2], lin[0]), cross(lin[0], lin[1]));
    n = cof * n * (dot(lin[0], cof[0]) < 0.0 ? -1.0 : 1.0);
  #if TANGENTS
    t = lin * t;
  #endif
    v_tint = node_texel(node, 4);
#endif
    vec4 world = u_model * vec4(p, 1.0);
#if VERTEX_LIT
    vec3 albedo = u_base_color.rgb * in_color.rgb;
  #if NODE_STATE
    albedo = mix(albedo, srgb_decode(v_tint.rgb), v_tint.a);
  #endif
    vec3 normal = normalize(u_normal_matrix * n) * (BACK != 0 ? -1.0 : 1.0);
    vec3 to_eye = u_camera_position - world.xyz;
    vec3 view = normalize(to_eye);
    // The curvature is per model unit: scale it by the placement's (and a moved part's) mean scale.
    float scale = abs(determinant(mat3(u_model)));
  #if NODE_STATE
    scale *= abs(determinant(lin));
  #endif
    float turn_px = in_curvature * length(to_eye) * u_pixel_angle / max(pow(scale, 1.0 / 3.0), 1e-12);
    vertex_light(normal, view, world.xyz, albedo, turn_px, v_p, v_q);
  #if DOUBLE_SIDED
    vertex_light(-normal, view, world.xyz, albedo, turn_px, v_p_back, v_q_back);
  #endif
#endif
#if VERTEX_FINAL
    v_front = vec4(srgb_encode(tone_map(albedo * v_p + v_q + u_emissive)), u_base_color.a * in_color.a);
  #if DOUBLE_SIDED
    v_back = srgb_encode(tone_map(albedo * v_p_back + v_q_back + u_emissive));
  #endif
#endif
    clip_world(world.xyz);
    gl_Position = u_view_proj * world;
    v_world = world.xyz;
    v_normal = u_normal_matrix * n;
    v_color = in_color;
#if UV0
    v_uv0 = in_uv0;
#endif
#if UV1
    v_uv1 = in_uv1;
#endif
#if TANGENTS
    v_tangent = vec4(mat3(u_model) * t, in_tangent.w);
#endif
}
"""
)

SCENE_FRAGMENT = (
    OUTPUT_GLSL
    + _LIGHTING_GLSL
    + """
uniform float u_normal_scale;
uniform float u_occlusion_strength;
uniform vec3 u_emissive;  // factor × emissive_strength
uniform float u_alpha_cutoff;
uniform float u_alpha_scale;  // SEE_THROUGH_ALPHA in the see-through pass, else 1
uniform mat3 u_uv_transform[5];
uniform ivec2 u_wrap[5];  // per texture slot, per axis: 0 repeat, 1 clamp, 2 mirror (CUSTOM_WRAP only)
uniform sampler2D u_tex[5];

in vec3 v_world;
in vec3 v_normal;
in vec4 v_color;
#if VERTEX_LIT
in vec3 v_p;
in vec3 v_q;
  #if DOUBLE_SIDED
in vec3 v_p_back;
in vec3 v_q_back;
  #endif
#endif
#if UV0
in vec2 v_uv0;
#endif
#if UV1
in vec2 v_uv1;
#endif
#if TANGENTS
in vec4 v_tangent;
#endif
#if NODE_STATE
flat in vec4 v_tint;
#endif
out vec4 f_color;

vec2 uv_set(int set) {
#if UV1 && UV0
    return set == 1 ? v_uv1 : v_uv0;
#elif UV1
    return v_uv1;
#elif UV0
    return v_uv0;
#else
    return vec2(0.0);
#endif
}

float wrap1(float t, int mode) {
    if (mode == 1) return t;  // clamp: the texture itself clamps to the edge
    if (mode == 2) return 1.0 - abs(mod(t, 2.0) - 1.0);
    return fract(t);
}

// moderngl textures know only repeat on/off (no mirrored repeat), so with any non-repeat wrap in the material
// the textures clamp and the shader wraps; textureGrad with the unwrapped coordinates' derivatives keeps the
// mip level right across the seams that fract() and mirroring make.
vec4 sample_tex(sampler2D tex, int slot, int set) {
    vec2 uv = (u_uv_transform[slot] * vec3(uv_set(set), 1.0)).xy;
#if CUSTOM_WRAP
    vec2 wrapped = vec2(wrap1(uv.x, u_wrap[slot].x), wrap1(uv.y, u_wrap[slot].y));
    return textureGrad(tex, wrapped, dFdx(uv), dFdy(uv));
#else
    return texture(tex, uv);
#endif
}
// GLSL 3.30 indexes sampler arrays with constant expressions only: pick the sampler where the slot is a literal.
#define sample_slot(slot, set) sample_tex(u_tex[slot], slot, set)

#if NORMAL_TEX && !TANGENTS
// three.js's getTangentFrame (screen-space derivatives), for meshes that came without tangents. Clip-space y is
// flipped in this renderer (readback comes out top row first), which flips the frame: the minus signs undo it.
mat3 tangent_frame(vec3 eye_pos, vec3 n, vec2 uv) {
    vec3 q0 = dFdx(eye_pos), q1 = dFdy(eye_pos);
    vec2 st0 = dFdx(uv), st1 = dFdy(uv);
    vec3 q1perp = cross(q1, n), q0perp = cross(n, q0);
    vec3 T = q1perp * st0.x + q0perp * st1.x;
    vec3 B = q1perp * st0.y + q0perp * st1.y;
    float det = max(dot(T, T), dot(B, B));
    float scale = det == 0.0 ? 0.0 : inversesqrt(det);
    return mat3(-T * scale, -B * scale, n);
}
#endif

vec3 emissive_light() {
    vec3 emissive = u_emissive;
#if EMISSIVE_TEX
    emissive *= sample_slot(4, TC_EMISSIVE).rgb;
#endif
    return emissive;
}

#if VERTEX_LIT
vec3 shade(vec4 base) {
  #if DOUBLE_SIDED
    return base.rgb * (gl_FrontFacing ? v_p : v_p_back) + (gl_FrontFacing ? v_q : v_q_back) + emissive_light();
  #else
    return base.rgb * v_p + v_q + emissive_light();
  #endif
}
#else
vec3 shade(vec4 base) {
    vec3 n = normalize(v_normal);
#if DOUBLE_SIDED
    float face = gl_FrontFacing ? 1.0 : -1.0;
    n *= face;
#endif
    vec3 geometry_n = n;
#if NORMAL_TEX
  #if TANGENTS
    vec3 t = normalize(v_tangent.xyz);
    mat3 tbn = mat3(t, normalize(cross(normalize(v_normal), t) * v_tangent.w), n);
    vec2 normal_scale = vec2(u_normal_scale);
  #else
    mat3 tbn = tangent_frame(v_world - u_camera_position, n, uv_set(TC_NORMAL));
    vec2 normal_scale = vec2(u_normal_scale, -u_normal_scale);  // as three's GLTFLoader does without tangents
  #endif
  #if DOUBLE_SIDED
    tbn[0] *= face;
    tbn[1] *= face;
  #endif
    vec3 map_n = sample_slot(2, TC_NORMAL).xyz * 2.0 - 1.0;
    map_n.xy *= normal_scale;
    n = normalize(tbn * map_n);
#endif
    vec3 v = normalize(u_camera_position - v_world);
#if METAL == 2
    float metallic = u_metallic;
#else
    const float metallic = float(METAL);
#endif
    float roughness = u_roughness;
#if MR_TEX
    vec4 mr = sample_slot(1, TC_MR);
    roughness *= mr.g;
    metallic *= mr.b;
#endif
    vec3 dxy = max(abs(dFdx(geometry_n)), abs(dFdy(geometry_n)));
    roughness = min(max(roughness, 0.045) + max(max(dxy.x, dxy.y), dxy.z), 1.0);
    vec3 diffuse_contribution = base.rgb * (1.0 - metallic);
    vec3 f0_dielectric = vec3(0.04);
    vec3 f0 = mix(f0_dielectric, base.rgb, metallic);
    float dotNV = clamp(dot(n, v), 0.0, 1.0);
    vec2 dfg = texture(u_dfg, vec2(roughness, dotNV)).rg;
    vec3 color = vec3(0.0);
#if NUM_LIGHTS > 0
    vec3 ms_compensation = 1.0 + f0 * (1.0 / (dfg.x + dfg.y) - 1.0);
    for (int i = 0; i < NUM_LIGHTS; ++i) {
        vec3 l;
        vec3 radiance = light_radiance(i, v_world, l);
        vec3 irradiance = clamp(dot(n, l), 0.0, 1.0) * radiance;
        color += irradiance * BRDF_GGX(l, v, n, f0, roughness) * ms_compensation;
        float dotVH = clamp(dot(v, normalize(l + v)), 0.0, 1.0);
        color += irradiance * (RECIPROCAL_PI * diffuse_contribution) * (1.0 - F_Schlick(f0_dielectric, 1.0, dotVH));
    }
#endif
#if ENV
    vec3 irradiance = max(sh_irradiance(n), 0.0) * u_env_intensity;
    vec3 r = reflect(-v, n);
    float r2 = roughness * roughness;
    r = normalize(mix(r, n, r2 * r2));
    vec3 radiance = env_radiance(r, roughness) * u_env_intensity;
    vec3 ss_d = vec3(0.0), ms_d = vec3(0.0), ss_m = vec3(0.0), ms_m = vec3(0.0);
    multiscatter(dfg, f0_dielectric, ss_d, ms_d);
    multiscatter(dfg, base.rgb, ss_m, ms_m);
    vec3 cosine_irradiance = irradiance * RECIPROCAL_PI;
    vec3 indirect_specular = radiance * mix(ss_d, ss_m, metallic) + mix(ms_d, ms_m, metallic) * cosine_irradiance;
    vec3 indirect_diffuse = diffuse_contribution * (1.0 - ss_d - ms_d) * cosine_irradiance;
  #if OCC_TEX
    float ao = (sample_slot(3, TC_OCCLUSION).r - 1.0) * u_occlusion_strength + 1.0;
    indirect_diffuse *= ao;
    indirect_specular *= clamp(pow(dotNV + ao, exp2(-16.0 * roughness - 1.0)) - 1.0 + ao, 0.0, 1.0);
  #endif
    color += indirect_diffuse + indirect_specular;
#endif
    return color + emissive_light();
}
#endif

#if VERTEX_FINAL
in vec4 v_front;
  #if DOUBLE_SIDED
in vec3 v_back;
  #endif
#endif

void main() {
#if VERTEX_FINAL
    vec4 front = v_front;
  #if DOUBLE_SIDED
    if (!gl_FrontFacing) front.rgb = v_back;
  #endif
  #if ALPHA == 1
    if (front.a < u_alpha_cutoff) discard;
  #endif
  #if ALPHA != 2
    front.a = 1.0;
  #endif
    f_color = vec4(front.rgb, front.a * u_alpha_scale);
    return;
#endif
    vec4 base = u_base_color * v_color;
#if BASE_TEX
    base *= sample_slot(0, TC_BASE);
#endif
#if NODE_STATE
    // A tint is given in display (sRGB) values and blends over the base colour.
    base.rgb = mix(base.rgb, srgb_decode(v_tint.rgb), v_tint.a);
#endif
#if ALPHA == 1
    if (base.a < u_alpha_cutoff) discard;
#endif
#if ALPHA != 2
    base.a = 1.0;
#endif
#if LIT && POINTS
    // Point clouds often come without normals: show their colours unlit rather than black.
    vec3 color = dot(v_normal, v_normal) > 1e-12 ? shade(base) : base.rgb;
#elif LIT
    vec3 color = shade(base);
#else
    vec3 color = base.rgb;
#endif
    // Encoded here, as three.js does when it draws to the canvas: blending (BLEND, see-through) then happens on
    // display values, as it does there.
    f_color = vec4(srgb_encode(tone_map(color)), base.a * u_alpha_scale);
}
"""
)

# The selected outline: the selected parts' hull pushed out along screen-space normals, in one flat colour.
OUTLINE_VERTEX = (
    _NODE_FETCH
    + _CLIP
    + """
uniform mat4 u_view_proj;
uniform mat4 u_model;
uniform mat3 u_normal_matrix;
uniform vec2 u_viewport;
uniform float u_outline_px;
in vec3 in_position;
in vec3 in_normal;

void main() {
    vec3 p = in_position;
    vec3 n = in_normal;
    int node = int(in_node);
    if (!node_kept(node_texel(node, 3))) {
        gl_Position = vec4(0.0, 0.0, 2.0, 1.0);
        clip_world(vec3(0.0));
        return;
    }
    vec4 r0 = node_texel(node, 0), r1 = node_texel(node, 1), r2 = node_texel(node, 2);
    mat3 lin = mat3(r0.x, r1.x, r2.x, r0.y, r1.y, r2.y, r0.z, r1.z, r2.z);
    p = lin * p + vec3(r0.w, r1.w, r2.w);
    n = mat3(cross(lin[1], lin[2]), cross(lin[2], lin[0]), cross(lin[0], lin[1])) * n;
    vec4 world = u_model * vec4(p, 1.0);
    clip_world(world.xyz);
    vec4 clip = u_view_proj * world;
    // Push the hull out by a fixed number of pixels, whatever the distance.
    vec2 sn = (u_view_proj * vec4(u_normal_matrix * n, 0.0)).xy;
    float len = length(sn);
    if (len > 1e-8) {
        clip.xy += (sn / len) * (2.0 * u_outline_px / u_viewport) * clip.w;
    }
    gl_Position = clip;
}
"""
)

OUTLINE_FRAGMENT = """
out vec4 f_color;
void main() {
    f_color = vec4(1.0, 0.62, 0.05, 1.0);
}
"""

FULL_SCREEN_VERTEX = f"""
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


def checker_fragment(cell_px: int) -> str:
    return f"""
#version 330
out vec4 f_color;
void main() {{
    ivec2 cell = ivec2(gl_FragCoord.xy) / {cell_px};
    float on = float((cell.x + cell.y) & 1);
    f_color = vec4(mix(vec3(0.30), vec3(0.62), on), 1.0);
}}
"""


# FXAA in its compact form (Lottes' FXAA 3.11 "PC console" variant as ported by Matt DesLauriers, MIT): five taps
# find the edge, two or four more blur along it. On display-encoded colour, as FXAA expects.
FXAA_FRAGMENT = """
#version 330
uniform sampler2D u_frame;
uniform vec2 u_texel;
out vec4 f_color;
void main() {
    vec2 uv = gl_FragCoord.xy * u_texel;
    // The five edge-finding taps land on texel centres: texelFetch skips the filtering (measured ~5 ms of the pass's
    // ~25 on llvmpipe at 720p), clamped to the frame as the texture's clamp-to-edge would.
    ivec2 p = ivec2(gl_FragCoord.xy);
    ivec2 last = textureSize(u_frame, 0) - 1;
    vec3 rgbM = texelFetch(u_frame, p, 0).rgb;
    vec3 rgbNW = texelFetch(u_frame, clamp(p + ivec2(-1, -1), ivec2(0), last), 0).rgb;
    vec3 rgbNE = texelFetch(u_frame, clamp(p + ivec2(1, -1), ivec2(0), last), 0).rgb;
    vec3 rgbSW = texelFetch(u_frame, clamp(p + ivec2(-1, 1), ivec2(0), last), 0).rgb;
    vec3 rgbSE = texelFetch(u_frame, clamp(p + ivec2(1, 1), ivec2(0), last), 0).rgb;
    const vec3 luma = vec3(0.299, 0.587, 0.114);
    float lumaNW = dot(rgbNW, luma), lumaNE = dot(rgbNE, luma), lumaSW = dot(rgbSW, luma);
    float lumaSE = dot(rgbSE, luma), lumaM = dot(rgbM, luma);
    float lumaMin = min(lumaM, min(min(lumaNW, lumaNE), min(lumaSW, lumaSE)));
    float lumaMax = max(lumaM, max(max(lumaNW, lumaNE), max(lumaSW, lumaSE)));
    if (lumaMax - lumaMin < max(0.0312, lumaMax * 0.125)) {  // no edge here: most pixels stop after five taps
        f_color = vec4(rgbM, 1.0);
        return;
    }
    vec2 dir = vec2(-((lumaNW + lumaNE) - (lumaSW + lumaSE)), (lumaNW + lumaSW) - (lumaNE + lumaSE));
    float dirReduce = max((lumaNW + lumaNE + lumaSW + lumaSE) * (0.25 / 8.0), 1.0 / 128.0);
    float rcpDirMin = 1.0 / (min(abs(dir.x), abs(dir.y)) + dirReduce);
    dir = clamp(dir * rcpDirMin, vec2(-8.0), vec2(8.0)) * u_texel;
    vec3 rgbA = 0.5 * (texture(u_frame, uv + dir * (1.0 / 3.0 - 0.5)).rgb
                     + texture(u_frame, uv + dir * (2.0 / 3.0 - 0.5)).rgb);
    vec3 rgbB = rgbA * 0.5 + 0.25 * (texture(u_frame, uv - dir * 0.5).rgb + texture(u_frame, uv + dir * 0.5).rgb);
    float lumaB = dot(rgbB, luma);
    f_color = vec4((lumaB < lumaMin || lumaB > lumaMax) ? rgbA : rgbB, 1.0);
}
"""
