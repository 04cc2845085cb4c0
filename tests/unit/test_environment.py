"""render/environment.py: the equirect convention (three.js's), the IBL precompute against direct integration, the
BRDF LUT against quadrature, decoding and its limits, cube maps, the built-in environment."""

from __future__ import annotations

import io
import itertools
import math
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from openrr.render import environment as env_mod
from openrr.render.environment import (
    brdf_lut,
    cube_face_directions,
    cube_to_equirect,
    decode_environment_image,
    default_environment,
    default_environment_equirect,
    direction_to_equirect_uv,
    encode_hdr,
    environment_from_cube,
    environment_from_equirect,
    equirect_directions,
    evaluate_irradiance,
    level_roughness,
    roughness_to_lod,
    sample_equirect,
    write_hdr,
)


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True))


def _random_normals(count: int, seed: int = 1) -> np.ndarray:
    return _unit(np.random.default_rng(seed).normal(size=(count, 3)))


# --- convention -------------------------------------------------------------------------------------------------


def test_uv_is_three_js_equirect_uv() -> None:
    # three.js: u = atan(d.z, d.x) / 2π + 0.5, v = asin(d.y) / π + 0.5, written out for the axes.
    dirs = np.array([[1, 0, 0], [0, 0, 1], [0, 0, -1], [0, 1, 0], [0, -1, 0]], dtype=np.float32)
    uv = direction_to_equirect_uv(dirs)
    np.testing.assert_allclose(uv[:3], [[0.5, 0.5], [0.75, 0.5], [0.25, 0.5]], atol=1e-6)
    np.testing.assert_allclose(uv[3:, 1], [1.0, 0.0], atol=1e-6)


def test_texel_centres_and_row_zero_is_up() -> None:
    h, w = 8, 16
    dirs = equirect_directions(h, w)
    uv = direction_to_equirect_uv(dirs)
    j, i = np.meshgrid(np.arange(w), np.arange(h))
    np.testing.assert_allclose(uv[..., 0], (j + 0.5) / w, atol=1e-5)
    np.testing.assert_allclose(uv[..., 1], 1.0 - (i + 0.5) / h, atol=1e-5)
    assert dirs[0, 0, 1] > 0.9 and dirs[-1, 0, 1] < -0.9  # row 0 is +y


def test_bright_patch_is_found_in_its_direction() -> None:
    # A patch placed by three.js's formula at +x is what direction (1,0,0) samples, and what lights a normal there.
    h, w = 64, 128
    image = np.full((h, w, 3), 0.1, dtype=np.float32)
    image[28:36, 60:68] = 20.0  # around u = 0.5, v = 0.5: +x
    assert sample_equirect(image, np.array([1.0, 0.0, 0.0]))[0] == pytest.approx(20.0)
    for other in ([-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]):
        assert sample_equirect(image, np.array(other))[0] == pytest.approx(0.1)
    env = environment_from_equirect(image, "patch")
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1], [0, 1, 0], [0, -1, 0]], dtype=np.float32)
    irradiance = evaluate_irradiance(env.irradiance_sh, axes)[:, 0]
    assert np.argmax(irradiance) == 0
    for level in env.specular[1:]:
        assert np.argmax(sample_equirect(level, axes)[:, 0]) == 0


# --- precompute -----------------------------------------------------------------------------------------------


def test_uniform_environment() -> None:
    radiance = 1.7
    env = environment_from_equirect(np.full((32, 64, 3), radiance, dtype=np.float32), "uniform")
    # E(n) = ∫ L cos = π L for every n (9 SH terms represent a constant exactly; 1% is float slack).
    irradiance = evaluate_irradiance(env.irradiance_sh, _random_normals(200))
    np.testing.assert_allclose(irradiance, math.pi * radiance, rtol=0.01)
    # A normalised lobe over a constant is that constant, at every roughness.
    for level in env.specular:
        np.testing.assert_allclose(level, radiance, rtol=1e-3)


