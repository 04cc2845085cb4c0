"""Every part an entity, through a real session and the Python client: a generated 3-level assembly (glTF, flat
unlit colours, tests/assembly_gltf.py) loads with its tree; hiding or tinting a sub-assembly changes exactly its
pixels and a child's own override inside it wins; ray casts name the part; bounds match the geometry; a moved
sub-assembly moves its parts, its bounds and its ray-cast hits. Lossless frames ("png"), anti-aliasing off: every
pixel of a part is exactly its colour, so pixel sets compare exactly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from openrr.client.render_session import RenderSessionClient, SessionError
from openrr.conversions.converter import convert
from tests.assembly_gltf import COLOURS, ORDER, write_assembly
from tests.harness import Service
from tests.models import serve_directory

Image = npt.NDArray[np.uint8]
EXACT = 2
"""Per channel, out of 255: a flat unlit colour of 0 or 1 encodes to exactly 0 or 255; 2 allows for a GPU's
rounding of the sRGB encode, no more."""


@pytest.fixture(scope="module")
def assembly_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("assembly")
    write_assembly(root / "tree.gltf")
    with serve_directory(root) as base:
        yield f"{base}/tree.gltf"


async def connect(service: Service, doc: dict[str, Any]) -> RenderSessionClient:
    return await RenderSessionClient.connect(
        doc["hostname"], doc["handshakePort"], service.token(), codec="png", ca=service.cert
    )


def mask(image: Image, rgb: tuple[float, float, float]) -> npt.NDArray[np.bool_]:
    target = np.round(np.asarray(rgb) * 255)
    found: npt.NDArray[np.bool_] = np.all(np.abs(image.astype(float) - target) <= EXACT, axis=-1)
    return found


def changed(a: Image, b: Image) -> npt.NDArray[np.bool_]:
    differs: npt.NDArray[np.bool_] = np.any(np.abs(a.astype(int) - b.astype(int)) > EXACT, axis=-1)
    return differs


def translation(x: float, y: float, z: float) -> npt.NDArray[np.float64]:
    m = np.identity(4)
    m[:3, 3] = (x, y, z)
    return m


async def picture(client: RenderSessionClient) -> Image:
    image: Image = (await client.next_frame()).image
    return image


def test_the_assembly_is_a_tree_of_entities_with_hierarchical_overrides(
    service: Service, session: dict[str, Any], assembly_url: str
) -> None:
    async def scenario() -> None:
        async with await connect(service, session) as c:
            await c.set_stream(320, 240)
            await c.set_output(antialiasing="none")
            model = await c.load_model(assembly_url)
            root = model["entityId"]
            ids = {name: root + k for k, name in enumerate(ORDER)}
            assert model["entities"] == len(ORDER) and model["sceneGraphMode"] == "dynamic"

            # the tree, lazily
            top = await c.get_children(root)
            assembly = {"entityId": ids["assembly"], "name": "assembly", "childCount": 2, "overrides": {}}
            assert top == {"children": [assembly], "total": 1}
            subs = await c.get_children(ids["assembly"])
            assert [k["name"] for k in subs["children"]] == ["A", "B"]
            page = await c.get_children(ids["A"], offset=1, limit=1)
            a2 = {"entityId": ids["A2"], "name": "A2", "childCount": 0, "overrides": {}}
            assert page == {"children": [a2], "total": 2}
            a1 = await c.get_entity(ids["A1"])
            assert a1["path"] == ["tree.gltf", "assembly", "A", "A1"] and a1["parentId"] == ids["A"]
            assert a1["world"] == pytest.approx(translation(-0.5, 0.5, 0).reshape(-1).tolist())
            assert a1["local"] == pytest.approx(translation(0, 0.5, 0).reshape(-1).tolist())
            assert a1["modelEntityId"] == root and a1["materials"] == [0]
            assert await c.get_metadata(ids["A1"]) == {"partNumber": "A-1"}
            with pytest.raises(SessionError, match=f"no entity {root + len(ORDER)} is loaded"):
                await c.get_entity(root + len(ORDER))

            await c.set_camera((0, 0, 3), (0, 0, 0))
            base = await picture(c)
            parts = {name: mask(base, rgb) for name, rgb in COLOURS.items()}
            background = base[0, 0]
            for name, pixels in parts.items():
                assert pixels.sum() > 1500, f"{name} should cover its square, {pixels.sum()} pixels"

            # hiding a sub-assembly changes exactly its parts' pixels, to the background
            await c.set_override(ids["A"], hidden=True)
            hidden = await picture(c)
            assert np.array_equal(changed(hidden, base), parts["A1"] | parts["A2"])
            assert np.all(np.abs(hidden[parts["A1"]].astype(int) - background) <= EXACT)

            # a child's own override inside it wins
            await c.set_override(ids["A2"], hidden=False)
            shown = await picture(c)
            assert np.array_equal(changed(shown, base), parts["A1"])
            entity = await c.get_entity(ids["A2"])
            assert entity["overrides"] == {"hidden": False} and entity["effective"]["hidden"] is False
            listed = (await c.get_children(ids["A"]))["children"]  # a tree view reads own overrides from the page
            assert [k["overrides"] for k in listed] == [{}, {"hidden": False}]
            assert (await c.get_entity(ids["A1"]))["effective"]["hidden"] is True

            # a ray cast names the part (the leaf), its path and its model; hidden parts are not hit
            hit = await c.ray_cast((-0.5, -0.5, 3), (0, 0, -1))
            assert hit is not None
            assert (hit["entityId"], hit["name"], hit["modelEntityId"]) == (ids["A2"], "A2", root)
            assert hit["path"] == ["tree.gltf", "assembly", "A", "A2"]
            assert hit["distance"] == pytest.approx(3.0, abs=1e-4)
            assert await c.ray_cast((-0.5, 0.5, 3), (0, 0, -1)) is None

            # tinting sub-assembly B: B's parts take the tint, except B2, whose own "no tint" wins
            await c.set_override(ids["A"], hidden="inherit")
            await c.set_override(ids["A2"], hidden="inherit")
            await c.set_override(ids["B"], tint=(1.0, 0.0, 1.0, 1.0))
            await c.set_override(ids["B2"], tint=(0.0, 0.0, 0.0, 0.0))
            tinted = await picture(c)
            assert np.array_equal(changed(tinted, base), parts["B1"])
            assert np.array_equal(mask(tinted, (1.0, 0.0, 1.0)), parts["B1"])
            await c.set_override(ids["B2"], tint="inherit")
            assert np.array_equal(changed(await picture(c), base), parts["B1"] | parts["B2"])

            # bounds match the geometry (squares of 0.8 around the leaves' centres, in z = 0)
            a_world = await c.get_bounds(ids["A"])
            assert a_world is not None and a_world == {
                "min": pytest.approx([-0.9, -0.9, 0]),
                "max": pytest.approx([-0.1, 0.9, 0]),
            }
            a_local = await c.get_bounds(ids["A"], "local")
            assert a_local is not None and a_local == {
                "min": pytest.approx([-0.4, -0.9, 0]),
                "max": pytest.approx([0.4, 0.9, 0]),
            }
            whole = await c.get_bounds(root)
            assert whole is not None and whole == {
                "min": pytest.approx([-0.9, -0.9, 0]),
                "max": pytest.approx([0.9, 0.9, 0]),
            }
            assert await c.get_bounds(ids["assembly"], "world") == whole

            # moving sub-assembly A towards the camera moves its parts, bounds and hits; B stays
            await c.set_override(ids["B"], tint="inherit")
            await c.set_entity_transform(ids["A"], local=translation(-0.5, 0, 1))
            moved = await picture(c)
            assert mask(moved, COLOURS["A1"]).sum() > 1.3 * parts["A1"].sum(), "nearer: larger on screen"
            assert np.array_equal(mask(moved, COLOURS["B1"]), parts["B1"])
            a1_bounds = await c.get_bounds(ids["A1"])
            assert a1_bounds is not None and a1_bounds["min"] == pytest.approx([-0.9, 0.1, 1.0])
            hit = await c.ray_cast((-0.5, 0.5, 3), (0, 0, -1))
            assert hit is not None and hit["name"] == "A1" and hit["distance"] == pytest.approx(2.0, abs=1e-4)
            a1 = await c.get_entity(ids["A1"])
            assert a1["world"] == pytest.approx(translation(-0.5, 0.5, 1).reshape(-1).tolist())

            # the root moves the whole model (the placement, as setTransform); a part's id is not a model's
            await c.set_entity_transform(root, world=translation(0, 0, -1))
            assert (await c.get_scene())["entities"][0]["transform"] == pytest.approx(
                translation(0, 0, -1).reshape(-1).tolist()
            )
            with pytest.raises(SessionError, match="setTransform takes a model's entity"):
                await c.set_transform(ids["A"], np.identity(4))
            with pytest.raises(SessionError, match="exactly one of 'local' and 'world'"):
                await c.command("setEntityTransform", entityId=ids["A"])

    asyncio.run(scenario())


def test_camera_planes_follow_the_scene_unless_set(
    service: Service, session: dict[str, Any], assembly_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with await connect(service, session) as c:
            await c.set_stream(320, 240)
            model = await c.load_model(assembly_url)
            # the model shrunk to a millimetre's scale, seen from 3 mm: the default planes (0.01) would cut it all
            await c.set_transform(model["entityId"], np.diag([1e-3, 1e-3, 1e-3, 1.0]))
            await c.set_camera((0, 0, 3e-3), (0, 0, 0))
            near, far = (await c.get_scene())["camera"]["planes"]
            assert 0 < near < 3e-3 < far < 5e-3  # around the bounds' sphere (radius 1.27e-3) at 3e-3
            image = await picture(c)
            assert mask(image, COLOURS["A1"]).sum() > 1000, "the tiny model shows whole"
            await c.set_camera((0, 0, 3e-3), (0, 0, 0), near=1e-4, far=2e-3)  # fixed: the model lies beyond far
            camera = (await c.get_scene())["camera"]
            assert (camera["near"], camera["far"], camera["planes"]) == (1e-4, 2e-3, [1e-4, 2e-3])
            assert mask(await picture(c), COLOURS["A1"]).sum() == 0
            with pytest.raises(SessionError, match=r"near plane \(0\.003\) must be nearer than the far plane"):
                await c.set_camera((0, 0, 3e-3), (0, 0, 0), near=3e-3)
            assert (await c.get_scene())["camera"]["near"] == 1e-4, "a refused camera changes nothing"

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def asset_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The assembly converted to an .arrAsset in each sceneGraphMode (the converter in process), served."""
    root = tmp_path_factory.mktemp("assets")
    for mode in ("none", "static", "dynamic"):
        folder = root / mode
        folder.mkdir()
        write_assembly(folder / "tree.gltf")
        (folder / "tree.ConversionSettings.json").write_text(json.dumps({"sceneGraphMode": mode}))
        outcome = convert(folder, "tree.gltf", folder, "tree.arrAsset")
        assert (folder / "tree.arrAsset").exists(), outcome
    with serve_directory(root) as base:
        yield {mode: f"{base}/{mode}/tree.arrAsset" for mode in ("none", "static", "dynamic")}


