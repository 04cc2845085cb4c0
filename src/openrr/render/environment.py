"""Image-based lighting: an environment's radiance, its prefiltered GGX specular chain, its SH irradiance, the BRDF LUT.

numpy (and OpenCV/Pillow for decoding) only: no GL, nothing fetched. Computed once per environment, in the render
process, then uploaded by the renderer.

Direction convention (the same as three.js, so that one equirect file lights both renderers alike)
----------------------------------------------------------------------------------------------
A world direction ``d`` (unit, +y up, right-handed) maps to three.js's ``equirectUv``::

    u = atan(d.z, d.x) / (2π) + 0.5          # longitude: u = 0.5 is +x, u = 0.75 is +z, u = 0.25 is -z
    v = asin(clamp(d.y, -1, 1)) / π + 0.5    # latitude:  v = 1 is +y (up), v = 0 is -y

Every equirect array here (``radiance``, each ``specular`` level, what ``decode_environment_image`` returns) is
``(H, 2H, 3)`` float32, linear, with **row 0 at the top (v = 1, +y)** and column 0 at u = 0: texel ``[i, j]`` is
centred on ``u = (j + 0.5) / W``, ``v = 1 - (i + 0.5) / H``. That is how an image file is stored and how three.js
reads it (its loaders set ``flipY = true``, so the file's first row lands at v = 1).

What the renderer's GLSL must do with these arrays::

    vec2 equirectUv(vec3 d) {  // three.js's formula; d unit, world space
        return vec2(atan(d.z, d.x) * 0.15915494 + 0.5, asin(clamp(d.y, -1.0, 1.0)) * 0.31830989 + 0.5);
    }
    // Arrays uploaded as they are (row 0 first, so row 0 sits at t = 0): t = 1 - v.
    vec2 uv = equirectUv(R);
    vec3 prefiltered = textureLod(u_specular, vec2(uv.x, 1.0 - uv.y), roughness * float(LEVELS - 1)).rgb;

- Upload each array with its rows in array order and sample at ``vec2(u, 1.0 - v)`` as above; or upload
  ``array[::-1]`` and sample at ``vec2(u, v)``. Either way, array row 0 is +y.
- Wrap S = REPEAT (longitude is periodic), wrap T = CLAMP_TO_EDGE, linear filtering. Values are ≤ 65504, so
  RGB16F holds them.
- ``specular`` levels halve exactly (``(H, 2H)``, ``(H/2, H)``, …), so they can be mip levels 0…n-1 of one texture
  (``GL_TEXTURE_MAX_LEVEL = n - 1``, trilinear). Level i is GGX-prefiltered for roughness ``i / (n - 1)`` (glTF
  perceptual roughness; α = roughness²), so sample with ``textureLod(tex, uv, roughness * (n - 1))``; were
  ``SPECULAR_MAPPING`` switched to three.js's, the LOD would be ``(n - 1) * r * (2 - r)`` (``roughness_to_lod``). Use
  ``textureLod`` (explicit LOD): implicit derivatives jump at the u = 0/1 seam and would pick a blurry level there.
- Reflection: ``R = reflect(-V, N)`` in world space, specular = prefiltered(R) · (F0 · lut.x + F90 · lut.y), with
  ``lut = texture(brdf_lut, vec2(NdotV, roughness))`` (see ``brdf_lut``).
- Diffuse: ``albedo / π · E(N)``, E evaluated from ``irradiance_sh`` (see ``evaluate_irradiance``: the formula is
  written there for the shader to copy). Equivalently, and what three.js does: the roughness-1 level *is* E/π
  exactly (GGX's D is constant at α = 1, so its lobe is the cosine), so ``albedo · prefiltered(N, roughness 1)``
  gives the same diffuse without SH ringing, at the cost of one more texture fetch. On the built-in studio each
  is within 0.033 (linear) of the exact cosine convolution.
- The environment's intensity (``set_environment``) scales diffuse and specular alike.
- Cube maps are turned into an equirect here (``environment_from_cube``); the shader only ever sees equirects.

The prefilter is an exact convolution, not a Monte Carlo estimate: along one row of an equirect every texel sees
the same lobe rotated about +y, so GGX filtering is a circular convolution in longitude, done per (output row,
source row) pair with an FFT. No samples means no noise and no fireflies (which importance sampling fights with
filtered-importance mip selection), and in numpy it is also the faster of the two: the whole chain of the
working-size environment takes about 0.35 s on two cores.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
import scipy.fft  # type: ignore[import-untyped]

from openrr.model.colour import srgb_to_linear
from openrr.model.mesh import Float32Array

RADIANCE_HEIGHT = 256
"""Working resolution: every environment's radiance is (256, 512, 3)."""
SPECULAR_LEVELS = 6
"""(256, 512) … (8, 16): with the linear mapping, roughness 0, 0.2, 0.4, 0.6, 0.8, 1."""
RoughnessMapping = Literal["linear", "three"]
SPECULAR_MAPPING: RoughnessMapping = "linear"
"""Which roughness each specular level holds, and so the LOD the shader samples:

- ``"linear"`` (the contract): level i ↔ roughness i/(n-1); ``lod = roughness * (n - 1)``.
- ``"three"``: three.js r187's PMREM (``PMREMGenerator.lodToRoughness``, Filament's too): level i ↔
  1 - sqrt(1 - i/(n-1)); ``lod = (n - 1) * r * (2 - r)`` (its ``roughnessToMip``). Levels crowd where lobes change
  fastest: blending two levels for a roughness between them is 3-13× closer to the exact lobe below roughness 0.5
  (measured on the built-in studio), a little further above 0.75; and it is what three.js interpolates.
"""
MAX_EQUIRECT_WIDTH = 8192
MAX_EQUIRECT_HEIGHT = 4096
MAX_CUBE_FACE = 4096
MAX_ENVIRONMENT_BYTES = 256 * 1024 * 1024
"""Largest encoded image accepted (an 8192×4096 RGBE file without run-length coding is 128 MiB)."""
MAX_RADIANCE = 65504.0
"""Radiance is clamped to half-float's largest value, so the renderer may upload float16."""
CUBE_WORK_FACE = RADIANCE_HEIGHT
"""Cube faces are area-averaged down to at most this before resampling: a 256-texel face has about the texel size
of the 1024×512 equirect it is first sampled into (0.35°), which is then area-averaged to the working size."""

