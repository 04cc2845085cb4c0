"""The viewer's scene tree, rendering controls and material panel (issue 11) in real headless Chromium, against a
real render server: models generated here, pictures checked by their pixels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium
from tests.gltf_scenes import _Gltf, cube, uv_sphere
from tests.harness import Service, ready_session
from tests.models import serve_directory
from tests.test_viewer import canvas_pixels, close_viewer, open_viewer, viewer_url, wait_js

pytest.importorskip("playwright.sync_api")

IDLE = "window.openrrViewer.idle()"
# A pixel "is" a colour when its channel is above BRIGHT and the other two below DARK: far from JPEG's noise (the
# parts are unlit pure primaries) and from the background (31, 31, 36) and the selection outline's orange.
BRIGHT, DARK = 170, 90
PARTS_FILE = "parts.glb"
SPHERE_FILE = "grey_sphere.glb"
SKY_FILE = "red_sky.png"
MANY_FILE = "many.glb"


def write_parts(path: Path) -> None:
    """An assembly of two unit cubes, `left` (red) and `right` (blue, inside the group `right_group`), both unlit:

    assembly ─┬─ left
              └─ right_group ── right
    """
    g = _Gltf()
    box = cube(1.0)
    unlit: dict[str, Any] = {"KHR_materials_unlit": {}}
    red = g.material("red", pbrMetallicRoughness={"baseColorFactor": [1, 0, 0, 1]}, extensions=unlit)
    blue = g.material("blue", pbrMetallicRoughness={"baseColorFactor": [0, 0, 1, 1]}, extensions=unlit)
    nodes = g.doc["nodes"]
    nodes.append({"name": "assembly", "children": [1, 2]})
    nodes.append({"name": "left", "mesh": g.mesh("left", box, red), "translation": [-0.8, 0, 0]})
    nodes.append({"name": "right_group", "children": [3], "translation": [0.8, 0, 0]})
    nodes.append({"name": "right", "mesh": g.mesh("right", box, blue)})
    g.doc["scenes"][0]["nodes"] = [0]
    g.write(path)


MANY = 150  # parts in the flat model: more than a page of the tree (scene-tree.js PAGE_SIZE = 100)


def write_many(path: Path) -> None:
    """MANY small cubes under one group, in a 15 × 10 grid: grey ones, and the last (`part_149`) red."""
    g = _Gltf()
    box = cube(0.6)
    unlit: dict[str, Any] = {"KHR_materials_unlit": {}}
    grey = g.mesh(
        "grey", box, g.material("grey", pbrMetallicRoughness={"baseColorFactor": [0.3, 0.3, 0.3, 1]}, extensions=unlit)
    )
    red = g.mesh(
        "red", box, g.material("red", pbrMetallicRoughness={"baseColorFactor": [1, 0, 0, 1]}, extensions=unlit)
    )
    nodes = g.doc["nodes"]
    nodes.append({"name": "grid", "children": list(range(1, MANY + 1))})
    for k in range(MANY):
        position = [float(k % 15 - 7), float(k // 15) - 4.5, 0.0]
        nodes.append({"name": f"part_{k}", "mesh": red if k == MANY - 1 else grey, "translation": position})
    g.doc["scenes"][0]["nodes"] = [0]
    g.write(path)


def write_sphere(path: Path) -> None:
    """A grey dielectric sphere, lit only by the environment (no punctual lights): what IBL and tone mapping show."""
    g = _Gltf()
    grey = g.material(
        "grey",
        pbrMetallicRoughness={"baseColorFactor": [0.5, 0.5, 0.5, 1], "metallicFactor": 0, "roughnessFactor": 0.4},
    )
    g.node("sphere", g.mesh("sphere", uv_sphere(1.0), grey))
    g.write(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("scene-files")
    write_parts(root / PARTS_FILE)
    write_sphere(root / SPHERE_FILE)
    write_many(root / MANY_FILE)
    # An equirect sky of one saturated red: a sphere it lights turns red, whatever the direction convention.
    Image.new("RGB", (64, 32), (230, 40, 30)).save(root / SKY_FILE)
    with serve_directory(root) as base:
        yield {
            "parts": f"{base}/{PARTS_FILE}",
            "sphere": f"{base}/{SPHERE_FILE}",
            "sky": f"{base}/{SKY_FILE}",
            "many": f"{base}/{MANY_FILE}",
        }


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(
        tmp_path_factory.mktemp("chromium-profile"), viewport={"width": 1280, "height": 800}, device_scale_factor=1
    ) as context:
        yield context


@pytest.fixture
def session_id(service: Service) -> Iterator[str]:
    with ready_session(service, "viewer-scene") as doc:
        yield doc["id"]


def colour_mask(pixels: np.ndarray, channel: int) -> np.ndarray:
    """Pixels whose `channel` is bright and the other two dark."""
    others = [c for c in range(3) if c != channel]
    mask: np.ndarray = (pixels[..., channel] > BRIGHT) & np.all(pixels[..., others] < DARK, axis=-1)
    return mask


RED, GREEN, BLUE = 0, 1, 2


def row(page: Any, name: str) -> Any:
    """The scene tree's row of the part named `name`."""
    return page.locator("#scene-tree .row", has=page.locator(".name", has_text=re.compile(f"^{re.escape(name)}$")))


