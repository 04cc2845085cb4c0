"""Model loading from real files the test writes with trimesh, read from disk and from a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from openrr.model.mesh import ModelData, ModelLoadError, default_material
from tests.local_files import load_model

SECRET = "sig=s3cr3tSignature%2Bxyz"
QUERY = f"?sv=2021-08-06&sr=c&sp=r&{SECRET}"
GREEN = np.array([0, 255, 0, 255], dtype=np.uint8)
PLACEMENT = trimesh.transformations.translation_matrix([10.0, 0.0, 0.0]) @ np.diag([2.0, 2.0, 2.0, 1.0])


def quadrant_texture() -> Image.Image:
    """64×64: red top half, blue bottom half, so that flipped rows or uvs show."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:32, :, 0] = 255
    pixels[32:, :, 2] = 255
    return Image.fromarray(pixels)


def textured_box(material: PBRMaterial | SimpleMaterial) -> trimesh.Trimesh:
    box = trimesh.creation.box()
    uv = box.vertices[:, :2] + 0.5  # x, y in -0.5..0.5 → 0..1
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return box


def write_models(root: Path) -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    sphere.export(root / "sphere.glb")
    # big enough to arrive over HTTP in several chunks, so that progress has steps to show
    trimesh.creation.icosphere(subdivisions=6).export(root / "big.glb", include_normals=True)

    pbr = PBRMaterial(baseColorTexture=quadrant_texture(), baseColorFactor=[255, 255, 255, 255])
    textured_box(pbr).export(root / "textured.glb")

    tinted = textured_box(PBRMaterial(baseColorTexture=quadrant_texture(), baseColorFactor=[255, 255, 255, 128]))
    tinted.visual.vertex_attributes["color"] = np.tile([255, 0, 0, 255], (len(tinted.vertices), 1)).astype(np.uint8)
    tinted.export(root / "tinted.glb")  # COLOR_0 beside TEXCOORD_0 and a half-transparent base colour

    (root / "obj").mkdir()
    simple = SimpleMaterial(image=quadrant_texture(), diffuse=[255, 128, 0, 255])
    textured_box(simple).export(root / "obj" / "box.obj")  # writes material.mtl and material_0.png beside it

    sphere.export(root / "sphere.stl")
    coloured = sphere.copy()
    coloured.visual.vertex_colors = np.tile([255, 0, 0, 128], (len(sphere.vertices), 1)).astype(np.uint8)
    coloured.export(root / "coloured.ply")
    points = np.random.default_rng(7).uniform(-1, 1, (100, 3))
    trimesh.PointCloud(points, colors=np.tile(GREEN, (100, 1))).export(root / "cloud.ply")

    write_ply_cloud_with_normals(root / "normals-ascii.ply", binary=False)
    write_ply_cloud_with_normals(root / "normals-binary.ply", binary=True)

    placed = trimesh.Scene()
    placed.add_geometry(trimesh.creation.box(), transform=PLACEMENT)
    placed.export(root / "placed.glb")
    (root / "gltf").mkdir()
    placed.export(root / "gltf" / "placed.gltf")  # JSON plus external .bin buffers
    embedded = trimesh.exchange.gltf.export_gltf(placed, embed_buffers=True)
    (root / "embedded.gltf").write_bytes(embedded["model.gltf"])

    (root / "nomtl").mkdir()
    (root / "nomtl" / "box.obj").write_bytes((root / "obj" / "box.obj").read_bytes())
    doc = json.loads((root / "gltf" / "placed.gltf").read_text())
    doc["buffers"][0]["uri"] = "missing.bin"
    (root / "gltf" / "broken.gltf").write_text(json.dumps(doc))
    doc["buffers"][0]["uri"] = "http://169.254.169.254/latest/meta-data.bin"
    (root / "gltf" / "elsewhere.gltf").write_text(json.dumps(doc))

    (root / "corrupt.glb").write_bytes(np.random.default_rng(1).bytes(4096))
    glb = (root / "sphere.glb").read_bytes()
    (root / "truncated.glb").write_bytes(glb[: len(glb) // 2])
    (root / "corrupt.gltf").write_text('{"asset": {"version": "2.0"}, "meshes": [')
    (root / "empty.glb").write_bytes(b"")
    (root / "nothing.obj").write_text("# a comment and no geometry\n")
    (root / "model.fbx").write_bytes(b"Kaydara FBX Binary  \x00")
    (root / "points.xyz").write_text("0 0 0\n1 1 1\n")


CLOUD_NORMALS = np.array([[0, 0, 2], [0, 1, 0], [1, 0, 0]], dtype=np.float32)


def write_ply_cloud_with_normals(path: Path, binary: bool) -> None:
    """Three points with normals (one not unit length) and RGB colours, as scanners write them."""
    header = (
        f"ply\nformat {'binary_little_endian' if binary else 'ascii'} 1.0\nelement vertex 3\n"
        + "".join(f"property float {p}\n" for p in ("x", "y", "z", "nx", "ny", "nz"))
        + "".join(f"property uchar {p}\n" for p in ("red", "green", "blue"))
        + "end_header\n"
    )
    rows = [(*np.eye(3)[i], *CLOUD_NORMALS[i], *(np.eye(3, dtype=int)[i] * 255)) for i in range(3)]
    if binary:
        fields = [(p, "<f4") for p in ("x", "y", "z", "nx", "ny", "nz")] + [(p, "u1") for p in ("r", "g", "b")]
        body = np.array(rows, dtype=fields).tobytes()
    else:
        body = "".join(" ".join(f"{v:g}" for v in row) + "\n" for row in rows).encode()
    path.write_bytes(header.encode() + body)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the models folder (the query string is ignored); /slow/ stalls after the headers."""

    requested: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requested.append(self.path)
        if self.path.startswith("/slow/"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"glTF")
            self.wfile.flush()
            time.sleep(3)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up (the timeout test) reset their connection: expected here


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_models(root)
    return root


@pytest.fixture(scope="module")
def server(models: Path) -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(models)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


SOURCES = ["path", "file-url", "http"]


def source(kind: str, models: Path, server: str, name: str) -> str:
    if kind == "path":
        return str(models / name)
    if kind == "file-url":
        return (models / name).as_uri()
    return f"{server}/{name}{QUERY}"


def load_error(src: str, **kwargs: Any) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(src, **kwargs)
    message = str(info.value)
    assert "s3cr3t" not in message and "sig=" not in message, message
    return message


def assert_unit_normals(model: ModelData) -> None:
    for mesh in model.meshes:
        assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", SOURCES)
def test_icosphere_glb(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "sphere.glb"))
    assert model.name == "sphere.glb"
    assert model.triangles == 1280 and model.points == 0 and model.primitives == 1280
    (mesh,) = model.meshes
    assert mesh.positions.dtype == np.float32 and mesh.positions.shape == (642, 3)
    assert mesh.indices is not None and mesh.indices.dtype == np.uint32 and mesh.indices.shape == (1280, 3)
    assert mesh.normals.dtype == np.float32 and mesh.normals.shape == (642, 3)
    assert_unit_normals(model)
    # computed normals of a sphere point outward
    assert np.all(np.einsum("ij,ij->i", mesh.normals, mesh.positions) > 0.9)
    assert mesh.colors.dtype == np.float32 and mesh.colors.shape == (642, 4)
    assert np.all(mesh.colors == 1.0)  # no vertex colour: white
    assert model.materials[mesh.material].base_color_texture is None and not model.images
    assert model.bounds_min == pytest.approx([-1, -1, -1], abs=1e-6)
    assert model.bounds_max == pytest.approx([1, 1, 1], abs=1e-6)
    assert model.bounds_min.dtype == np.float32


@pytest.mark.parametrize("kind", SOURCES)
def test_textured_glb_brings_texture_and_uvs(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "textured.glb"))
    (mesh,) = model.meshes
    texture = model.materials[mesh.material].base_color_texture
    assert texture is not None and texture.tex_coord == 0
    pixels = model.images[texture.image].pixels
    assert pixels.shape == (64, 64, 4) and pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [255, 0, 0, 255]  # row 0 is the top of the image: red
    assert pixels[-1, 0].tolist() == [0, 0, 255, 255]
    assert mesh.uvs is not None and mesh.uvs.shape == (len(mesh.positions), 2) and mesh.uvs.dtype == np.float32
    # uvs were written as (x + 0.5, y + 0.5) in trimesh's bottom-up convention; they arrive top-down
    expected = np.column_stack((mesh.positions[:, 0] + 0.5, 0.5 - mesh.positions[:, 1]))
    assert mesh.uvs == pytest.approx(expected, abs=1e-6)
    assert np.all(mesh.colors == 1.0)
    assert model.triangles == 12


def test_gltf_materials_say_which_meshes_are_single_sided(tmp_path: Path) -> None:
    """glTF's materials are single-sided unless they say `doubleSided: true`, and so is a mesh without a material
    (glTF's default material); formats that carry no such flag load double-sided, as ARR's default sidedness."""
    plain = trimesh.creation.box()
    two_sided = trimesh.creation.box()
    two_sided.visual = trimesh.visual.TextureVisuals(material=PBRMaterial(doubleSided=True))  # type: ignore[no-untyped-call]
    one_sided = trimesh.creation.box()
    one_sided.visual = trimesh.visual.TextureVisuals(material=PBRMaterial(doubleSided=False))  # type: ignore[no-untyped-call]
    scene = trimesh.Scene({"plain": plain, "two": two_sided, "one": one_sided})
    scene.export(tmp_path / "sides.glb")
    loaded = load_model(str(tmp_path / "sides.glb"))
    sides = sorted(loaded.materials[mesh.material].double_sided for mesh in loaded.meshes)
    assert sides == [False, False, True], "only the doubleSided material's mesh is double-sided"
    plain.export(tmp_path / "box.stl")
    plain.export(tmp_path / "box.ply")
    for name in ("box.stl", "box.ply"):
        model = load_model(str(tmp_path / name))
        assert all(model.materials[mesh.material].double_sided for mesh in model.meshes), name


def test_vertex_colours_stay_apart_from_the_base_colour(models: Path) -> None:
    """COLOR_0 is the mesh's, the base colour factor the material's: the renderer multiplies them."""
    model = load_model(str(models / "tinted.glb"))
    (mesh,) = model.meshes
    material = model.materials[mesh.material]
    assert material.base_color_texture is not None and mesh.uvs is not None
    assert material.base_color == pytest.approx((1.0, 1.0, 1.0, 128 / 255), abs=1e-6)
    assert mesh.colors == pytest.approx(np.tile([1.0, 0.0, 0.0, 1.0], (len(mesh.positions), 1)), abs=1e-6)


@pytest.mark.parametrize("kind", SOURCES)
def test_obj_with_mtl_and_texture_beside_it(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "obj/box.obj"))
    (mesh,) = model.meshes
    assert model.triangles == 12
    material = model.materials[mesh.material]
    assert material.base_color_texture is not None
    pixels = model.images[material.base_color_texture.image].pixels
    assert pixels.shape == (64, 64, 4) and pixels[0, 0].tolist() == [255, 0, 0, 255]
    assert mesh.uvs is not None
    assert np.all(mesh.colors == 1.0)  # no vertex colours; Kd is the material's
    # the MTL's Kd (255, 128, 0), an sRGB display colour, made linear: 128/255 -> 0.2158
    assert material.base_color == pytest.approx((1.0, 0.21586, 0.0, 1.0), abs=1e-4)
    assert material.double_sided and material.metallic == 0.0


@pytest.mark.parametrize("kind", ["path", "http"])
def test_obj_whose_mtl_is_missing_is_plain_white(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "nomtl/box.obj"))
    (mesh,) = model.meshes
    assert not model.images  # not trimesh's 2×2 grey stand-in
    # usemtl's name is kept; everything else is the default white dielectric
    assert replace(model.materials[mesh.material], name="default") == default_material()
    assert np.all(mesh.colors == 1.0)


@pytest.mark.parametrize("kind", SOURCES)
def test_stl(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "sphere.stl"))
    assert model.triangles == 1280
    assert_unit_normals(model)
    assert np.all(model.meshes[0].colors == 1.0)


@pytest.mark.parametrize("kind", SOURCES)
def test_ply_mesh_with_vertex_colours(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "coloured.ply"))
    (mesh,) = model.meshes
    assert model.triangles == 1280 and mesh.indices is not None
    assert mesh.colors == pytest.approx(np.tile([1.0, 0.0, 0.0, 128 / 255], (len(mesh.positions), 1)), abs=1e-6)
    assert_unit_normals(model)


@pytest.mark.parametrize("kind", SOURCES)
def test_ply_point_cloud_with_colours(kind: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, "cloud.ply"))
    (mesh,) = model.meshes
    assert mesh.indices is None and mesh.uvs is None and not model.images
    assert model.points == 100 and model.triangles == 0 and model.primitives == 100
    assert mesh.positions.shape == (100, 3) and mesh.normals.shape == (100, 3)
    assert np.all(mesh.colors == [0.0, 1.0, 0.0, 1.0])
    expected = np.random.default_rng(7).uniform(-1, 1, (100, 3))
    assert model.bounds_min == pytest.approx(expected.min(axis=0), abs=1e-6)
    assert model.bounds_max == pytest.approx(expected.max(axis=0), abs=1e-6)


@pytest.mark.parametrize("name", ["normals-ascii.ply", "normals-binary.ply"])
def test_ply_point_cloud_keeps_its_normals(name: str, models: Path) -> None:
    (mesh,) = load_model(str(models / name)).meshes
    assert mesh.indices is None
    assert mesh.normals == pytest.approx(np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))  # normalised
    assert mesh.colors == pytest.approx(np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]]))


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("path", "placed.glb"),
        ("http", "placed.glb"),
        ("path", "gltf/placed.gltf"),
        ("http", "gltf/placed.gltf"),  # external buffers fetched relative to the URL
        ("path", "embedded.gltf"),
        ("http", "embedded.gltf"),
    ],
)
def test_node_transforms_are_applied(kind: str, name: str, models: Path, server: str) -> None:
    model = load_model(source(kind, models, server, name))
    # a unit box, scaled 2× and moved 10 along x by its node
    assert model.bounds_min == pytest.approx([9, -1, -1], abs=1e-5)
    assert model.bounds_max == pytest.approx([11, 1, 1], abs=1e-5)
    (mesh,) = model.meshes
    assert_unit_normals(model)
    # normals still point away from the box centre after the transform
    assert np.all(np.einsum("ij,ij->i", mesh.normals, mesh.positions - [10, 0, 0]) > 0)


def test_referenced_files_are_fetched_with_the_sas_query(models: Path, server: str) -> None:
    """A container SAS signs every blob beside the model, so its buffers and textures get the same query."""
    doc = json.loads((models / "gltf" / "placed.gltf").read_text())
    buffers = [b["uri"] for b in doc["buffers"]]
    assert buffers and all(not uri.startswith("data:") for uri in buffers)
    load_model(f"{server}/gltf/placed.gltf{QUERY}")
    assert all(f"/gltf/{uri}{QUERY}" in QuietHandler.requested for uri in buffers), QuietHandler.requested
    load_model(f"{server}/obj/box.obj{QUERY}")
    assert f"/obj/material.mtl{QUERY}" in QuietHandler.requested
    assert f"/obj/material_0.png{QUERY}" in QuietHandler.requested


def test_progress_is_monotonic_and_ends_at_one(models: Path, server: str) -> None:
    seen: list[float] = []
    model = load_model(f"{server}/big.glb{QUERY}", seen.append)
    assert model.triangles == 81920
    assert seen == sorted(seen) and seen[-1] == 1.0 and seen[0] >= 0.0
    assert len([v for v in seen if 0.0 < v < 1.0]) >= 2, seen  # steps while downloading, not only 0 and 1

    local: list[float] = []
    load_model(str(models / "big.glb"), local.append)
    assert local == sorted(local) and local[-1] == 1.0


# -- errors ----------------------------------------------------------------------------------------------


def test_http_404_names_status_and_url_without_query(server: str) -> None:
    message = load_error(f"{server}/missing/model.glb{QUERY}")
    assert "404" in message and f"{server}/missing/model.glb" in message


def test_unreachable_port(server: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = load_error(f"http://127.0.0.1:{port}/model.glb{QUERY}", timeout_s=5)
    assert "cannot connect" in message and f"127.0.0.1:{port}/model.glb" in message


def test_stalled_download_times_out(server: str) -> None:
    started = time.monotonic()
    message = load_error(f"{server}/slow/model.glb{QUERY}", timeout_s=0.5)
    assert "timed out" in message and "/slow/model.glb" in message
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("kind", SOURCES)
def test_corrupt_glb(kind: str, models: Path, server: str) -> None:
    message = load_error(source(kind, models, server, "corrupt.glb"))
    assert "cannot parse" in message and "GLB" in message and "corrupt.glb" in message


@pytest.mark.parametrize("kind", ["path", "http"])
def test_truncated_glb_gives_the_parser_reason(kind: str, models: Path, server: str) -> None:
    message = load_error(source(kind, models, server, "truncated.glb"))
    whole = (models / "sphere.glb").stat().st_size
    assert message.endswith(f"truncated.glb as GLB: the header says {whole} bytes, the file has {whole // 2}"), message
    assert message.startswith("cannot parse ")


def test_missing_gltf_buffer_over_http(server: str) -> None:
    message = load_error(f"{server}/gltf/broken.gltf{QUERY}")
    assert "404" in message and f"{server}/gltf/missing.bin" in message


@pytest.mark.parametrize("kind", ["path", "http"])
def test_missing_gltf_buffer_on_disk(kind: str, models: Path, server: str) -> None:
    assert "missing.bin" in load_error(source(kind, models, server, "gltf/broken.gltf"))


def test_gltf_cannot_send_the_server_to_another_host(server: str) -> None:
    message = load_error(f"{server}/gltf/elsewhere.gltf{QUERY}")
    assert "another host" in message and "169.254.169.254" in message


@pytest.mark.parametrize("kind", ["path", "http"])
def test_corrupt_gltf_json(kind: str, models: Path, server: str) -> None:
    message = load_error(source(kind, models, server, "corrupt.gltf"))
    assert "cannot parse" in message and "invalid JSON" in message


@pytest.mark.parametrize("name", ["model.fbx", "points.xyz"])
@pytest.mark.parametrize("kind", SOURCES)
def test_unsupported_extension(kind: str, name: str, models: Path, server: str) -> None:
    message = load_error(source(kind, models, server, name))
    suffix = name.rsplit(".", 1)[1]
    assert "unsupported" in message and f".{suffix}" in message
    assert all(ext in message for ext in (".glb", ".gltf", ".obj", ".ply", ".stl"))


def test_no_extension(server: str) -> None:
    assert "(no extension)" in load_error(f"{server}/container/blob{QUERY}")


@pytest.mark.parametrize("kind", SOURCES)
def test_empty_file(kind: str, models: Path, server: str) -> None:
    message = load_error(source(kind, models, server, "empty.glb"))
    assert "empty" in message and "empty.glb" in message


@pytest.mark.parametrize("kind", ["path", "http"])
def test_file_without_geometry(kind: str, models: Path, server: str) -> None:
    assert "no geometry" in load_error(source(kind, models, server, "nothing.obj"))


def test_missing_local_file(tmp_path: Path) -> None:
    message = load_error(str(tmp_path / "nowhere.glb"))
    assert message == f"'{tmp_path / 'nowhere.glb'}' is not a file in this account's local storage"


@pytest.mark.parametrize("kind", ["path", "http"])
def test_size_limit(kind: str, models: Path, server: str) -> None:
    message = load_error(source(kind, models, server, "big.glb"), max_bytes=100_000)
    assert "limit" in message and "100000" in message
