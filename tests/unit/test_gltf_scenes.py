"""The reference scenes' generator (tests/gltf_scenes.py) writes valid glTF: read back with pygltflib, an independent
reader, and checked against the spec's structural rules; each scene's camera frames all of it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pygltflib  # type: ignore[import-untyped]
import pytest
from PIL import Image

from tests.gltf_scenes import (
    ENVIRONMENT_FILE,
    PICTURE,
    SCENES,
    GltfScene,
    environment_equirect,
    srgb_encode,
    write_scenes,
)

COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
COMPONENT_DTYPE = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GltfScene]]:
    root = tmp_path_factory.mktemp("scenes")
    return root, write_scenes(root)


def _accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    size = COMPONENT_BYTES[accessor.componentType]
    width = WIDTH[accessor.type]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    assert start % size == 0, "accessor data must be aligned to its component size"
    assert start + accessor.count * size * width <= view.byteOffset + view.byteLength <= len(blob)
    data = np.frombuffer(blob, COMPONENT_DTYPE[accessor.componentType], accessor.count * width, start)
    return data.reshape(accessor.count, width) if width > 1 else data


def _world(gltf: pygltflib.GLTF2, node: Any) -> np.ndarray:
    """A root node's TRS (the scenes have no children) as a 4×4 matrix."""
    x, y, z, w = node.rotation or (0, 0, 0, 1)
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(node.scale or (1, 1, 1))
    matrix[:3, 3] = node.translation or (0, 0, 0)
    return matrix


@pytest.mark.parametrize("name", list(SCENES))
def test_each_scene_is_valid_gltf_framed_by_its_camera(written: tuple[Path, list[GltfScene]], name: str) -> None:
    root, scenes = written
    scene = next(s for s in scenes if s.name == name)
    gltf = pygltflib.GLTF2.load(str(root / scene.file))
    blob = gltf.binary_blob()
    assert gltf.asset.version == "2.0" and blob is not None
    assert gltf.buffers[0].byteLength == len(blob)
    used = set(gltf.extensionsUsed or [])
    for material in gltf.materials:
        assert set(material.extensions or {}) <= used, "every material extension is declared in extensionsUsed"
        pbr = material.pbrMetallicRoughness
        for info in (pbr.baseColorTexture, material.emissiveTexture, material.normalTexture):
            if info is not None:
                assert 0 <= info.index < len(gltf.textures)
                assert set(info.extensions or {}) <= used
    for texture in gltf.textures:
        assert texture.sampler is None or 0 <= texture.sampler < len(gltf.samplers)
        image = gltf.images[texture.source]
        view = gltf.bufferViews[image.bufferView]
        png = blob[view.byteOffset : view.byteOffset + view.byteLength]
        assert image.mimeType == "image/png" and Image.open(io.BytesIO(png)).format == "PNG"

    corners = []
    for node_index in gltf.scenes[gltf.scene].nodes:
        node = gltf.nodes[node_index]
        for primitive in gltf.meshes[node.mesh].primitives:
            assert primitive.material is not None and 0 <= primitive.material < len(gltf.materials)
            attributes = {k: v for k, v in vars(primitive.attributes).items() if v is not None}
            counts = {gltf.accessors[i].count for i in attributes.values()}
            assert len(counts) == 1, f"every attribute of a primitive has one count, got {counts}"
            positions = _accessor(gltf, blob, attributes["POSITION"])
            position = gltf.accessors[attributes["POSITION"]]
            assert np.allclose(positions.min(axis=0), position.min) and np.allclose(positions.max(axis=0), position.max)
            indices = _accessor(gltf, blob, primitive.indices)
            assert len(indices) % 3 == 0 and indices.max() < len(positions)
            if "NORMAL" in attributes:
                assert np.allclose(np.linalg.norm(_accessor(gltf, blob, attributes["NORMAL"]), axis=1), 1, atol=1e-5)
            placed = _world(gltf, node) @ np.c_[positions, np.ones(len(positions))].T
            corners.append(placed[:3].T)

    # Every vertex inside the camera's frustum (no scene is cut by the frame), and the scene fills a fair part of it.
    x, y, depth = scene.view.ndc(np.concatenate(corners), PICTURE[0] / PICTURE[1])
    assert (depth > scene.view.near).all() and (depth < scene.view.far).all()
    assert (np.abs(x) < 1).all() and (np.abs(y) < 1).all(), f"{name}: part of the scene is out of the picture"
    assert (x.max() - x.min()) * (y.max() - y.min()) > 0.5, f"{name}: the scene should fill a fair part of the picture"


def test_patches_expect_the_srgb_encoding_of_their_linear_colour() -> None:
    # The example: linear (0.089, 0.179, 0.640) shows as about (84, 117, 209).
    assert [round(srgb_encode(c)) for c in (0.089, 0.179, 0.640)] == pytest.approx([84, 117, 209], abs=1)
    assert srgb_encode(0.5) == pytest.approx(187.5, abs=0.1) and srgb_encode(1.0) == pytest.approx(255.0)


def test_the_environment_file_holds_the_environment(written: tuple[Path, list[GltfScene]]) -> None:
    root, _ = written
    read = cv2.imread(str(root / ENVIRONMENT_FILE), cv2.IMREAD_UNCHANGED)
    assert read is not None
    hdr = read[..., ::-1]
    source = environment_equirect()
    assert hdr.shape == source.shape == (128, 256, 3)
    # RGBE keeps 8 bits of mantissa per pixel: within 1 % of the brightest channel.
    assert (np.abs(hdr - source).max(axis=-1) <= 0.01 * source.max(axis=-1) + 1e-6).all()
    assert source[0].mean() > source[-1].mean(), "the top row is the sky (three.js's equirect orientation)"