def test_equirect_input_is_checked_and_cleaned() -> None:
    with pytest.raises(ValueError, match="twice as wide") as raised:
        environment_from_equirect(np.ones((32, 48, 3), dtype=np.float32), "narrow")
    assert "narrow" in str(raised.value)
    broken = np.ones((32, 64, 3), dtype=np.float32)
    broken[3, 5] = (np.nan, np.inf, -4.0)  # a damaged file: no NaN may reach the GPU, nothing negative or infinite
    env = environment_from_equirect(broken, "broken")
    for array in (env.radiance, *env.specular):
        assert np.all(np.isfinite(array)) and array.min() >= 0.0
    assert np.all(np.isfinite(env.irradiance_sh))  # SH coefficients may be negative; E(n) is clamped at 0


def test_linear_environment_irradiance_is_exact() -> None:
    # L(l) = a + b·l.y lies in SH bands 0-1, so 9 terms give E(n) = π a + (2π/3) b n.y exactly.
    dirs = equirect_directions(128, 256)
    image = np.repeat((1.0 + 0.5 * dirs[..., 1:2]), 3, axis=2)
    env = environment_from_equirect(image, "linear")
    normals = _random_normals(100)
    expected = math.pi + (2 * math.pi / 3) * 0.5 * normals[:, 1]
    np.testing.assert_allclose(evaluate_irradiance(env.irradiance_sh, normals)[:, 0], expected, rtol=0.005)


def _direct_prefilter(source: np.ndarray, n: np.ndarray, roughness: float) -> np.ndarray:
    """Σ L(l) D(h) max(n·l,0) dΩ / Σ D(h) max(n·l,0) dΩ over every source texel, vector by vector."""
    h, w = source.shape[:2]
    dirs = equirect_directions(h, w).astype(np.float64)
    edges = np.pi / 2 - np.pi * np.arange(h + 1) / h
    d_omega = ((np.sin(edges[:-1]) - np.sin(edges[1:])) * 2 * np.pi / w)[:, None]
    n_dot_l = dirs @ n
    half = _unit(dirs + n)
    n_dot_h = half @ n
    a2 = roughness**4
    d = a2 / (np.pi * (n_dot_h**2 * (a2 - 1) + 1) ** 2)
    weight = d * np.maximum(n_dot_l, 0.0) * d_omega
    return np.asarray((source * weight[..., None]).sum(axis=(0, 1)) / weight.sum())


@pytest.mark.parametrize(("mapping", "roughness"), [("linear", 0.4), ("three", 1 - math.sqrt(1 - 2 / 5))])
def test_specular_levels_match_direct_integration(
    monkeypatch: pytest.MonkeyPatch, mapping: env_mod.RoughnessMapping, roughness: float
) -> None:
    monkeypatch.setattr(env_mod, "SPECULAR_MAPPING", mapping)
    # Random blocks of 2×2 texels: level 2's 128-row source is then exactly the random map, integrated here directly.
    rng = np.random.default_rng(7)
    small = rng.uniform(0.0, 4.0, size=(128, 256, 3)).astype(np.float32)
    env = environment_from_equirect(np.repeat(np.repeat(small, 2, axis=0), 2, axis=1), "random")
    level = env.specular[2]  # (64, 128)
    for row, col in ((10, 3), (32, 77), (60, 127)):
        # An output texel is the mean over the two source columns it covers.
        lat = math.pi / 2 - math.pi * (row + 0.5) / 64
        values = []
        for source_col in (2 * col, 2 * col + 1):
            lon = 2 * math.pi * ((source_col + 0.5) / 256 - 0.5)
            n = np.array([math.cos(lat) * math.cos(lon), math.sin(lat), math.cos(lat) * math.sin(lon)])
            values.append(_direct_prefilter(small, n, roughness))
        np.testing.assert_allclose(level[row, col], np.mean(values, axis=0), rtol=1e-4)


