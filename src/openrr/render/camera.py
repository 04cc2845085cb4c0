"""Where the camera is and how it projects: plain numpy, so anything may use it without loading GL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Camera:
    position: tuple[float, float, float] = (0.0, 0.0, 5.0)
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov_y_deg: float = 60.0
    near: float = 0.01
    far: float = 1000.0

    def __post_init__(self) -> None:
        if not 0.0 < self.fov_y_deg < 180.0:
            raise ValueError(f"fov_y_deg must be in (0, 180), got {self.fov_y_deg}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near} far={self.far}")
        if np.allclose(self.position, self.target):
            raise ValueError("camera position and target coincide")


def look_at(camera: Camera) -> Matrix:
    """World→view, row-major, right-handed, looking down -z."""
    eye = np.asarray(camera.position, dtype=np.float64)
    forward = np.asarray(camera.target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    up = np.asarray(camera.up, dtype=np.float64)
    side = np.cross(forward, up)
    if np.linalg.norm(side) < 1e-9:
        # Looking along `up`: any perpendicular up vector keeps the matrix well-defined.
        side = np.cross(forward, (1.0, 0.0, 0.0) if abs(forward[0]) < 0.9 else (0.0, 0.0, 1.0))
    side /= np.linalg.norm(side)
    true_up = np.cross(side, forward)
    view = np.identity(4)
    view[0, :3], view[1, :3], view[2, :3] = side, true_up, -forward
    view[:3, 3] = -view[:3, :3] @ eye
    return view.astype(np.float32)


def perspective(camera: Camera, aspect: float) -> Matrix:
    """View→clip, row-major, OpenGL depth range [-1, 1]."""
    f = 1.0 / math.tan(math.radians(camera.fov_y_deg) / 2.0)
    n, fa = camera.near, camera.far
    proj = np.zeros((4, 4))
    proj[0, 0] = f / aspect
    proj[1, 1] = f
    proj[2, 2] = (fa + n) / (n - fa)
    proj[2, 3] = 2.0 * fa * n / (n - fa)
    proj[3, 2] = -1.0
    return proj.astype(np.float32)