def selected_name(page: Any) -> str | None:
    name: str | None = page.evaluate(
        "() => document.querySelector('#scene-tree li.selected > .row .name')?.textContent ?? null"
    )
    return name


def open_model(browser: Any, service: Service, session_id: str, url: str, errors: list[str]) -> Any:
    page = open_viewer(browser, viewer_url(service, session_id, model=url), errors)
    # The link's model is loaded, or (a second page on the session) found already there.
    wait_js(
        page, "window.openrrViewer?.connected && (window.openrrViewer.lastLoad || window.openrrViewer.entities.length)"
    )
    last_load = page.evaluate("() => window.openrrViewer.lastLoad")
    assert last_load is None or last_load["ok"], last_load
    wait_js(page, IDLE)
    return page


def test_scene_tree_hides_a_part_and_a_pick_selects_its_row(
    browser: Any, service: Service, session_id: str, files: dict[str, str], tmp_path: Path
) -> None:
    errors: list[str] = []
    page = open_model(browser, service, session_id, files["parts"], errors)
    try:
        before = canvas_pixels(page)
        red, blue = colour_mask(before, RED).sum(), colour_mask(before, BLUE).sum()
        assert red > 2000 and blue > 2000, f"both parts should show ({red} red, {blue} blue pixels)"

        # The tree: the model's root (named after the file), opened level by level (children fetched lazily).
        assert row(page, PARTS_FILE).count() == 1
        assert row(page, "assembly").count() == 0, "children are fetched when their parent is opened"
        row(page, PARTS_FILE).locator(".twisty").click()
        row(page, "assembly").wait_for()
        row(page, "assembly").locator(".twisty").click()
        row(page, "left").wait_for()
        assert row(page, "right_group").count() == 1 and row(page, "right").count() == 0

        # Hiding `left` in the tree removes exactly its pixels; showing it brings them back.
        row(page, "left").locator("input[type=checkbox]").uncheck()
        wait_js(page, IDLE)
        hidden = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / "left-hidden.png"))
        assert colour_mask(hidden, RED).sum() == 0, "the hidden part's pixels should be gone"
        assert colour_mask(hidden, BLUE).sum() == pytest.approx(blue, rel=0.05), "the other part stays"
        row(page, "left").locator("input[type=checkbox]").check()
        wait_js(page, IDLE)
        assert colour_mask(canvas_pixels(page), RED).sum() == pytest.approx(red, rel=0.05)

        # Hiding the assembly hides both (its parts inherit it, and their boxes follow); showing `left` inside it
        # gives `left` its own value, which wins over its parent's (hierarchical overrides).
        checkbox = {
            name: row(page, name).locator("input[type=checkbox]") for name in ("assembly", "left", "right_group")
        }
        checkbox["assembly"].uncheck()
        wait_js(page, IDLE)
        pixels = canvas_pixels(page)
        assert colour_mask(pixels, RED).sum() == 0 and colour_mask(pixels, BLUE).sum() == 0
        assert not checkbox["left"].is_checked() and not checkbox["right_group"].is_checked()
        checkbox["left"].check()
        wait_js(page, IDLE)
        pixels = canvas_pixels(page)
        assert colour_mask(pixels, RED).sum() == pytest.approx(red, rel=0.05) and colour_mask(pixels, BLUE).sum() == 0
        checkbox["assembly"].check()
        wait_js(page, IDLE)
        pixels = canvas_pixels(page)
        assert colour_mask(pixels, BLUE).sum() == pytest.approx(blue, rel=0.05)

        # A click on the blue cube in the picture picks the leaf `right`: the tree opens `right_group` and selects it.
        ys, xs = np.nonzero(colour_mask(canvas_pixels(page), BLUE))
        box = page.locator("#view").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + float(np.median(xs)), box["y"] + float(np.median(ys)))
        wait_js(page, "document.querySelector('#scene-tree li.selected') !== null")
        wait_js(page, IDLE)
        hit = page.evaluate("() => window.openrrViewer.lastHit")
        assert hit["name"] == "right" and hit["path"][-2:] == ["right_group", "right"], hit
        assert selected_name(page) == "right"
        assert page.evaluate("() => window.openrrViewer.selectedEntity") == hit["entityId"]
        assert row(page, "right").is_visible(), "the tree is opened down to the picked part"
        assert " › ".join(["right_group", "right"]) in page.locator("#hit").inner_text()
        page.screenshot(path=str(tmp_path / "picked-right.png"))

        # Clicking another row moves the selection there (the previous one is cleared).
        row(page, "left").locator(".name").click()
        wait_js(page, "document.querySelector('#scene-tree li.selected .name')?.textContent === 'left'")
        assert page.locator("#scene-tree li.selected").count() == 1
        assert errors == [] and not page.locator("#error").is_visible()
    finally:
        close_viewer(page)


