"""Test models made on the spot with trimesh, and a real local HTTP server to serve them."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image


def write_models(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    sphere.visual = trimesh.visual.ColorVisuals(sphere, face_colors=[200, 180, 60, 255])
    paths = {"sphere": root / "sphere.glb"}
    sphere.export(paths["sphere"])

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    texture = Image.new("RGB", (16, 16), (220, 20, 20))
    uv = np.c_[(box.vertices[:, 0] + 0.5), (box.vertices[:, 1] + 0.5)]
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=texture)
    paths["box"] = root / "textured_box.glb"
    box.export(paths["box"])

    rng = np.random.default_rng(7)
    points = rng.uniform(-1, 1, size=(20_000, 3))
    colors = np.tile(np.array([[30, 220, 90, 255]], dtype=np.uint8), (len(points), 1))
    paths["cloud"] = root / "cloud.ply"
    trimesh.PointCloud(points, colors=colors).export(paths["cloud"])

    paths["corrupt"] = root / "corrupt.glb"
    paths["corrupt"].write_bytes(b"glTF\x02\x00\x00\x00 this is not a real binary glTF file" * 10)
    return paths


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving `root`; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
