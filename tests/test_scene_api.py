"""The scene API's materials, environment, lights and output through a real session and the Python client, with
pixel checks on lossless ("png") frames: each change shows where it should, and a bad value is refused with a
clear message and leaves the scene (and the picture) as it was. The assembly of tests/assembly_gltf.py, lit
(metallic 0, roughness 1) so that light and environment show."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from openrr.client.render_session import RenderSessionClient, SessionError
from openrr.render.environment import write_hdr
from tests.assembly_gltf import CENTRES, write_assembly
from tests.harness import Service
from tests.models import serve_directory
from tests.test_scene_entities import EXACT, Image, changed, connect, picture

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The lit assembly and a uniform blue environment (.hdr), served over loopback HTTP; yields the base URL."""
    root = tmp_path_factory.mktemp("scene-api")
    write_assembly(root / "lit.gltf", unlit=False)
    write_hdr(root / "blue.hdr", np.tile(np.array([0.0, 0.0, 1.5], np.float32), (32, 64, 1)))
    (root / "broken.hdr").write_bytes(b"#?RADIANCE\nnot really\n")
    with serve_directory(root) as base:
        yield base


def square(name: str) -> tuple[slice, slice]:
    """The middle of a part's square on screen (camera at (0, 0, 3), 60°, 320×240): 10×10 pixels."""
    x, y = CENTRES[name]
    scale = (HEIGHT / 2) / (3 * np.tan(np.radians(30)))  # pixels per world unit in z = 0
    cx, cy = int(WIDTH / 2 + x * scale), int(HEIGHT / 2 - y * scale)
    return slice(cy - 5, cy + 5), slice(cx - 5, cx + 5)


def mean(image: Image, name: str) -> npt.NDArray[np.float64]:
    found: npt.NDArray[np.float64] = image[square(name)].reshape(-1, 3).mean(axis=0)
    return found


async def same_picture(c: RenderSessionClient, before: Image) -> None:
    """A frame rendered after the last command shows the picture `before` (the refused command changed nothing)."""
    await c.set_stream(WIDTH, HEIGHT)  # a stamped command that changes no pixel: a fresh frame to look at
    assert not changed(await picture(c), before).any()


def test_materials_environment_lights_and_output_change_the_picture(
    service: Service, session: dict[str, Any], files: str
) -> None:
    async def scenario() -> None:
        async with await connect(service, session) as c:
            await c.set_stream(WIDTH, HEIGHT)
            await c.set_output(antialiasing="none")
            model = await c.load_model(f"{files}/lit.gltf")
            root = model["entityId"]
            await c.set_camera((0, 0, 3), (0, 0, 0))
            base = await picture(c)

            materials = await c.list_materials(root + 3)  # any entity of the model
            assert [m["name"] for m in materials] == ["A1-paint", "A2-paint", "B1-paint", "B2-paint"]
            assert materials[0]["baseColor"] == [1, 0, 0, 1] and materials[0]["metallic"] == 0
            assert materials[0]["unlit"] is False and materials[0]["textures"]["baseColor"] is False

            # a material edit changes the parts that use it, and only them
            await c.set_material(root, 0, baseColor=[0, 0, 1, 1])
            edited = await picture(c)
            a1 = mean(edited, "A1")
            assert a1[2] > a1[0] + 40, f"A1 should turn blue, got {a1}"
            assert not changed(edited, base)[square("B1")].any() and not changed(edited, base)[square("A2")].any()
            assert (await c.list_materials(root))[0]["baseColor"] == [0, 0, 1, 1]

            # bad values: refused with the reason, nothing changes
            with pytest.raises(SessionError, match=re.escape("'metallic' must be a number between 0 and 1.")) as bad:
                await c.set_material(root, 0, baseColor=[1, 1, 1, 1], metallic=2)
            assert bad.value.code == "BadRequest"
            with pytest.raises(SessionError, match=f"material 9 does not exist: model {root} has 4"):
                await c.set_material(root, 9, roughness=0.5)
            assert (await c.list_materials(root))[0]["baseColor"] == [0, 0, 1, 1]
            await same_picture(c, edited)

            # a white part under a blue environment turns blue; the built-in one gives the picture back
            await c.set_material(root, 1, baseColor=[1, 1, 1, 1])
            white = await picture(c)
            await c.set_environment(f"{files}/blue.hdr")
            sky = await picture(c)
            a2 = mean(sky, "A2")
            assert a2[2] > a2[1] + 40 and a2[2] > a2[0] + 40, f"the blue sky should light A2 blue, got {a2}"
            with pytest.raises(SessionError, match=re.escape("broken.hdr")) as broken:
                await c.set_environment(f"{files}/broken.hdr")
            assert broken.value.code == "EnvironmentLoadFailed"
            with pytest.raises(SessionError, match="404") as missing:
                await c.set_environment(f"{files}/nowhere.hdr?sig=SECRET")
            assert "SECRET" not in missing.value.message
            environment = (await c.get_scene())["environment"]
            assert environment["url"] == f"{files}/blue.hdr" and environment["builtIn"] is False
            await same_picture(c, sky)
            # the intensity alone keeps the environment and scales its light
            await c.command("setEnvironment", intensity=0.5)
            dimmer = mean(await picture(c), "A2")
            assert dimmer[2] < a2[2] - 10 and dimmer[2] > dimmer[0] + 10, (a2, dimmer)
            assert (await c.get_scene())["environment"]["url"] == f"{files}/blue.hdr"
            await c.command("setEnvironment", intensity=1.0)
            await same_picture(c, sky)
            await c.set_environment(None)
            assert not changed(await picture(c), white).any()

            # a light brightens what it shines on; intensity 0 is no light; a bad light is refused whole
            light = await c.add_light("directional", direction=[0, 0, -1], intensity=3.0)
            lit = await picture(c)
            assert mean(lit, "A2").sum() > mean(white, "A2").sum() + 30
            with pytest.raises(SessionError, match=r"'innerConeAngle' \(1\) must be less than 'outerConeAngle'"):
                await c.add_light("spot", innerConeAngle=1.0, outerConeAngle=0.5)
            with pytest.raises(SessionError, match=re.escape("'direction' must not be zero.")):
                await c.set_light(light, direction=[0, 0, 0])
            with pytest.raises(SessionError, match="no light 99 exists"):
                await c.remove_light(99)
            (listed,) = await c.list_lights()
            assert listed["lightId"] == light and listed["intensity"] == 3.0 and listed["direction"] == [0, 0, -1]
            await same_picture(c, lit)
            await c.set_light(light, intensity=0.0)
            assert np.abs(mean(await picture(c), "A2") - mean(white, "A2")).max() <= EXACT
            await c.remove_light(light)
            assert await c.list_lights() == []

            # output: exposure with a tone mapping changes the picture; a bad value changes nothing
            await c.set_output(exposure=4.0, tone_mapping="aces")
            exposed = await picture(c)
            assert mean(exposed, "A2").sum() > mean(white, "A2").sum() + 20
            with pytest.raises(SessionError, match=re.escape("'exposure' must be a number > 0.")):
                await c.set_output(exposure=0.0)
            with pytest.raises(SessionError, match=re.escape("'toneMapping' must be 'none', 'aces' or 'neutral'.")):
                await c.set_output(tone_mapping="filmic")
            output = (await c.get_scene())["output"]
            assert (output["exposure"], output["toneMapping"]) == (4.0, "aces")
            await same_picture(c, exposed)

    asyncio.run(scenario())
