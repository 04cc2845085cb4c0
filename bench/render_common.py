"""What the rendering benchmarks share: test models, the camera orbit, a real service with one Ready session.

Models are grids of icospheres (5120 triangles each) merged into one mesh and saved as GLB with normals. The
grid always spans the same square ([-1, 1] on x and z) whatever the sphere count, so every size covers about the
same pixels and only the triangle count changes. They are served over a real local HTTP server
(`tests.models.serve_directory`), as the tests do.
"""

from __future__ import annotations

import argparse
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import trimesh
from tests.harness import Service, wait_status

from bench.common import bench_service
from openrr.render.lighting import ANTIALIASING_MODES

API = {"api-version": "2021-01-01"}
WIDTH, HEIGHT = 1280, 720
SPHERE_SUBDIVISIONS = 4  # 5120 triangles, 2562 vertices per sphere
ORBIT_STEP_DEG = 3.0
ORBIT_RADIUS = 1.5
ORBIT_HEIGHT = 1.0
FOV_Y = 60.0


@dataclass(frozen=True)
class BenchModel:
    label: str
    path: Path
    triangles: int
    vertices: np.ndarray
    """(N, 3) float32, for the bare baseline renderer."""
    normals: np.ndarray
    indices: np.ndarray
    """(M, 3) uint32."""


def sphere_grid(root: Path, label: str, target_triangles: int) -> BenchModel:
    """A GLB of about `target_triangles` triangles: ceil(target / 5120) spheres on a square grid."""
    base = trimesh.creation.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=1.0)
    nv, nf = len(base.vertices), len(base.faces)
    count = max(1, round(target_triangles / nf))
    side = math.ceil(math.sqrt(count))
    spacing = 2.0 / side
    radius = 0.4 * spacing
    unit = np.asarray(base.vertices, dtype=np.float32)
    vertices = np.empty((count * nv, 3), dtype=np.float32)
    normals = np.empty_like(vertices)
    indices = np.empty((count * nf, 3), dtype=np.uint32)
    for i in range(count):
        centre = (-1.0 + spacing * (i % side + 0.5), 0.0, -1.0 + spacing * (i // side + 0.5))
        vertices[i * nv : (i + 1) * nv] = unit * radius + np.asarray(centre, dtype=np.float32)
        normals[i * nv : (i + 1) * nv] = unit  # a unit sphere's normals are its positions
        indices[i * nf : (i + 1) * nf] = base.faces + i * nv
    mesh = trimesh.Trimesh(vertices, indices, vertex_normals=normals, process=False)
    path = root / f"spheres_{label}.glb"
    mesh.export(path, include_normals=True)
    return BenchModel(label, path, len(indices), vertices, normals, indices)


def orbit(step: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Camera position and target for frame/command `step`: a circle around the grid, looking at its centre."""
    a = math.radians(step * ORBIT_STEP_DEG)
    return (ORBIT_RADIUS * math.cos(a), ORBIT_HEIGHT, ORBIT_RADIUS * math.sin(a)), (0.0, 0.0, 0.0)


def add_antialiasing_option(parser: argparse.ArgumentParser) -> None:
    """--antialiasing: a setOutput mode for the session, to compare with the server's default side by side."""
    parser.add_argument(
        "--antialiasing",
        choices=ANTIALIASING_MODES,
        default=None,
        help="setOutput antialiasing (default: the server's)",
    )


# --- a real service and session ------------------------------------------------------------------------


@contextmanager
def render_service(data_dir: Path) -> Iterator[Service]:
    """`openrr serve` (HTTPS, SQLite) in a subprocess; stopped, and any render server it left killed, on exit."""
    with bench_service(
        data_dir,
        ["--warm-pool", "Standard=0", "--capacity", "Standard=2", "--rate-limit-per-s", "0",
         "--stop-grace-s", "2", "--log-level", "warning",
         "--fetch-allow", "127.0.0.1"],  # the benchmark models are served on loopback (tests.models)
    ) as svc:  # fmt: skip
        yield svc


@contextmanager
def ready_session(svc: Service) -> Iterator[dict[str, Any]]:
    """A Standard session created through the REST API; yields its document once Ready, stops it on exit."""
    sid = "bench-" + uuid.uuid4().hex[:12]
    url = f"/accounts/{svc.account_id}/sessions/{sid}"
    with svc.api() as api:
        r = api.put(url, params=API, json={"maxLeaseTimeMinutes": 30, "size": "Standard"})
        r.raise_for_status()
        try:
            yield wait_status(api, svc.account_id, sid, "Ready", timeout=60)
        finally:
            with suppress(httpx.HTTPError):
                api.post(url + "/:stop", params=API)