@pytest.mark.parametrize("mapping", ["linear", "three"])
def test_level_roughness_and_lod_are_inverse(mapping: env_mod.RoughnessMapping) -> None:
    for level in range(6):
        r = level_roughness(level, 6, mapping)
        assert float(roughness_to_lod(r, 6, mapping)) == pytest.approx(level)
    assert level_roughness(0, 6, mapping) == 0.0 and level_roughness(5, 6, mapping) == 1.0
    # three.js r187: roughnessToMip(r) = maxLod * r * (2 - r), lodToRoughness(l) = 1 - sqrt(1 - l / maxLod).
    if mapping == "three":
        assert level_roughness(2, 5, mapping) == pytest.approx(1 - math.sqrt(0.5))


def test_rougher_levels_spread_a_highlight() -> None:
    image = np.full((64, 128, 3), 0.05, dtype=np.float32)
    image[30:34, 62:66] = 100.0
    env = environment_from_equirect(image, "spot")
    peaks = [float(sample_equirect(level, np.array([1.0, 0.0, 0.0]))[0]) for level in env.specular]
    assert all(a > b for a, b in itertools.pairwise(peaks)), peaks


def test_roughest_level_is_the_cosine_convolution() -> None:
    # At roughness 1 GGX's D is constant, so the N=V=R lobe is max(n·l, 0): level -1 = E(n)/π, which the 9-term SH
    # approximates. Each is 0.033 at worst from the exact convolution on the built-in studio (measured: the SH's
    # truncation, the 8×16 level's bilinear lookup), so they agree within 0.05 and much better on average.
    env = default_environment()
    normals = _random_normals(300, seed=3)
    difference = np.abs(
        evaluate_irradiance(env.irradiance_sh, normals) / math.pi - sample_equirect(env.specular[-1], normals)
    )
    assert difference.max() < 0.05 and difference.mean() < 0.015


# --- BRDF LUT ---------------------------------------------------------------------------------------------------


def _dfg_quadrature(n_dot_v: float, roughness: float, steps: int = 1024) -> tuple[float, float]:
    """The split-sum integrals on a (θ, φ) grid over the hemisphere of l, with no importance sampling."""
    theta = (np.arange(steps) + 0.5) / steps * (np.pi / 2)
    phi = (np.arange(2 * steps) + 0.5) / (2 * steps) * (2 * np.pi)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    light = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)
    v = np.array([math.sqrt(1 - n_dot_v**2), 0.0, n_dot_v])
    h = _unit(light + v)
    n_dot_l, n_dot_h, v_dot_h = light[..., 2], h[..., 2], h @ v
    a2 = roughness**4
    d = a2 / (np.pi * (n_dot_h**2 * (a2 - 1) + 1) ** 2)
    vis = 0.5 / (n_dot_l * math.sqrt(n_dot_v**2 * (1 - a2) + a2) + n_dot_v * np.sqrt(n_dot_l**2 * (1 - a2) + a2))
    d_omega = np.sin(t) * (np.pi / 2 / steps) * (2 * np.pi / (2 * steps))
    common = d * vis * n_dot_l * d_omega
    fc = (1 - v_dot_h) ** 5
    return float(((1 - fc) * common).sum()), float((fc * common).sum())


@pytest.mark.parametrize(("col", "row"), [(32, 32), (57, 44), (12, 60), (44, 28), (3, 40), (0, 63), (1, 20)])
def test_brdf_lut_matches_quadrature(col: int, row: int) -> None:
    lut = brdf_lut(64)
    n_dot_v, roughness = (col + 0.5) / 64, (row + 0.5) / 64
    scale, bias = _dfg_quadrature(n_dot_v, roughness)
    # 0.005: the sampled table was measured within 0.002 of a 16k-sample one; the quadrature is exact to 1e-6.
    assert lut[row, col, 0] == pytest.approx(scale, abs=0.005)
    assert lut[row, col, 1] == pytest.approx(bias, abs=0.005)