SH_BASIS_CONSTANTS = (0.282095, 0.488603, 0.488603, 0.488603, 1.092548, 1.092548, 0.315392, 1.092548, 0.546274)
"""Real SH basis constants in three.js's SphericalHarmonics3 order (see ``evaluate_irradiance``)."""
_SH_COSINE_LOBE = (math.pi, *(2.0 * math.pi / 3.0,) * 3, *(math.pi / 4.0,) * 5)
"""Ramamoorthi–Hanrahan: the clamped-cosine convolution's factor per SH band (π, 2π/3, π/4)."""


@dataclass(frozen=True, eq=False)
class Environment:
    """One environment, ready to upload. Arrays are read-only (the default one is shared through a cache)."""

    name: str
    radiance: Float32Array
    """(H, 2H, 3) linear equirect, row 0 = +y; the module docstring gives the mapping."""
    specular: list[Float32Array]
    """GGX-prefiltered equirects, level i for roughness ``level_roughness(i, len)`` (i/(len-1)), each half the
    previous; level 0 = radiance."""
    irradiance_sh: Float32Array
    """(9, 3): E(n) = Σ irradiance_sh[k] · Y_k(n) (``evaluate_irradiance``); diffuse = albedo / π · E(n)."""


# --- directions and sampling ---------------------------------------------------------------------------------


def _row_latitudes(h: int) -> Float32Array:
    """Latitude of each row's centre, row 0 at the top (+π/2 side)."""
    return (np.pi / 2 - np.pi * (np.arange(h) + 0.5) / h).astype(np.float32)


def _column_longitudes(w: int) -> Float32Array:
    """atan2(z, x) of each column's centre: u = φ / 2π + 0.5."""
    return (2 * np.pi * ((np.arange(w) + 0.5) / w - 0.5)).astype(np.float32)


def equirect_directions(h: int, w: int) -> Float32Array:
    """(h, w, 3) unit world directions of the texel centres of an equirect (row 0 = +y)."""
    lat = _row_latitudes(h)[:, None]
    lon = _column_longitudes(w)[None, :]
    return np.stack(
        np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.sin(lat), np.cos(lat) * np.sin(lon)), axis=-1
    ).astype(np.float32)


def direction_to_equirect_uv(dirs: npt.ArrayLike) -> Float32Array:
    """three.js ``equirectUv``: (..., 3) unit directions → (..., 2) (u, v), v = 1 at +y (= array row 0)."""
    d = np.asarray(dirs, dtype=np.float64)
    u = np.arctan2(d[..., 2], d[..., 0]) / (2 * np.pi) + 0.5
    v = np.arcsin(np.clip(d[..., 1], -1.0, 1.0)) / np.pi + 0.5
    return np.stack([u, v], axis=-1).astype(np.float32)


def sample_equirect(image: Float32Array, dirs: npt.ArrayLike) -> Float32Array:
    """Bilinear lookup of an (H, W, C) equirect at (..., 3) directions, as the shader does (u wraps, v clamps)."""
    h, w = image.shape[:2]
    uv = direction_to_equirect_uv(dirs).astype(np.float64)
    x = uv[..., 0] * w - 0.5
    y = (1.0 - uv[..., 1]) * h - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    xa = x0.astype(np.int64) % w
    xb = (xa + 1) % w
    ya = np.clip(y0.astype(np.int64), 0, h - 1)
    yb = np.clip(y0.astype(np.int64) + 1, 0, h - 1)
    top = image[ya, xa] * (1 - fx) + image[ya, xb] * fx
    bottom = image[yb, xa] * (1 - fx) + image[yb, xb] * fx
    return np.asarray(top * (1 - fy) + bottom * fy, dtype=np.float32)