def test_a_converted_assembly_keeps_its_tree_in_every_scene_graph_mode(
    service: Service, session: dict[str, Any], asset_urls: dict[str, str]
) -> None:
    async def scenario() -> None:
        async with await connect(service, session) as c:
            await c.set_stream(320, 240)
            await c.set_output(antialiasing="none")
            await c.set_camera((0, 0, 3), (0, 0, 0))
            for mode in ("dynamic", "static"):
                model = await c.load_model(asset_urls[mode])
                root = model["entityId"]
                ids = {name: root + k for k, name in enumerate(ORDER)}
                assert (model["entities"], model["sceneGraphMode"]) == (len(ORDER), mode)
                assert [k["name"] for k in (await c.get_children(ids["assembly"]))["children"]] == ["A", "B"]
                a2 = await c.get_entity(ids["A2"])
                assert a2["path"][1:] == ["assembly", "A", "A2"], a2["path"]
                assert a2["world"] == pytest.approx(translation(-0.5, -0.5, 0).reshape(-1).tolist(), abs=1e-6)
                hit = await c.ray_cast((0.5, -0.5, 3), (0, 0, -1))
                assert hit is not None and hit["name"] == "B2"
                bounds = await c.get_bounds(ids["B"])
                assert bounds is not None and bounds["min"] == pytest.approx([0.1, -0.9, 0], abs=1e-6)
                await c.set_override(ids["A"], hidden=True)
                image = await picture(c)
                assert mask(image, COLOURS["A1"]).sum() == 0 and mask(image, COLOURS["B1"]).sum() > 1500
                if mode == "static":
                    with pytest.raises(SessionError, match="sceneGraphMode 'static'"):
                        await c.set_entity_transform(ids["A"], local=translation(0, 0, 1))
                else:
                    await c.set_entity_transform(ids["A"], local=translation(0, 0, 1))
                await c.unload_model(root)
            flat = await c.load_model(asset_urls["none"])
            assert flat["entities"] == 1 and (await c.get_children(flat["entityId"]))["total"] == 0
            hit = await c.ray_cast((0.5, -0.5, 3), (0, 0, -1))
            assert hit is not None and hit["entityId"] == flat["entityId"]
            with pytest.raises(SessionError, match=f"no entity {flat['entityId'] + 1} is loaded"):
                await c.get_entity(flat["entityId"] + 1)

    asyncio.run(scenario())