# three.js r187's own precomputed DFG table (src/renderers/shaders/DFGLUTData.js, 16×16, 4096 samples a texel, half
# floats), read at its texel centres: (NdotV index, roughness index, scale, bias). three.js samples it at
# vec2(roughness, NdotV); the same model (GGX, height-correlated Smith) must give the same numbers.
THREE_DFG_TEXELS = [
    (0, 0, 0.1471, 0.8521),
    (2, 6, 0.6987, 0.1726),
    (4, 12, 0.6909, 0.0215),
    (8, 8, 0.8218, 0.0165),
    (12, 4, 0.9893, 0.0010),
    (14, 14, 0.4270, 0.0002),
    (1, 15, 0.7549, 0.0270),
]


@pytest.mark.parametrize(("nv_index", "roughness_index", "scale", "bias"), THREE_DFG_TEXELS)
def test_brdf_lut_matches_three_js(nv_index: int, roughness_index: int, scale: float, bias: float) -> None:
    import cv2

    lut = np.ascontiguousarray(brdf_lut(64))
    # A 16-texel centre (i + 0.5)/16 falls between two of the 64 texels: bilinear, as the shader reads it.
    x = np.array([[(nv_index + 0.5) / 16 * 64 - 0.5]], dtype=np.float32)
    y = np.array([[(roughness_index + 0.5) / 16 * 64 - 0.5]], dtype=np.float32)
    mine = cv2.remap(lut, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0, 0]
    # 0.02: both tables are sampled (three.js's in half floats) and ours is read bilinearly between texels; the
    # whole 16×16 table agrees within 0.016 at worst, 0.001 on average (measured).
    assert mine == pytest.approx([scale, bias], abs=0.02)


def test_brdf_lut_limits() -> None:
    lut = brdf_lut()
    assert lut.shape == (64, 64, 2) and lut.dtype == np.float32
    assert brdf_lut() is lut  # cached
    # A mirror (lowest roughness row) reflects everything: scale + bias = 1 at every angle; at normal incidence
    # Fresnel is F0 alone, so (1, 0).
    np.testing.assert_allclose(lut[0].sum(axis=-1), 1.0, atol=0.01)
    assert lut[0, -1] == pytest.approx([1.0, 0.0], abs=0.01)
    # α = 1 at normal incidence: ∫ (1/π) · 0.5 / (1 + μ) · μ dΩ = 1 - ln 2 (texel centres are 0.8% off (1, 1)).
    assert lut[-1, -1].sum() == pytest.approx(1 - math.log(2), abs=0.02)
    assert np.all(lut >= 0.0) and np.all(lut.sum(axis=-1) <= 1.01)


# --- decoding ---------------------------------------------------------------------------------------------------


def _png(width: int, height: int, value: int = 188) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (value, value, value)).save(out, format="PNG")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming the size with a few bytes of pixel data: only the header can be read, decoding would fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_png_is_decoded_with_the_srgb_eotf() -> None:
    image = decode_environment_image(_png(64, 32, 188), "sky.png")
    assert image.shape == (32, 64, 3) and image.dtype == np.float32
    assert image[5, 5, 0] == pytest.approx(((188 / 255 + 0.055) / 1.055) ** 2.4, rel=1e-5)
    dark = decode_environment_image(_png(8, 4, 10), "dark.PNG")
    assert dark[0, 0, 0] == pytest.approx(10 / 255 / 12.92, rel=1e-5)  # the linear segment below 0.04045


