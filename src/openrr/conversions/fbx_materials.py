"""FBX (Phong: diffuse, specular, shininess) materials → glTF metallic-roughness, with ARR's published formulas.

ARR's material mapping reference gives them: roughness from the specular intensity and the shininess exponent,
metalness by solving the spec-gloss → metal-rough quadratic (dielectrics reflect 4 %), albedo by blending a
"dielectric" and a "metal" colour by metalness², alpha from Opacity, else TransparentColor, else
TransparencyFactor. That quadratic cannot tell glossy plastic from metal: `fbxAssumeMetallic` (default true)
keeps ARR's reading, false reads such a material as a dielectric that keeps its diffuse colour (ARR's
"shiny colourful plastic"), which is what the setting switches in ARR. Colours are the file's own values; the
converter applies gammaToLinearMaterial afterwards, as for every format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DIELECTRIC_SPECULAR = 0.04


@dataclass(frozen=True)
class PbrFromPhong:
    base_color: tuple[float, float, float, float]
    metallic: float
    roughness: float
    emissive: tuple[float, float, float]


def phong_to_pbr(props: dict[str, Any], assume_metallic: bool, textured: bool) -> PbrFromPhong:
    """`props`: a material's FBX properties (templates applied); `textured`: it has a diffuse texture, which then
    carries the colour as it is (the per-texel formula is not a factor)."""
    diffuse = _colour(props, "DiffuseColor", "Diffuse", (0.8, 0.8, 0.8))
    specular_colour = _colour(props, "SpecularColor", "Specular", (0.2, 0.2, 0.2))
    specular_factor = _scalar(props, "SpecularFactor", 1.0)
    specular = tuple(c * specular_factor for c in specular_colour)
    shininess = _scalar(props, "ShininessExponent", _scalar(props, "Shininess", 20.0))

    intensity = specular[0] * 0.2125 + specular[1] * 0.7154 + specular[2] * 0.0721
    roughness = math.sqrt(2.0 / max(shininess * intensity + 2.0, 1e-6))
    strength = max(specular)
    albedo: tuple[float, ...] = diffuse
    metallic = 0.0
    if assume_metallic:
        metallic = _metalness(diffuse, specular, strength)
        albedo = _albedo(diffuse, specular, strength, metallic)
    if textured:
        albedo = (1.0, 1.0, 1.0)
    emissive_factor = _scalar(props, "EmissiveFactor", 1.0)
    emissive = _colour(props, "EmissiveColor", "Emissive", (0.0, 0.0, 0.0))
    return PbrFromPhong(
        base_color=(*(_clamp(c) for c in albedo), _alpha(props)),  # type: ignore[arg-type]
        metallic=_clamp(metallic),
        roughness=_clamp(roughness),
        emissive=(
            _clamp(emissive[0] * emissive_factor),
            _clamp(emissive[1] * emissive_factor),
            _clamp(emissive[2] * emissive_factor),
        ),
    )


def _metalness(diffuse: tuple[float, ...], specular: tuple[float, ...], strength: float) -> float:
    a = DIELECTRIC_SPECULAR
    diffuse_brightness = _brightness(diffuse)
    specular_brightness = _brightness(specular)
    b = diffuse_brightness * ((1.0 - strength) / (1.0 - a)) + specular_brightness - 2.0 * a
    c = a - specular_brightness
    root = math.sqrt(max(0.0, b * b - 4.0 * a * c))
    return _clamp((-b + root) / (2.0 * a))


def _albedo(
    diffuse: tuple[float, ...], specular: tuple[float, ...], strength: float, metallic: float
) -> tuple[float, float, float]:
    a = DIELECTRIC_SPECULAR
    dielectric = [d * ((1.0 - strength) / (1.0 - a) / max(1e-4, 1.0 - metallic)) for d in diffuse]
    metal = [(s - a * (1.0 - metallic)) * (1.0 / max(1e-4, metallic)) for s in specular]
    t = metallic * metallic
    r, g, b = (d + (m - d) * t for d, m in zip(dielectric, metal, strict=True))
    return r, g, b


def _alpha(props: dict[str, Any]) -> float:
    if isinstance(props.get("Opacity"), int | float):
        return _clamp(float(props["Opacity"]))
    transparent = props.get("TransparentColor")
    if isinstance(transparent, list) and len(transparent) >= 3:
        return _clamp(1.0 - sum(float(c or 0.0) for c in transparent[:3]) / 3.0)
    if isinstance(props.get("TransparencyFactor"), int | float):
        return _clamp(1.0 - float(props["TransparencyFactor"]))
    return 1.0


def _brightness(colour: tuple[float, ...]) -> float:
    return 0.299 * colour[0] ** 2 + 0.587 * colour[1] ** 2 + 0.114 * colour[2] ** 2


def _colour(props: dict[str, Any], key: str, legacy: str, default: tuple[float, float, float]) -> tuple[float, ...]:
    for name in (key, legacy):
        value = props.get(name)
        if isinstance(value, list) and len(value) >= 3 and all(isinstance(v, int | float) for v in value[:3]):
            return tuple(float(v) for v in value[:3])
    return default


def _scalar(props: dict[str, Any], key: str, default: float) -> float:
    value = props.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else default


def _clamp(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)
