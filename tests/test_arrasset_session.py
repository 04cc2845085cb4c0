"""A converted .arrAsset in a real render session: loaded by URL, drawn and ray-cast (the format itself, in process:
tests/unit/test_arrasset.py)."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh

from openrr.client.render_session import RenderSessionClient
from openrr.conversions.converter import convert
from tests.harness import Service
from tests.models import serve_directory


def test_a_session_loads_draws_and_ray_casts_an_asset(
    service: Service, session: dict[str, Any], tmp_path: Path
) -> None:
    trimesh.creation.icosphere(subdivisions=4).export(tmp_path / "ball.glb")
    assert convert(tmp_path, "ball.glb", tmp_path, "ball.arrAsset").succeeded

    async def scenario(base: str) -> None:
        client = await RenderSessionClient.connect(
            session["hostname"], session["handshakePort"], service.token(), ca=service.cert
        )
        async with client:
            loaded = await client.load_model(f"{base}/ball.arrAsset?sig=not-a-real-signature")
            assert loaded["triangles"] == 5120 and loaded["name"] == "ball.arrAsset"
            assert loaded["bounds"]["max"] == pytest.approx([1, 1, 1], abs=1e-6)
            cmd = await client.set_camera(position=(0, 0, 5), target=(0, 0, 0), fov_y=60)
            frame = await client.next_frame(after_command=cmd)
            h, w, _ = frame.image.shape
            background = np.array([0.12, 0.12, 0.14]) * 255
            centre = frame.image[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].astype(float)
            assert np.abs(centre - background).max() > 40, "the sphere should be drawn in the middle"
            hit = await client.ray_cast([0, 0, 5], [0, 0, -1])
            assert hit is not None and hit["distance"] == pytest.approx(4.0, abs=2e-3)

    with serve_directory(tmp_path) as base:
        asyncio.run(scenario(base))