def test_sixteen_bit_png_keeps_its_precision() -> None:
    import cv2

    values = np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 31
    ok, png = cv2.imencode(".png", np.stack([values, values // 2, values // 3], axis=-1))  # BGR
    assert ok
    image = decode_environment_image(bytes(png), "deep.png")
    v = values[5, 7] / 65535
    assert image[5, 7, 2] == pytest.approx(((v + 0.055) / 1.055) ** 2.4, rel=1e-4)  # red was written last (BGR)


def test_hdr_round_trip_and_downsampling() -> None:
    rng = np.random.default_rng(2)
    linear = rng.uniform(0.0, 50.0, size=(64, 128, 3)).astype(np.float32)
    decoded = decode_environment_image(encode_hdr(linear), "room.hdr")
    # RGBE shares one exponent per texel: each channel is within 1/128 of that texel's largest channel.
    assert np.all(np.abs(decoded - linear) <= linear.max(axis=-1, keepdims=True) / 128)
    big = np.ones((1024, 2048, 3), dtype=np.float32)
    big[:, :1024] = 3.0
    shrunk = decode_environment_image(encode_hdr(big), "big.hdr")
    assert shrunk.shape == (256, 512, 3)  # area-averaged to the working size
    assert shrunk[:, :256].mean() == pytest.approx(3.0, rel=0.01) and shrunk[:, 256:].mean() == pytest.approx(
        1.0, rel=0.01
    )


def test_strip_downsampling_is_the_area_average() -> None:
    # 600 rows → 256 is not a whole factor: the strip-wise reduction must still equal one area average of the whole.
    import cv2

    rng = np.random.default_rng(4)
    linear = rng.uniform(0.0, 8.0, size=(600, 1200, 3)).astype(np.float32)
    reduced = decode_environment_image(encode_hdr(linear), "odd.hdr")
    whole = decode_environment_image(encode_hdr(linear[:200, :400]), "small.hdr")  # no reduction: just decoded
    assert whole.shape == (200, 400, 3)
    full = np.asarray(cv2.imdecode(np.frombuffer(encode_hdr(linear), np.uint8), cv2.IMREAD_UNCHANGED))[:, :, ::-1]
    expected = cv2.resize(np.ascontiguousarray(full), (512, 256), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(reduced, expected, rtol=1e-4, atol=1e-4)


def test_write_hdr_file(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "default.hdr"  # type: ignore[operator]
    write_hdr(path, default_environment_equirect())
    data = path.read_bytes()
    assert data.startswith(b"#?RADIANCE") and b"-Y 256 +X 512" in data
    # Lossless: the file three.js loads holds exactly the built-in environment's radiance.
    np.testing.assert_array_equal(decode_environment_image(data, "default.hdr"), default_environment_equirect())


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (_png(100, 40), "wide.png", "2:1"),
        (_png(64, 64), "square.jpg", "2:1"),
        (_png_header_only(16384, 8192), "huge.png", "limits"),
        (_png_header_only(40000, 20000), "bomb.png", "limits"),  # past Pillow's own bomb limit
        (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 5000 +X 10000\n", "huge.hdr", "limits"),
        (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n+Y 64 +X 128\n", "flipped.hdr", "orientation"),
        (b"not an image", "sky.hdr", "Radiance"),
        (b"not an image", "sky.png", "could not be decoded"),
        (b"GIF89a", "sky.gif", "unsupported file type"),
        (b"#?RADIANCE\n\n-Y 32 +X 64\n\x02\x02", "cut.hdr", "could not be decoded"),
    ],
)
def test_decode_errors_name_the_file(data: bytes, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        decode_environment_image(data, name)
    assert name in str(raised.value)


def test_decode_byte_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env_mod, "MAX_ENVIRONMENT_BYTES", 1000)
    with pytest.raises(ValueError, match="exceeds the limit") as raised:
        decode_environment_image(b"\0" * 1001, "big.hdr")
    assert "big.hdr" in str(raised.value)


def test_cube_faces_decode_square() -> None:
    assert decode_environment_image(_png(16, 16), "px.png", cube_face=True).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="square"):
        decode_environment_image(_png(32, 16), "px.png", cube_face=True)


# --- cube maps --------------------------------------------------------------------------------------------------


def test_cube_face_orientation_is_gl() -> None:
    # OpenGL's cube-map table: the first texel of each face (s, t ≈ 0) for the plain GL mapping.
    # A 2×2 face's first texel centre is at sc = tc = -0.5.
    corner = {
        0: (1, 0.5, 0.5),
        1: (-1, 0.5, -0.5),
        2: (-0.5, 1, -0.5),
        3: (-0.5, -1, 0.5),
        4: (-0.5, 0.5, 1),
        5: (0.5, 0.5, -1),
    }
    for face, expected in corner.items():
        d = cube_face_directions(2, face, flip_x=False)[0, 0]
        np.testing.assert_allclose(d, _unit(np.array(expected, dtype=np.float64)), atol=1e-6)
    # three.js looks a CubeTexture up at (-x, y, z): its +x face's image shows towards world -x.
    assert cube_face_directions(4, 0)[..., 0].max() < 0


def _smooth(d: np.ndarray) -> np.ndarray:
    """An asymmetric smooth field (a mirrored x would show)."""
    value = 1.0 + 0.5 * d[..., 0] + 0.3 * d[..., 1] ** 2 + 0.2 * d[..., 2] + 0.1 * d[..., 0] * d[..., 2]
    return np.repeat(value[..., None], 3, axis=-1).astype(np.float32)


@pytest.mark.parametrize("flip_x", [True, False])
def test_cube_to_equirect_round_trip(flip_x: bool) -> None:
    faces = [_smooth(cube_face_directions(64, face, flip_x=flip_x)) for face in range(6)]
    equirect = cube_to_equirect(faces, 64, flip_x=flip_x)
    np.testing.assert_allclose(equirect, _smooth(equirect_directions(64, 128)), atol=0.01)


def test_environment_from_cube_lights_the_right_side() -> None:
    faces = [np.full((8, 8, 3), 0.2, dtype=np.float32) for _ in range(6)]
    faces[0] = np.full((8, 8, 3), 5.0, dtype=np.float32)  # the +x image
    env = environment_from_cube(faces, "cube")  # three.js's convention: shows at world -x
    e = evaluate_irradiance(env.irradiance_sh, np.array([[-1.0, 0, 0], [1.0, 0, 0]]))[:, 0]
    assert e[0] > 3 * e[1]
    with pytest.raises(ValueError, match="6 faces"):
        environment_from_cube(faces[:5], "cube")
    with pytest.raises(ValueError, match="same size"):
        environment_from_cube([*faces[:5], np.ones((4, 4, 3), dtype=np.float32)], "cube")


# --- the built-in environment --------------------------------------------------------------------------------


def test_default_environment_is_deterministic_bounded_and_cached() -> None:
    env = default_environment()
    assert default_environment() is env
    default_environment_equirect.cache_clear()
    again = default_environment_equirect()
    np.testing.assert_array_equal(again, env.radiance)
    assert env.radiance.shape == (256, 512, 3)
    assert [level.shape for level in env.specular] == [(256 >> i, 512 >> i, 3) for i in range(6)]
    for array in (env.radiance, *env.specular, env.irradiance_sh):
        assert array.dtype == np.float32 and np.all(np.isfinite(array)) and not array.flags.writeable
    assert env.radiance.min() >= 0.1 and env.radiance.max() <= 6.0
    clone = pickle.loads(pickle.dumps(env))  # the renderer gets it through a pipe
    np.testing.assert_array_equal(clone.specular[3], env.specular[3])


def test_default_environment_lights_a_white_sphere_grey_and_shows_in_metals() -> None:
    env = default_environment()
    shade = evaluate_irradiance(env.irradiance_sh, _random_normals(2000, seed=5))[:, 0] / math.pi
    # A white diffuse sphere: mid to bright grey, lit from above, never clipped white, never black.
    assert shade.min() >= 0.15 and shade.max() <= 0.95
    up, down = evaluate_irradiance(env.irradiance_sh, np.array([[0, 1.0, 0], [0, -1.0, 0]]))[:, 0] / math.pi
    assert 0.6 <= up <= 0.9 and 0.1 <= down <= 0.3
    # A mirror and a slightly rough metal see the soft boxes against the sky: strong contrast.
    for level in env.specular[:2]:
        assert level.max() / np.median(level) > 8
