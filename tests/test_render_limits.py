"""ARR's primitive limit, end to end: a Standard session past its limit shows a checkerboard and says why; a Premium
session has no fixed cap. The service runs with a low limit (--standard-primitive-limit) so that a test-sized model
crosses it; the rule and the picture are the same as at ARR's 20 million."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openrr.client.render_session import Frame, RenderSessionClient
from tests.harness import Service, free_port, ready_session

LIMIT = 12_000  # the test sphere has 5,120 triangles: two fit, three do not
DARK, LIGHT = round(0.30 * 255), round(0.62 * 255)  # the checkerboard's two greys, in 32-pixel cells


@pytest.fixture(scope="module")
def limited(base_dir: Path) -> Iterator[Service]:
    svc = Service(
        base_dir / "limits",
        free_port(),
        ["--warm-pool", "Standard=0", "--capacity", "Standard=1,Premium=1", "--rate-limit-per-s", "0",
         "--standard-primitive-limit", str(LIMIT), "--fetch-allow", "127.0.0.1"],  # the model server is on loopback
    ).start()  # fmt: skip
    try:
        yield svc
    finally:
        svc.stop()


def _is_checkerboard(frame: Frame) -> bool:
    cells = frame.image[16::32, 16::32].astype(int)  # the centre of every 32x32 cell
    expected = np.where((np.add.outer(np.arange(cells.shape[0]), np.arange(cells.shape[1])) % 2) == 1, LIGHT, DARK)
    return bool((np.abs(cells - expected[..., None]) <= 12).all())


async def _scenario(svc: Service, doc: dict[str, Any], sphere: str) -> list[tuple[bool, list[str]]]:
    """Load the sphere three times (5,120 → 15,360 triangles), unload two, load one again (10,240); whether each
    frame is a checkerboard, and the warnings each load returned."""
    seen: list[tuple[bool, list[str]]] = []
    async with await RenderSessionClient.connect(
        doc["hostname"], doc["handshakePort"], svc.token(), ca=svc.cert
    ) as client:
        entities = []
        for i in range(3):
            loaded = await client.load_model(sphere)
            entities.append(loaded["entityId"])
            cmd = await client.set_camera(position=(0, 0, 5 + i * 0.01), target=(0, 0, 0))
            seen.append((_is_checkerboard(await client.next_frame(after_command=cmd)), loaded.get("warnings", [])))
        for entity in entities[1:]:
            await client.unload_model(entity)
        cmd = await client.set_camera(position=(0, 0, 5.5), target=(0, 0, 0))
        seen.append((_is_checkerboard(await client.next_frame(after_command=cmd)), []))
        loaded = await client.load_model(sphere)
        cmd = await client.set_camera(position=(0, 0, 5.6), target=(0, 0, 0))
        seen.append((_is_checkerboard(await client.next_frame(after_command=cmd)), loaded.get("warnings", [])))
    return seen


def test_standard_session_past_its_limit_shows_a_checkerboard_and_says_so(
    limited: Service, model_url: dict[str, str]
) -> None:
    with ready_session(limited, "limit", "Standard") as doc:
        seen = asyncio.run(_scenario(limited, doc, model_url["sphere"]))
    assert [checker for checker, _ in seen] == [False, False, True, False, False], "only while over the limit"
    assert [len(warnings) for _, warnings in seen] == [0, 0, 1, 0, 0], "a warning with the load that went over"
    (warning,) = seen[2][1]
    assert "15,360 primitives" in warning and f"{LIMIT:,}" in warning and "Premium" in warning


def test_premium_session_has_no_fixed_limit(limited: Service, model_url: dict[str, str]) -> None:
    with ready_session(limited, "limit", "Premium") as doc:
        seen = asyncio.run(_scenario(limited, doc, model_url["sphere"]))
    assert [checker for checker, _ in seen] == [False, False, False, False, False]
    assert all(warnings == [] for _, warnings in seen)