def _resize(image: Float32Array, h: int, w: int) -> Float32Array:
    """Area average when shrinking (every source texel counts once), bilinear when growing."""
    if image.shape[:2] == (h, w):
        return np.ascontiguousarray(image, dtype=np.float32)
    shrinking = image.shape[0] >= h and image.shape[1] >= w
    out = cv2.resize(
        np.ascontiguousarray(image, dtype=np.float32),
        (w, h),
        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
    )
    return np.asarray(out, dtype=np.float32).reshape(h, w, -1)


def _solid_angles(h: int, w: int) -> Float32Array:
    """(h,) solid angle of one texel in each row: exact band area / w (the band rows sum to 4π)."""
    edges = np.pi / 2 - np.pi * np.arange(h + 1) / h
    return ((np.sin(edges[:-1]) - np.sin(edges[1:])) * (2 * np.pi / w)).astype(np.float32)


# --- irradiance as spherical harmonics ---------------------------------------------------------------------


def _sh_basis(dirs: Float32Array) -> Float32Array:
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    c = SH_BASIS_CONSTANTS
    return np.stack(
        [
            np.full_like(x, c[0]),
            c[1] * y,
            c[2] * z,
            c[3] * x,
            c[4] * x * y,
            c[5] * y * z,
            c[6] * (3 * z * z - 1),
            c[7] * x * z,
            c[8] * (x * x - y * y),
        ],
        axis=-1,
    ).astype(np.float32)


def irradiance_sh(radiance: Float32Array) -> Float32Array:
    """(9, 3) SH coefficients of the irradiance E(n) = ∫ L(l) max(n·l, 0) dl of an equirect radiance map."""
    h, w = radiance.shape[:2]
    basis = _sh_basis(equirect_directions(h, w))  # (h, w, 9)
    weighted = radiance * _solid_angles(h, w)[:, None, None]
    radiance_sh = np.einsum("hwk,hwc->kc", basis, weighted, dtype=np.float64)
    return np.asarray(radiance_sh * np.asarray(_SH_COSINE_LOBE)[:, None], dtype=np.float32)


def evaluate_irradiance(sh: Float32Array, normals: npt.ArrayLike) -> Float32Array:
    """E(n) for (..., 3) unit normals → (..., 3). The shader evaluates exactly this (three.js's SH order)::

        E = sh[0] * 0.282095
          + sh[1] * 0.488603 * n.y + sh[2] * 0.488603 * n.z + sh[3] * 0.488603 * n.x
          + sh[4] * 1.092548 * n.x * n.y + sh[5] * 1.092548 * n.y * n.z
          + sh[6] * 0.315392 * (3.0 * n.z * n.z - 1.0)
          + sh[7] * 1.092548 * n.x * n.z + sh[8] * 0.546274 * (n.x * n.x - n.y * n.y);
        E = max(E, 0.0);   // 9 terms can ring slightly negative opposite a strong light

    and then diffuse = albedo / π · E (so a uniform sky of radiance L gives albedo · L).
    """
    basis = _sh_basis(np.asarray(normals, dtype=np.float32))
    return np.maximum(basis @ np.asarray(sh, dtype=np.float32), 0.0).astype(np.float32)


# --- specular prefilter -------------------------------------------------------------------------------------


