"""Punctual lights (glTF KHR_lights_punctual, ARR's point/spot/directional lights) and the output settings' names.

Plain dataclasses (no GL) so the session, the commands and the renderer share them without loading GL.
Units are KHR_lights_punctual's, which three.js (r155 and later, physically correct by default) uses too:
directional intensity in lux, point and spot intensity in candela, no π factor on the light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

LightKind = Literal["directional", "point", "spot"]
LIGHT_KINDS: tuple[LightKind, ...] = ("directional", "point", "spot")
MAX_LIGHTS = 8
ToneMapping = Literal["none", "aces", "neutral"]
TONE_MAPPINGS: tuple[ToneMapping, ...] = ("none", "aces", "neutral")
ANTIALIASING_MODES = ("none", "fxaa", "msaa")


@dataclass(frozen=True)
class Light:
    kind: LightKind
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Linear RGB."""
    intensity: float = 1.0
    """Directional: lux; point and spot: candela."""
    range: float | None = None
    """None: infinite. Otherwise the glTF/three.js window (1 - (d/range)^4)^2 on the 1/d^2 falloff."""
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """World; ignored for directional lights."""
    direction: tuple[float, float, float] = (0.0, 0.0, -1.0)
    """World, the way the light travels; ignored for point lights."""
    inner_cone_angle: float = 0.0
    """Radians, spot only."""
    outer_cone_angle: float = math.pi / 4
    """Radians, spot only."""

    def __post_init__(self) -> None:
        if self.kind not in LIGHT_KINDS:
            raise ValueError(f"light kind must be one of {', '.join(LIGHT_KINDS)}, got {self.kind!r}")
        numbers = (*self.color, self.intensity, *self.position, *self.direction)
        if len(self.color) != 3 or len(self.position) != 3 or len(self.direction) != 3:
            raise ValueError("color, position and direction must have 3 components each")
        if not all(math.isfinite(float(v)) for v in numbers):
            raise ValueError("light color, intensity, position and direction must be finite")
        if min(self.color) < 0.0 or self.intensity < 0.0:
            raise ValueError("light color and intensity must not be negative")
        if self.range is not None and not (math.isfinite(self.range) and self.range > 0.0):
            raise ValueError(f"light range must be a positive number or None, got {self.range!r}")
        if self.kind != "point" and math.hypot(*self.direction) < 1e-12:
            raise ValueError("light direction must not be zero")
        if not 0.0 <= self.inner_cone_angle < self.outer_cone_angle <= math.pi / 2:
            raise ValueError(
                "spot cone angles need 0 <= inner_cone_angle < outer_cone_angle <= pi/2, got "
                f"{self.inner_cone_angle} and {self.outer_cone_angle}"
            )