def test_scene_tree_pages_big_groups_and_a_pick_fetches_the_page_of_its_part(
    browser: Any, service: Service, session_id: str, files: dict[str, str]
) -> None:
    errors: list[str] = []
    page = open_model(browser, service, session_id, files["many"], errors)
    try:
        # A pick on the last part, before anything is open: the tree fetches both pages of `grid` to reach it.
        ys, xs = np.nonzero(colour_mask(canvas_pixels(page), RED))
        box = page.locator("#view").bounding_box()
        assert box is not None and len(xs) > 50
        page.mouse.click(box["x"] + float(np.median(xs)), box["y"] + float(np.median(ys)))
        wait_js(page, "document.querySelector('#scene-tree li.selected .name')?.textContent === 'part_149'")
        rows = page.locator("#scene-tree li[data-entity-id]")
        assert rows.count() == 2 + MANY, "the model, its group and every part of both pages"
        assert page.locator("#scene-tree li.more").count() == 0

        assert errors == [] and not page.locator("#error").is_visible()
    finally:
        close_viewer(page)

    # Opened by hand, one page at a time: PAGE_SIZE rows and a "more…" row, then the rest.
    page = open_model(browser, service, session_id, files["many"], errors)
    try:
        row(page, MANY_FILE).locator(".twisty").click()
        row(page, "grid").locator(".twisty").click()
        more = page.locator("#scene-tree li.more button")
        more.wait_for()
        assert more.inner_text() == f"more… (100 of {MANY})"
        assert page.locator("#scene-tree li[data-entity-id]").count() == 2 + 100
        more.click()
        row(page, "part_149").wait_for()
        assert page.locator("#scene-tree li[data-entity-id]").count() == 2 + MANY
        assert page.locator("#scene-tree li.more").count() == 0
        assert errors == [] and not page.locator("#error").is_visible()
    finally:
        close_viewer(page)