def _ggx_prefilter(source: Float32Array, roughness: float, out_h: int) -> Float32Array:
    """GGX-prefiltered equirect (out_h, 2·out_h, 3) of ``source`` for one roughness (Karis split sum, N = V = R).

    The lobe around an output direction n weights a source direction l by D(h)·max(n·l, 0) (GGX's pdf of l times
    n·l, as Karis's importance-sampled sum does), h = normalize(n + l). Along a row every output texel sees the same
    lobe rotated about +y, so each (output row, source row) pair is a circular convolution in longitude: done with
    an FFT on the source grid, then pairs of columns averaged down to the output width.
    """
    src_h, src_w = source.shape[:2]
    alpha2 = max(roughness, 1e-3) ** 4  # α = roughness²
    # D(h) ∝ 1 / (1 + (α² - 1)·(n·h)²)², (n·h)² = (1 + n·l) / 2: the denominator is c0 + c1·(n·l).
    c1 = np.float32((alpha2 - 1.0) * 0.5)
    c0 = np.float32(1.0) + c1
    out_lat = _row_latitudes(out_h)
    src_lat = _row_latitudes(src_h)
    half = src_w // 2 + 1  # the kernel is even in the longitude offset: offsets 0 … π suffice
    cos_dphi = np.cos(2 * np.pi * np.arange(half) / src_w).astype(np.float32)
    spectrum = np.fft.rfft(source.astype(np.float64), axis=1)  # (src_h, half, 3)
    # Real and imaginary parts side by side, frequency first: one real batched matmul per chunk.
    spectrum_parts = np.concatenate([spectrum.real, spectrum.imag], axis=2).transpose(1, 0, 2).astype(np.float32)
    weights = _solid_angles(src_h, src_w)[None, :, None]
    out = np.empty((out_h, src_w, 3), dtype=np.float64)
    rows_per_chunk = max(1, (1 << 21) // (src_h * half))
    for start in range(0, out_h, rows_per_chunk):
        lat = out_lat[start : start + rows_per_chunk]
        a = np.cos(lat)[:, None] * np.cos(src_lat)[None, :]
        b = np.sin(lat)[:, None] * np.sin(src_lat)[None, :]
        n_dot_l = a[..., None] * cos_dphi + b[..., None]  # (rows, src_h, half)
        denom = c0 + c1 * n_dot_l
        kernel = np.maximum(n_dot_l, 0.0) / (denom * denom) * weights  # α²/π dropped: normalised below
        # The DCT-I of the half kernel is the (real) DFT of the whole even kernel; its f = 0 term is the kernel's
        # sum over the full circle, so dividing by it makes every output row's lobe integrate to 1.
        kernel_hat = scipy.fft.dct(kernel, type=1, axis=2)  # (rows, src_h, half)
        kernel_hat /= kernel_hat[:, :, :1].sum(axis=1, keepdims=True)
        conv = np.matmul(kernel_hat.transpose(2, 0, 1), spectrum_parts)  # (half, rows, 6)
        out[start : start + len(lat)] = np.fft.irfft(conv[..., :3] + 1j * conv[..., 3:], n=src_w, axis=0).transpose(
            1, 0, 2
        )
    out_w = 2 * out_h
    factor = src_w // out_w
    out = out.reshape(out_h, out_w, factor, 3).mean(axis=2)  # output texel = the mean over its source columns
    return np.asarray(np.maximum(out, 0.0), dtype=np.float32)


def level_roughness(level: int, levels: int, mapping: RoughnessMapping | None = None) -> float:
    """The roughness that specular level ``level`` of ``levels`` is prefiltered for (``SPECULAR_MAPPING`` unless
    ``mapping`` says otherwise)."""
    t = level / (levels - 1)
    return t if (mapping or SPECULAR_MAPPING) == "linear" else 1.0 - math.sqrt(1.0 - t)


def roughness_to_lod(
    roughness: npt.ArrayLike, levels: int, mapping: RoughnessMapping | None = None
) -> npt.NDArray[np.float64]:
    """The (fractional) level to sample for a roughness: the inverse of ``level_roughness``, as the shader does it."""
    r = np.clip(np.asarray(roughness, dtype=np.float64), 0.0, 1.0)
    return np.asarray((levels - 1) * (r if (mapping or SPECULAR_MAPPING) == "linear" else r * (2.0 - r)))


def _specular_chain(radiance: Float32Array, levels: int = SPECULAR_LEVELS) -> list[Float32Array]:
    h = radiance.shape[0]
    chain = [radiance]
    for level in range(1, levels):
        out_h = h >> level
        # Source at twice the output resolution: level 1's lobe (roughness 0.2, or 0.11 with three.js's mapping)
        # still spans several source texels there.
        src_h = min(h, 2 * out_h)
        source = _resize(radiance, src_h, 2 * src_h)
        chain.append(_ggx_prefilter(source, level_roughness(level, levels), out_h))
    return chain


# --- building environments ----------------------------------------------------------------------------------


def _readonly(array: Float32Array) -> Float32Array:
    out = np.ascontiguousarray(array, dtype=np.float32)
    out.flags.writeable = False
    return out


def _clean(linear: Float32Array, name: str) -> Float32Array:
    image = np.asarray(linear, dtype=np.float32)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"environment {name!r}: expected an (H, W, 3) image, got shape {image.shape}")
    image = image[:, :, :3]
    # NaN (broken files) → 0; negative → 0; huge → half-float's max, so an upload as float16 stays finite.
    return np.clip(np.nan_to_num(image, nan=0.0, posinf=MAX_RADIANCE, neginf=0.0), 0.0, MAX_RADIANCE)


def environment_from_equirect(linear: Float32Array, name: str) -> Environment:
    """An environment from a linear (H, 2H, 3) equirect (row 0 = +y), resampled to the working resolution."""
    image = _clean(linear, name)
    h, w = image.shape[:2]
    if w != 2 * h or h < 2:
        raise ValueError(f"environment {name!r}: an equirect must be twice as wide as high, got {w}x{h}")
    radiance = _resize(image, RADIANCE_HEIGHT, 2 * RADIANCE_HEIGHT)
    chain = _specular_chain(radiance)
    return Environment(
        name=name,
        radiance=_readonly(radiance),
        specular=[_readonly(level) for level in chain],
        irradiance_sh=_readonly(irradiance_sh(radiance)),
    )


CUBE_FACE_NAMES = ("+x", "-x", "+y", "-y", "+z", "-z")


