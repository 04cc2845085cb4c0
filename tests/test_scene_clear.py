"""A cleared scene (what the reconnect grace ends in, render/stream.py) starts the next client from a new session's
view. Before, the camera and cut planes outlived the clearing, and a fresh client's model could be out of view or
cut away. A real render process draws, the model is read from disk, and each frame is checked by its pixels."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import simplejpeg

from openrr.protocol.render import unpack_frame
from openrr.render.camera import Camera
from openrr.render.session import Client, SceneSession
from openrr.storage.fetch import FetchError
from tests.models import write_models

BACKGROUND = np.array([0.12, 0.12, 0.14]) * 255


class DirectoryFiles:
    """LocalFiles (storage/area_files.py) over one directory: the test's models."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, requested: str, max_bytes: int) -> bytes:
        path = self.root / requested
        if not path.is_file():
            raise FetchError(f"no file {requested}")
        return path.read_bytes()

    def display(self, requested: str) -> str:
        return requested


def test_clearing_the_scene_resets_the_camera_and_cut_planes(tmp_path: Path) -> None:
    write_models(tmp_path)
    frames: asyncio.Queue[bytes] = asyncio.Queue()

    async def next_picture(after: int) -> np.ndarray:
        while True:
            header, payload = unpack_frame(await asyncio.wait_for(frames.get(), 30))
            if header.command_id >= after:
                picture: np.ndarray = simplejpeg.decode_jpeg(payload)
                return picture

    async def centre_is_background(after: int) -> bool:
        picture = await next_picture(after)
        h, w = picture.shape[:2]
        centre = picture[h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4].reshape(-1, 3).astype(float)
        return bool(np.all(np.abs(centre - BACKGROUND) <= 12))

    async def scenario() -> None:
        scene = SceneSession("Standard", width=320, height=180, local_files=DirectoryFiles(tmp_path))
        await scene.start()
        try:
            scene.attach(Client("controller", frames.put))
            await scene.load("sphere.glb", lambda fraction: None)
            scene.mark_dirty(1)
            assert not await centre_is_background(1), "the default camera looks at the unit sphere"

            # The last client looks away and cuts everything away, then leaves.
            scene.set_camera(Camera(position=(0.0, 0.0, 5.0), target=(0.0, 50.0, 5.0)))
            await scene.set_cut_planes([([1.0, 0.0, 0.0], [10.0, 0.0, 0.0])])
            scene.mark_dirty(2)
            assert await centre_is_background(2)

            await scene.clear()
            assert (scene.entities, scene.cut_planes, scene.camera) == ({}, [], Camera())

            # The next client loads its model and, without touching the view, sees it.
            await scene.load("sphere.glb", lambda fraction: None)
            scene.mark_dirty(3)
            assert not await centre_is_background(3), "a model loaded after the clearing is in view and uncut"
        finally:
            await scene.close()

    asyncio.run(scenario())