def test_material_panel_edits_the_picked_parts_colour(
    browser: Any, service: Service, session_id: str, files: dict[str, str], tmp_path: Path
) -> None:
    errors: list[str] = []
    page = open_model(browser, service, session_id, files["parts"], errors)
    try:
        before = canvas_pixels(page)
        red = colour_mask(before, RED)
        ys, xs = np.nonzero(red)
        box = page.locator("#view").bounding_box()
        assert box is not None and len(xs) > 2000
        page.mouse.click(box["x"] + float(np.median(xs)), box["y"] + float(np.median(ys)))
        wait_js(page, "window.openrrViewer.materials.length === 1")
        material = page.evaluate("() => window.openrrViewer.materials[0]")
        assert material["name"] == "red" and material["unlit"], material
        assert page.locator("#mat-base-color").input_value() == "#ff0000"

        # sRGB (0, 128, 0) from the picker is linear 0.2158 for the API; it shows as (0, 128, 0) again.
        page.locator("#mat-base-color").fill("#008000")
        wait_js(page, "window.openrrViewer.materials[0].baseColor[1] > 0.2")
        wait_js(page, IDLE)
        assert page.evaluate("() => window.openrrViewer.materials[0].baseColor") == pytest.approx(
            [0, 0.2158605, 0, 1], abs=1e-4
        )
        after = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / "left-green.png"))
        assert colour_mask(after, RED).sum() == 0, "no part is red any more"
        green = np.median(after[red], axis=0)  # the median: the selection outline covers a few edge pixels
        assert np.abs(green - [0, 128, 0]).max() < 12, green

        # A refused value shows the server's error and leaves the panel and the picture as they were.
        page.evaluate(
            "() => { const r = document.getElementById('mat-roughness'); r.min = '-5'; r.value = '-2';"
            " r.dispatchEvent(new Event('change')); }"
        )
        wait_js(page, "window.openrrViewer.lastError !== null")
        assert page.evaluate("() => window.openrrViewer.lastError.code") == "BadRequest"
        assert page.locator("#error").is_visible() and "roughness" in page.locator("#error-text").inner_text()
        assert float(page.locator("#mat-roughness").input_value()) == pytest.approx(material["roughness"])
        assert errors == []
    finally:
        close_viewer(page)


def test_environment_and_tone_mapping_controls_change_the_picture(
    browser: Any, service: Service, session_id: str, files: dict[str, str], tmp_path: Path
) -> None:
    """The issue's viewer check: a screenshot after switching environment and tone mapping shows the change."""
    errors: list[str] = []
    page = open_model(browser, service, session_id, files["sphere"], errors)
    try:
        default = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / "default-environment.png"))
        h, w, _ = default.shape
        centre = (slice(h // 2 - 20, h // 2 + 20), slice(w // 2 - 20, w // 2 + 20))
        grey = default[centre].mean(axis=(0, 1))
        assert grey[0] < max(grey[1], grey[2]) + 30, f"the built-in environment is no red sky, got {grey}"

        page.locator("#env-source").select_option("url")
        page.locator("#env-url").fill(files["sky"])
        page.locator("#env-apply").click()
        wait_js(page, "document.getElementById('env-result').classList.contains('ok')")
        wait_js(page, IDLE)
        red_sky = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / "red-environment.png"))
        r, g, b = red_sky[centre].mean(axis=(0, 1))
        assert r > g + 40 and r > b + 40, f"the red sky should light the sphere red, got {(r, g, b)}"

        page.locator("#tone-mapping").select_option("aces")
        wait_js(page, "window.openrrViewer.output.toneMapping === 'aces'")
        wait_js(page, IDLE)
        aces = canvas_pixels(page)
        page.screenshot(path=str(tmp_path / "aces.png"))
        change = np.abs(aces[centre] - red_sky[centre]).max(axis=-1).mean()
        assert change > 8, f"ACES tone mapping should change the sphere's pixels (mean change {change:.1f})"

        # One stop more exposure (the slider counts in EV) brightens it.
        page.locator("#exposure").fill("1")
        wait_js(page, "window.openrrViewer.output.exposure === 2")
        wait_js(page, IDLE)
        brighter = canvas_pixels(page)[centre].mean()
        assert brighter > aces[centre].mean() + 10, (brighter, aces[centre].mean())
        assert page.locator("#exposure-value").inner_text() == "×2.00"

        # Back to the built-in environment, exposure 1 and no tone mapping: the first picture again (within JPEG noise).
        page.locator("#exposure").fill("0")
        wait_js(page, "window.openrrViewer.output.exposure === 1")
        page.locator("#tone-mapping").select_option("none")
        page.locator("#env-source").select_option("default")
        page.locator("#env-apply").click()
        wait_js(page, "window.openrrViewer.output.toneMapping === 'none'")
        wait_js(page, "document.getElementById('env-result').classList.contains('ok')")
        wait_js(page, IDLE)
        assert np.abs(canvas_pixels(page)[centre] - default[centre]).mean() < 4
        assert errors == [] and not page.locator("#error").is_visible()
    finally:
        close_viewer(page)