def cube_face_directions(size: int, face: int, *, flip_x: bool = True) -> Float32Array:
    """(size, size, 3) world directions of a cube face's texel centres, row 0 first as the image is stored.

    GL cube-map conventions (OpenGL spec, "Cube Map Texture Selection"): faces +x,-x,+y,-y,+z,-z; on each face
    s runs along the image's columns and t along its rows (row 0 at t = 0, no flip, as three.js's CubeTexture
    uploads them), with (sc, tc) for a lookup vector r:
    +x: (-r.z, -r.y)  -x: (+r.z, -r.y)  +y: (+r.x, +r.z)  -y: (+r.x, -r.z)  +z: (+r.x, -r.y)  -z: (-r.x, -r.y).
    ``flip_x`` (the default) is three.js's behaviour: it looks a CubeTexture up at (-d.x, d.y, d.z) (its
    ``flipEnvMap = -1``), so the world direction d of a texel is its GL lookup vector with x negated. The same six
    images then light openrr and three.js alike. ``flip_x=False`` is the plain GL/glTF mapping.
    """
    t = (np.arange(size) + 0.5) / size * 2 - 1
    sc, tc = np.meshgrid(t, t)  # sc along columns, tc along rows
    one = np.ones_like(sc)
    r = {
        0: (one, -tc, -sc),
        1: (-one, -tc, sc),
        2: (sc, one, tc),
        3: (sc, -one, -tc),
        4: (sc, -tc, one),
        5: (-sc, -tc, -one),
    }[face]
    d = np.stack(r, axis=-1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    if flip_x:
        d[..., 0] *= -1
    return d.astype(np.float32)


def _sample_cube(faces: Sequence[Float32Array], dirs: Float32Array, flip_x: bool) -> Float32Array:
    """Bilinear (edge-clamped per face) lookup of GL cube faces at world directions."""
    size = faces[0].shape[0]
    r = dirs.astype(np.float64).copy()
    if flip_x:
        r[..., 0] *= -1
    ax = np.abs(r)
    major = np.argmax(ax, axis=-1)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    face = np.where(
        major == 0, np.where(x > 0, 0, 1), np.where(major == 1, np.where(y > 0, 2, 3), np.where(z > 0, 4, 5))
    )
    sc = np.choose(face, [-z, z, x, x, x, -x])
    tc = np.choose(face, [-y, -y, z, -z, -y, -y])
    ma = np.take_along_axis(ax, major[..., None], axis=-1)[..., 0]
    col = ((sc / ma + 1) * 0.5) * size - 0.5
    row = ((tc / ma + 1) * 0.5) * size - 0.5
    c0 = np.floor(col)
    r0 = np.floor(row)
    fc = (col - c0)[..., None]
    fr = (row - r0)[..., None]
    ca = np.clip(c0.astype(np.int64), 0, size - 1)
    cb = np.clip(c0.astype(np.int64) + 1, 0, size - 1)
    ra = np.clip(r0.astype(np.int64), 0, size - 1)
    rb = np.clip(r0.astype(np.int64) + 1, 0, size - 1)
    stack = np.stack(faces)
    top = stack[face, ra, ca] * (1 - fc) + stack[face, ra, cb] * fc
    bottom = stack[face, rb, ca] * (1 - fc) + stack[face, rb, cb] * fc
    return np.asarray(top * (1 - fr) + bottom * fr, dtype=np.float32)


def cube_to_equirect(
    faces: Sequence[Float32Array], height: int, *, name: str = "cube", flip_x: bool = True
) -> Float32Array:
    """Resample six square faces (+x,-x,+y,-y,+z,-z, see ``cube_face_directions``) to a (height, 2·height) equirect."""
    if len(faces) != 6:
        raise ValueError(f"cube map {name!r}: needs 6 faces (+x, -x, +y, -y, +z, -z), got {len(faces)}")
    cleaned = [_clean(f, f"{name} {label}") for f, label in zip(faces, CUBE_FACE_NAMES, strict=True)]
    size = cleaned[0].shape[0]
    for face, label in zip(cleaned, CUBE_FACE_NAMES, strict=True):
        if face.shape[:2] != (size, size):
            raise ValueError(
                f"cube map {name!r}: faces must be square and all the same size; face {label} is "
                f"{face.shape[1]}x{face.shape[0]}, face +x is {size}x{size}"
            )
    work = min(size, CUBE_WORK_FACE)
    cleaned = [_resize(f, work, work) for f in cleaned]
    # Sample at about one cube texel per equirect texel at the equator, then area-average to the target.
    fine_h = max(height, 2 * work)
    fine = _sample_cube(cleaned, equirect_directions(fine_h, 2 * fine_h), flip_x)
    return _resize(fine, height, 2 * height)


def environment_from_cube(faces: Sequence[Float32Array], name: str, *, flip_x: bool = True) -> Environment:
    """An environment from six linear square faces in GL order +x,-x,+y,-y,+z,-z (``cube_face_directions``)."""
    return environment_from_equirect(cube_to_equirect(faces, RADIANCE_HEIGHT, name=name, flip_x=flip_x), name)


# --- decoding files -----------------------------------------------------------------------------------------

_SRGB_TO_LINEAR_8 = srgb_to_linear(np.arange(256) / 255.0)  # 8-bit samples decode through a table
_HDR_RESOLUTION = re.compile(rb"^([-+])Y (\d+) ([-+])X (\d+)$")


def _hdr_dimensions(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from a Radiance header, read before anything is decoded."""
    if not (data.startswith(b"#?RADIANCE") or data.startswith(b"#?RGBE")):
        raise ValueError(f"environment {name!r}: not a Radiance .hdr file (no #?RADIANCE header)")
    header_end = data.find(b"\n\n", 0, 65536)
    if header_end < 0:
        raise ValueError(f"environment {name!r}: .hdr header does not end within 64 KiB")
    line_end = data.find(b"\n", header_end + 2, header_end + 2 + 64)
    match = _HDR_RESOLUTION.match(data[header_end + 2 : line_end if line_end >= 0 else None].strip())
    if match is None:
        raise ValueError(f"environment {name!r}: .hdr resolution line is missing or malformed")
    if match.group(1) != b"-" or match.group(3) != b"+":
        raise ValueError(
            f"environment {name!r}: .hdr orientation {match.group(0).decode()!r} is not supported (only '-Y H +X W')"
        )
    return int(match.group(4)), int(match.group(2))


def _check_dimensions(width: int, height: int, name: str, cube_face: bool) -> None:
    if cube_face:
        if width != height:
            raise ValueError(f"cube face {name!r}: must be square, got {width}x{height}")
        if not 1 <= width <= MAX_CUBE_FACE:
            raise ValueError(
                f"cube face {name!r}: {width}x{height} exceeds the limit of {MAX_CUBE_FACE}x{MAX_CUBE_FACE}"
            )
        return
    if width != 2 * height:
        raise ValueError(
            f"environment {name!r}: an equirectangular image must be exactly twice as wide as high (2:1), "
            f"got {width}x{height}"
        )
    if width > MAX_EQUIRECT_WIDTH or height > MAX_EQUIRECT_HEIGHT or height < 2:
        raise ValueError(
            f"environment {name!r}: {width}x{height} is outside the limits (2x1 to "
            f"{MAX_EQUIRECT_WIDTH}x{MAX_EQUIRECT_HEIGHT})"
        )


def _decode_hdr(data: bytes, name: str) -> npt.NDArray[np.float32]:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.float32:
        raise ValueError(f"environment {name!r}: the .hdr file could not be decoded")
    return np.asarray(bgr, dtype=np.float32)  # BGR: _linear_rgb turns it round, strip by strip


def _decode_ldr(data: bytes, name: str, cube_face: bool) -> npt.NDArray[np.generic]:
    """PNG/JPEG: Pillow reads the header (size checked before any pixel is decoded), OpenCV decodes, because it
    keeps a 16-bit PNG's 16 bits where Pillow cuts RGB to 8."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limits apply, below
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ValueError(f"environment {name!r}: the image exceeds the size limits ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"environment {name!r}: the image could not be decoded ({exc})") from exc
    _check_dimensions(width, height, name, cube_face)
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.shape[:2] != (height, width):
        raise ValueError(f"environment {name!r}: the image could not be decoded")
    if decoded.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"environment {name!r}: unsupported sample type {decoded.dtype}")
    return np.asarray(decoded)  # BGR(A) or grey, sRGB-encoded: _linear_rgb decodes it, strip by strip


def decode_environment_image(data: bytes, name: str, *, cube_face: bool = False) -> Float32Array:
    """Decode an environment image to linear float32 (H, W, 3), row 0 = top.

    ``.hdr`` (Radiance RGBE) is linear already; ``.png``/``.jpg``/``.jpeg`` are sRGB and decoded with the exact
    sRGB EOTF. An equirect must be 2:1 and at most 8192×4096; it comes back area-averaged to the working size
    (512×256) when larger. With ``cube_face=True`` the image must be square (at most 4096) and comes back at most
    256×256. Dimensions are read from the header before decoding; anything wrong is a ValueError naming ``name``.
    """
    if len(data) > MAX_ENVIRONMENT_BYTES:
        raise ValueError(
            f"environment {name!r}: {len(data)} bytes exceeds the limit of {MAX_ENVIRONMENT_BYTES // (1024 * 1024)} MiB"
        )
    suffix = Path(name.split("?", 1)[0]).suffix.lower()
    image: npt.NDArray[np.generic]
    if suffix == ".hdr":
        _check_dimensions(*_hdr_dimensions(data, name), name, cube_face)
        image = _decode_hdr(data, name)
    elif suffix in (".png", ".jpg", ".jpeg"):
        image = _decode_ldr(data, name, cube_face)
    else:
        raise ValueError(
            f"environment {name!r}: unsupported file type {suffix or '(none)'!r}; "
            "use .hdr (Radiance RGBE), .png or .jpg"
        )
    height = min(image.shape[0], CUBE_WORK_FACE if cube_face else RADIANCE_HEIGHT)
    width = height if cube_face else 2 * height
    return _clean(_reduced_linear(image, height, width), name)


def _linear_bgr(raw: npt.NDArray[np.generic]) -> Float32Array:
    """Decoded samples → linear float32 in the decoder's BGR order: .hdr floats as they are; 8/16-bit BGR(A) or
    grey through the sRGB EOTF. (Channels are turned to RGB only at the end, on the small image.)"""
    pixels = raw if raw.ndim == 3 else raw[:, :, None]
    bgr = np.repeat(pixels[:, :, :1], 3, axis=2) if pixels.shape[2] in (1, 2) else pixels[:, :, :3]
    if bgr.dtype == np.uint8:
        return np.asarray(_SRGB_TO_LINEAR_8[bgr], dtype=np.float32)
    if bgr.dtype == np.uint16:
        return srgb_to_linear(bgr.astype(np.float32) / 65535.0)
    return np.ascontiguousarray(bgr, dtype=np.float32)


def _reduced_linear(raw: npt.NDArray[np.generic], height: int, width: int) -> Float32Array:
    """Linear RGB area-averaged to (height, width), in strips of rows, so that an 8192×4096 file never exists as
    a whole float copy (the average must be taken in linear light, after the EOTF)."""
    src_h = raw.shape[0]
    if src_h <= height:
        return np.ascontiguousarray(_resize(_linear_bgr(raw), height, width)[:, :, ::-1])
    # Exact area weights of each source row in each output row (what INTER_AREA does per axis).
    edges = np.arange(height + 1) * (src_h / height)
    rows = np.arange(src_h)
    overlap = np.clip(np.minimum(edges[1:, None], rows + 1) - np.maximum(edges[:-1, None], rows), 0.0, None)
    vertical = (overlap / (src_h / height)).astype(np.float32)  # (height, src_h)
    out = np.zeros((height, width * 3), dtype=np.float32)
    strip = 256
    for start in range(0, src_h, strip):
        part = _linear_bgr(raw[start : start + strip])
        narrow = cv2.resize(part, (width, part.shape[0]), interpolation=cv2.INTER_AREA).reshape(part.shape[0], -1)
        out += vertical[:, start : start + strip] @ narrow
    return np.ascontiguousarray(out.reshape(height, width, 3)[:, :, ::-1])


def encode_hdr(linear: Float32Array) -> bytes:
    """A linear (H, W, 3) image as Radiance .hdr bytes (row 0 = the file's first row = top)."""
    ok, buffer = cv2.imencode(".hdr", np.ascontiguousarray(np.asarray(linear, dtype=np.float32)[:, :, 2::-1]))
    if not ok:
        raise ValueError("could not encode the image as .hdr")
    return bytes(buffer)


def write_hdr(path: str | Path, linear: Float32Array) -> None:
    """Write a linear (H, W, 3) image as a Radiance .hdr file three.js's HDRLoader/RGBELoader reads identically."""
    Path(path).write_bytes(encode_hdr(linear))


# --- the built-in environment -------------------------------------------------------------------------------


def _soft_disc(
    dirs: Float32Array, centre: tuple[float, float, float], radius_deg: float, soft_deg: float
) -> Float32Array:
    """1 inside a cap of ``radius_deg`` around ``centre``, easing to 0 over ``soft_deg`` (smoothstep)."""
    c = np.asarray(centre, dtype=np.float32)
    c /= np.linalg.norm(c)
    angle = np.degrees(np.arccos(np.clip(dirs @ c, -1.0, 1.0)))
    t = np.clip((radius_deg + soft_deg - angle) / soft_deg, 0.0, 1.0)
    return np.asarray(t * t * (3 - 2 * t), dtype=np.float32)


def _direction(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Azimuth measured from +z towards +x (three.js's default camera looks from +z), elevation from the horizon."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))


@functools.lru_cache(maxsize=1)
def default_environment_equirect() -> Float32Array:
    """The built-in studio: a soft bright sky, three broad soft boxes, a darker floor (linear, (256, 512, 3)).

    Procedural (no download) and deterministic. Rendered 2×2 supersampled, then area-averaged, so the soft boxes'
    edges do not alias. Neutral grey, so that it tints no material. Its values are exactly representable in RGBE,
    so ``write_hdr`` stores it losslessly: three.js, loading that file, sees the very environment openrr uses.
    """
    h = RADIANCE_HEIGHT
    dirs = equirect_directions(2 * h, 4 * h)
    y = dirs[..., 1]
    sky = 0.25 + 0.1 * np.clip(y, 0.0, 1.0)  # brighter towards the zenith
    floor = 0.16 + 0.06 * np.clip(-y, 0.0, 1.0) ** 0.5  # the floor lit by the room, a little brighter below
    horizon = np.clip(y / 0.04 + 0.5, 0.0, 1.0)  # a soft horizon line, visible in metals
    base = floor + (sky - floor) * (horizon * horizon * (3 - 2 * horizon))
    key = _soft_disc(dirs, _direction(35.0, 30.0), 16.0, 6.0) * 4.5
    fill = _soft_disc(dirs, _direction(-70.0, 25.0), 13.0, 6.0) * 2.0
    top = _soft_disc(dirs, _direction(160.0, 70.0), 20.0, 10.0) * 0.8
    luminance = base + key + fill + top
    image = np.repeat(luminance[:, :, None], 3, axis=2).astype(np.float32)
    quantised = decode_environment_image(encode_hdr(_resize(image, h, 2 * h)), "default.hdr")  # RGBE round trip
    return _readonly(quantised)


@functools.lru_cache(maxsize=1)
def default_environment() -> Environment:
    """The built-in environment (cached: computed once per process)."""
    return environment_from_equirect(default_environment_equirect(), "default")


# --- the split-sum BRDF LUT ---------------------------------------------------------------------------------


def _hammersley(count: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The Hammersley point set: (i + 0.5)/count and the base-2 radical inverse of i (32-bit reversal)."""
    radical = np.array([int(f"{i:032b}"[::-1], 2) for i in range(count)], dtype=np.float64) / 2.0**32
    return (np.arange(count) + 0.5) / count, radical


@functools.lru_cache(maxsize=4)
def brdf_lut(size: int = 64) -> Float32Array:
    """(size, size, 2) split-sum DFG terms: ``lut[j, i] = (scale, bias)`` at NdotV = (i+0.5)/size (columns),
    roughness = (j+0.5)/size (rows); specular = prefiltered · (F0 · scale + F90 · bias).

    GGX with glTF's height-correlated Smith visibility (glTF 2.0 appendix B: V = G2 / (4·NdotL·NdotV) with
    G2 = 1 / (1 + Λ(v) + Λ(l))), Schlick Fresnel, α = roughness². Upload rows in order (row 0 at t = 0) and sample
    ``texture(lut, vec2(NdotV, roughness))``, clamp to edge, linear.

    Sampled with GGX's distribution of *visible* normals (Heitz 2018) on a Hammersley set: the estimate of
    f·NdotL / pdf is then G2 / G1(v), bounded by 1, where classic half-vector sampling carries a 1/NdotH tail that
    left 0.03 of error at grazing angles with 4× the samples. 512 samples: within 0.002 of a 16k-sample table, and
    within 0.016 (0.001 on average) of three.js r187's own precomputed table (DFGLUTData.js, read at
    ``vec2(roughness, NdotV)``: the transpose of this layout).
    """
    e1, e2 = _hammersley(512)
    n_dot_v = ((np.arange(size) + 0.5) / size).astype(np.float32)[None, :, None]
    alpha = (((np.arange(size) + 0.5) / size) ** 2).astype(np.float32)[:, None, None]
    a2 = alpha * alpha
    v_x = np.sqrt(1.0 - n_dot_v * n_dot_v)  # the view lies in the x-z plane, the normal is +z
    # Heitz: the view in the hemisphere stretched to α = 1, its frame T1 = +y, T2 = (-c, 0, a).
    a, c = alpha * v_x, n_dot_v
    length = np.sqrt(a * a + c * c)
    a, c = a / length, c / length
    radius = np.sqrt(e1).astype(np.float32)
    phi = (2 * np.pi * e2).astype(np.float32)
    t1 = radius * np.cos(phi)
    t2 = radius * np.sin(phi)
    s = 0.5 * (1.0 + c)
    t2 = (1.0 - s) * np.sqrt(1.0 - t1 * t1) + s * t2
    w = np.sqrt(np.maximum(0.0, 1.0 - t1 * t1 - t2 * t2))
    h_x = alpha * (w * a - c * t2)  # unstretch; h_y = α·t1 only enters through the normalisation
    h_y = alpha * t1
    h_z = np.maximum(0.0, a * t2 + w * c)
    norm = np.sqrt(h_x * h_x + h_y * h_y + h_z * h_z)
    h_x, h_z = h_x / norm, h_z / norm
    v_dot_h = np.clip(v_x * h_x + n_dot_v * h_z, 0.0, 1.0)
    n_dot_l = 2.0 * v_dot_h * h_z - n_dot_v
    lambda_v = 0.5 * (np.sqrt(1.0 + a2 * (1.0 - n_dot_v * n_dot_v) / (n_dot_v * n_dot_v)) - 1.0)
    cos_l = np.maximum(n_dot_l, 1e-7)
    lambda_l = 0.5 * (np.sqrt(1.0 + a2 * (1.0 - cos_l * cos_l) / (cos_l * cos_l)) - 1.0)
    weight = np.where(n_dot_l > 0.0, (1.0 + lambda_v) / (1.0 + lambda_v + lambda_l), 0.0)  # G2 / G1(v)
    fc = (1.0 - v_dot_h) ** 5
    scale = np.mean((1.0 - fc) * weight, axis=2)
    bias = np.mean(fc * weight, axis=2)
    return _readonly(np.stack([scale, bias], axis=-1).astype(np.float32))
