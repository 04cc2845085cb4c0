"""The converter on real files made here: every input format, the settings file, and every way a conversion fails."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import laspy  # type: ignore[import-untyped]
import numpy as np
import pye57  # type: ignore[import-untyped]
import pytest
import trimesh
from PIL import Image

from openrr.conversions.converter import ConversionOutcome, convert
from openrr.conversions.fbx_properties import read_fbx_properties
from openrr.model.arrasset import read_metadata
from openrr.model.mesh import ModelData
from openrr.model.scene_graph import rest_worlds
from tests.gltf_scenes import _Gltf
from tests.local_files import load_model

POINTS = np.random.default_rng(5).uniform(-1.0, 1.0, size=(2000, 3))


def run(root: Path, relative: str, **settings: Any) -> tuple[ConversionOutcome, list[dict[str, Any]], Path]:
    """Convert `root/relative` (with `settings` as its ConversionSettings.json, when given) into root/out."""
    if settings:
        model = Path(relative)
        (root / model.parent / f"{model.stem}.ConversionSettings.json").write_text(json.dumps(settings))
    out = root / "out"
    progress: list[float] = []
    outcome = convert(root, relative, out, "model.arrAsset", progress.append)
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    assert outcome.output_files[-1] == "model.result.json"
    result = json.loads((out / "model.result.json").read_text())
    # nothing half-written, ever: no temporary files stay behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    return outcome, result, out


def succeeded(root: Path, relative: str, **settings: Any) -> tuple[ModelData, list[dict[str, Any]], dict[str, Any]]:
    outcome, result, out = run(root, relative, **settings)
    assert outcome.succeeded, outcome.error_message
    assert outcome.output_files == ["model.arrAsset", "model.info.json", "model.result.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(outcome.output_files)
    info = json.loads((out / "model.info.json").read_text())
    return load_model(str(out / "model.arrAsset")), result, info


def failed(root: Path, relative: str, code: str = "ConversionProcessFailed", **settings: Any) -> str:
    outcome, result, out = run(root, relative, **settings)
    assert not outcome.succeeded and outcome.error_code == code
    assert outcome.output_files == ["model.result.json"]
    assert [p.name for p in out.iterdir()] == ["model.result.json"]  # no asset, no info
    assert list(result[0]) == ["conversionId"] and result[-1] == {"result": "failed"}
    errors = [entry for entry in result if "error" in entry]
    assert len(errors) == 1 and errors[0]["error"] == code
    assert errors[0]["details"]["message"] == outcome.error_message
    assert outcome.error_message is not None and str(root) not in outcome.error_message  # no work paths
    return outcome.error_message


def base_texture(model: ModelData, mesh: int = 0) -> np.ndarray | None:
    """The base-colour image of a mesh's material, or None."""
    ref = model.materials[model.meshes[mesh].material].base_color_texture
    return None if ref is None else model.images[ref.image].pixels


@pytest.fixture
def sphere_glb(tmp_path: Path) -> Path:
    trimesh.creation.icosphere(subdivisions=3, radius=1.0).export(tmp_path / "sphere.glb")
    return tmp_path


def textured_box(folder: Path) -> None:
    """box.obj + material.mtl + material_0.png, as trimesh writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    uv = np.c_[box.vertices[:, 0] + 0.5, box.vertices[:, 1] / 2 + 0.5]
    image = Image.new("RGB", (8, 8), (200, 30, 30))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.SimpleMaterial(image=image))
    box.export(folder / "box.obj")


# --- formats ------------------------------------------------------------------------------------------------


def test_glb_converts_to_an_asset_that_loads_like_its_source(sphere_glb: Path) -> None:
    asset, result, info = succeeded(sphere_glb, "sphere.glb")
    source = load_model(str(sphere_glb / "sphere.glb"))
    assert asset.triangles == source.triangles == 1280
    np.testing.assert_allclose(asset.bounds_min, source.bounds_min)
    np.testing.assert_allclose(asset.bounds_max, source.bounds_max)
    assert list(result[0]) == ["conversionId"] and result[1:] == [{"result": "succeeded"}]
    assert set(info) == {
        "files",
        "conversionSettings",
        "inputInfo",
        "inputStatistics",
        "outputInfo",
        "outputStatistics",
    }
    assert info["files"] == {"input": "sphere.glb", "output": "model.arrAsset"}
    assert info["inputInfo"]["sourceAssetFormat"] == "GLB" and info["inputInfo"]["sourceAssetFormatVersion"] == "2.0"
    assert info["inputStatistics"]["numFaces"] == 1280 and info["inputStatistics"]["numMeshes"] == 1
    assert info["outputStatistics"]["boundingBox"] == {"min": [-1.0, -1.0, -1.0], "max": [1.0, 1.0, 1.0]}
    assert len(info["outputInfo"]["conversionHash"]) == 32


def test_obj_with_mtl_and_texture(tmp_path: Path) -> None:
    textured_box(tmp_path / "models")
    asset, result, info = succeeded(tmp_path, "models/box.obj")
    assert result[-1] == {"result": "succeeded"} and asset.triangles == 12
    texture = base_texture(asset)
    assert texture is not None and asset.meshes[0].uvs is not None
    assert tuple(texture[0, 0]) == (200, 30, 30, 255)
    np.testing.assert_allclose(asset.bounds_max, [0.5, 1.0, 1.5])
    assert info["inputInfo"]["sourceAssetFormat"] == "OBJ"


def test_missing_texture_is_warning_4004_and_success_with_warnings(tmp_path: Path) -> None:
    textured_box(tmp_path / "models")
    (tmp_path / "models" / "material_0.png").unlink()
    outcome, result, _ = run(tmp_path, "models/box.obj")
    assert outcome.succeeded and len(outcome.warnings) == 1
    assert "material_0.png" in outcome.warnings[0] and "models/box.obj" in outcome.warnings[0]
    warning = result[1]
    assert warning["warning"] == "4004" and warning["title"] == "Missing texture"
    assert warning["details"]["texture"] == "material_0.png"
    assert result[-1] == {"result": "succeeded with warnings"}
    assert base_texture(load_model(str(tmp_path / "out" / "model.arrAsset"))) is None


def test_ply_point_cloud(tmp_path: Path) -> None:
    colors = np.tile(np.array([[255, 128, 0, 255]], dtype=np.uint8), (len(POINTS), 1))
    trimesh.PointCloud(POINTS, colors=colors).export(tmp_path / "cloud.ply")
    asset, _, info = succeeded(tmp_path, "cloud.ply")
    assert (asset.points, asset.triangles) == (len(POINTS), 0) and asset.meshes[0].indices is None
    np.testing.assert_allclose(asset.bounds_min, POINTS.min(axis=0), atol=1e-6)
    # PLY colours are taken as gamma-encoded by default (the reference's table): 128 → 0.216 linear
    np.testing.assert_allclose(asset.meshes[0].colors[0], [1.0, 0.2158605, 0.0, 1.0], atol=1 / 255)
    assert info["inputStatistics"]["numPoints"] == len(POINTS)


def test_point_clouds_warn_about_settings_they_ignore(tmp_path: Path) -> None:
    trimesh.PointCloud(POINTS).export(tmp_path / "cloud.ply")
    outcome, result, _ = run(tmp_path, "cloud.ply", scaling=2.0, unlitMaterials=True)
    assert outcome.succeeded
    assert result[1]["warning"] == "SettingIgnored" and result[1]["details"]["settings"] == ["unlitMaterials"]
    asset = load_model(str(tmp_path / "out" / "model.arrAsset"))
    assert asset.bounds_max.max() > 1.9  # scaling still applies
    assert not asset.materials[0].unlit  # unlitMaterials does not


def test_stl(tmp_path: Path) -> None:
    trimesh.creation.box(extents=(2.0, 4.0, 6.0)).export(tmp_path / "part.stl")
    asset, _, info = succeeded(tmp_path, "part.stl")
    assert asset.triangles == 12 and info["inputInfo"]["sourceAssetFormat"] == "STL"
    np.testing.assert_allclose(asset.bounds_max, [1.0, 2.0, 3.0])


def test_xyz_with_colours(tmp_path: Path) -> None:
    rows = np.c_[POINTS, np.tile([128, 255, 0], (len(POINTS), 1))]
    np.savetxt(tmp_path / "scan.xyz", rows, fmt="%.6f")
    asset, _, _ = succeeded(tmp_path, "scan.xyz")
    assert asset.points == len(POINTS)
    np.testing.assert_allclose(asset.meshes[0].positions, POINTS, atol=1e-6)
    np.testing.assert_allclose(asset.meshes[0].colors[0], [0.2158605, 1.0, 0.0, 1.0], atol=1 / 255)
    # with gammaToLinearVertex off the colours are taken as they are
    shutil.rmtree(tmp_path / "out")
    asset, _, _ = succeeded(tmp_path, "scan.xyz", gammaToLinearVertex=False)
    np.testing.assert_allclose(asset.meshes[0].colors[0], [128 / 255, 1.0, 0.0, 1.0], atol=1 / 255)


def write_las(path: Path, offset: tuple[float, float, float]) -> np.ndarray:
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array(offset)
    las = laspy.LasData(header)
    positions: np.ndarray = POINTS * 100.0 + np.asarray(offset, dtype=np.float64)
    las.x, las.y, las.z = positions.T
    las.red = np.full(len(POINTS), 65535, np.uint16)
    las.green = np.zeros(len(POINTS), np.uint16)
    las.blue = np.zeros(len(POINTS), np.uint16)
    las.write(str(path))
    return positions


@pytest.mark.parametrize("suffix", ["las", "laz"])
def test_las_and_laz_recentered(tmp_path: Path, suffix: str) -> None:
    # georeferenced scans sit far from the origin: recentering must happen before float32
    positions = write_las(tmp_path / f"site.{suffix}", (500_000.0, 5_000_000.0, 300.0))
    asset, _, info = succeeded(tmp_path, f"site.{suffix}", recenterToOrigin=True)
    assert asset.points == len(POINTS)
    centre = (positions.min(axis=0) + positions.max(axis=0)) / 2
    # LAS stores millimetres (scale 0.001 here)
    np.testing.assert_allclose(info["outputStatistics"]["recenteringOffset"], -centre, atol=1e-3)
    np.testing.assert_allclose((asset.bounds_min + asset.bounds_max) / 2, 0.0, atol=1e-3)
    # millimetre precision survives: the points are stored relative to the centre
    np.testing.assert_allclose(asset.meshes[0].positions, positions - centre, atol=2e-3)
    assert (
        info["inputInfo"]["sourceAssetFormat"] == suffix.upper()
        and info["inputInfo"]["sourceAssetFormatVersion"] == "1.2"
    )
    np.testing.assert_allclose(asset.meshes[0].colors[0], [1.0, 0.0, 0.0, 1.0])


def test_e57(tmp_path: Path) -> None:
    e57 = pye57.E57(str(tmp_path / "scan.e57"), mode="w")
    e57.write_scan_raw(
        {
            "cartesianX": POINTS[:, 0],
            "cartesianY": POINTS[:, 1],
            "cartesianZ": POINTS[:, 2],
            "colorRed": np.full(len(POINTS), 255, np.uint8),
            "colorGreen": np.zeros(len(POINTS), np.uint8),
            "colorBlue": np.zeros(len(POINTS), np.uint8),
        }
    )
    e57.close()
    asset, _, info = succeeded(tmp_path, "scan.e57")
    assert asset.points == len(POINTS) and info["inputInfo"]["sourceAssetFormat"] == "E57"
    np.testing.assert_allclose(asset.meshes[0].positions, POINTS, atol=1e-6)
    np.testing.assert_allclose(asset.meshes[0].colors[0], [1.0, 0.0, 0.0, 1.0])


_NO_ASSIMP = pytest.mark.skipif(shutil.which("assimp") is None, reason="needs Debian's assimp-utils")


def needs_assimp(test: Callable[..., None]) -> Callable[..., None]:
    """FBX goes through the assimp tool, a process of its own: such a test is e2e, though it lives in tests/unit."""
    marked: Callable[..., None] = pytest.mark.e2e(_NO_ASSIMP(test))
    return marked


@needs_assimp
def test_fbx_through_assimp(sphere_glb: Path) -> None:
    # assimp 5.2 cannot read back its own binary FBX; its ASCII FBX is a real FBX 7.5 file
    subprocess.run(
        ["assimp", "export", "sphere.glb", "sphere.fbx", "-ffbxa"], cwd=sphere_glb, check=True, capture_output=True
    )
    asset, _, info = succeeded(sphere_glb, "sphere.fbx")
    assert asset.triangles == 1280
    np.testing.assert_allclose(asset.bounds_min, [-1.0, -1.0, -1.0], atol=1e-6)
    assert info["inputInfo"]["sourceAssetFormat"] == "FBX" and info["inputInfo"]["sourceAssetFormatVersion"] == "7500"
    assert info["conversionSettings"]["gammaToLinearMaterial"] is True  # FBX's default


@needs_assimp
def test_fbx_textures_are_found_beside_it(tmp_path: Path) -> None:
    textured_box(tmp_path / "work")
    subprocess.run(
        ["assimp", "export", "box.obj", "box.fbx", "-ffbxa"], cwd=tmp_path / "work", check=True, capture_output=True
    )
    (tmp_path / "models").mkdir()
    for name in ("box.fbx", "material_0.png"):
        (tmp_path / "work" / name).rename(tmp_path / "models" / name)
    asset, result, _ = succeeded(tmp_path, "models/box.fbx")
    texture = base_texture(asset)
    assert result[-1] == {"result": "succeeded"} and texture is not None
    # the texture as it is: assimp's second, specular-glossiness description of the material would wash it out
    assert tuple(texture[0, 0]) == (200, 30, 30, 255)
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "models" / "material_0.png").unlink()
    outcome, result, _ = run(tmp_path, "models/box.fbx")
    assert outcome.succeeded and result[1]["warning"] == "4004" and result[1]["details"]["texture"] == "material_0.png"


@needs_assimp
def test_corrupt_fbx_fails(tmp_path: Path) -> None:
    (tmp_path / "broken.fbx").write_bytes(b"Kaydara FBX Binary  \x00" + b"\xff" * 200)
    assert "cannot parse broken.fbx as FBX" in failed(tmp_path, "broken.fbx")


def test_fbx_without_assimp_is_the_servers_fault(sphere_glb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (sphere_glb / "sphere.fbx").write_bytes(b"; FBX 7.5.0 project file\n")
    monkeypatch.setenv("PATH", str(sphere_glb))  # a PATH with no assimp on it
    message = failed(sphere_glb, "sphere.fbx", code="InternalServerError")
    assert "assimp-utils" in message and "sphere.fbx" in message


# --- settings -----------------------------------------------------------------------------------------------


def test_scaling_doubles_the_bounds(sphere_glb: Path) -> None:
    asset, _, info = succeeded(sphere_glb, "sphere.glb", scaling=2.0)
    np.testing.assert_allclose(asset.bounds_max, [2.0, 2.0, 2.0], atol=1e-6)
    assert info["conversionSettings"]["scaling"] == 2.0


def test_recenter_puts_the_centre_at_the_origin(tmp_path: Path) -> None:
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).apply_translation([10.0, -4.0, 7.0]).export(tmp_path / "box.glb")
    asset, _, info = succeeded(tmp_path, "box.glb", recenterToOrigin=True)
    np.testing.assert_allclose(asset.bounds_min, [-0.5, -1.0, -1.5], atol=1e-6)
    np.testing.assert_allclose(asset.bounds_max, [0.5, 1.0, 1.5], atol=1e-6)
    assert info["outputStatistics"]["recenteringOffset"] == [-10.0, 4.0, -7.0]


@pytest.mark.parametrize("axis", [["+x", "+z", "-y"], ["+x", "+z", "+y"]])
def test_axis_remap_keeps_triangles_facing_out(tmp_path: Path, axis: list[str]) -> None:
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    box.export(tmp_path / "box.glb")
    asset, _, _ = succeeded(tmp_path, "box.glb", axis=axis)
    # y and z swap places: the box is 3 tall and 2 deep now
    np.testing.assert_allclose(asset.bounds_max, [0.5, 1.5, 1.0], atol=1e-6)
    mesh = asset.meshes[0]
    assert mesh.indices is not None
    a, b, c = (mesh.positions[mesh.indices[:, k]] for k in range(3))
    facing = np.cross(b - a, c - a)
    centroids = (a + b + c) / 3
    # ["+x", "+z", "+y"] mirrors the model: the converter must swap two corners to keep the winding
    assert np.all(np.einsum("ij,ij->i", facing, centroids) > 0)
    assert np.all(np.einsum("ij,ij->i", mesh.normals, mesh.positions) > 0)


def test_gamma_to_linear_material(tmp_path: Path) -> None:
    ball = trimesh.creation.icosphere(subdivisions=1)
    ball.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[128, 128, 128, 255])
    )
    ball.export(tmp_path / "ball.glb")
    plain, _, _ = succeeded(tmp_path, "ball.glb")
    np.testing.assert_allclose(plain.materials[0].base_color[:3], 128 / 255, atol=1e-6)
    shutil.rmtree(tmp_path / "out")
    linear, _, _ = succeeded(tmp_path, "ball.glb", gammaToLinearMaterial=True)
    np.testing.assert_allclose(linear.materials[0].base_color, [0.2158605, 0.2158605, 0.2158605, 1.0], atol=1e-6)
    # the base colour is the material's, no longer baked into the vertex colours
    np.testing.assert_array_equal(linear.meshes[0].colors, 1.0)


def test_sidedness_and_unlit_reach_the_asset(tmp_path: Path) -> None:
    trimesh.creation.icosphere(subdivisions=1).export(tmp_path / "ball.stl")
    asset, _, _ = succeeded(tmp_path, "ball.stl")
    # STL says nothing about sidedness: ARR's default, double-sided
    assert asset.materials[0].double_sided and not asset.materials[0].unlit
    shutil.rmtree(tmp_path / "out")
    settings = {"opaqueMaterialDefaultSidedness": "SingleSided", "unlitMaterials": True, "sceneGraphMode": "static"}
    asset, _, info = succeeded(tmp_path, "ball.stl", **settings)
    assert not asset.materials[0].double_sided and asset.materials[0].unlit
    assert asset.scene_graph_mode == "static"
    assert info["conversionSettings"]["sceneGraphMode"] == "static"
    metadata = read_metadata((tmp_path / "out" / "model.arrAsset").read_bytes())
    assert metadata["settings"]["sceneGraphMode"] == "static" and metadata["source"] == "ball.stl"


def test_gltf_materials_keep_their_own_sidedness(tmp_path: Path) -> None:
    ball = trimesh.creation.icosphere(subdivisions=1)
    ball.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[200, 100, 50, 255], doubleSided=False)
    )
    ball.export(tmp_path / "ball.glb")
    # the glTF file says single-sided: the setting is for materials whose format says nothing
    asset, _, _ = succeeded(tmp_path, "ball.glb", opaqueMaterialDefaultSidedness="DoubleSided")
    assert not asset.materials[0].double_sided


def test_legacy_settings_file_is_used(sphere_glb: Path) -> None:
    (sphere_glb / "conversionSettings.json").write_text('{"scaling": 3}')
    asset, _, _ = succeeded(sphere_glb, "sphere.glb")
    np.testing.assert_allclose(asset.bounds_max, [3.0, 3.0, 3.0], atol=1e-6)


def test_unknown_settings_key_fails_naming_it(sphere_glb: Path) -> None:
    message = failed(sphere_glb, "sphere.glb", scaling=2.0, recenterToOrgin=True)
    assert "unknown setting 'recenterToOrgin'" in message and "sphere.ConversionSettings.json" in message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"scaling": -1}, "'scaling': Input should be greater than 0"),
        ({"scaling": "2"}, "'scaling': Input should be a valid number"),
        ({"recenterToOrigin": "yes"}, "'recenterToOrigin': Input should be a valid boolean"),
        ({"opaqueMaterialDefaultSidedness": "Both"}, "'SingleSided' or 'DoubleSided'"),
        ({"axis": ["+x", "+y"]}, "'axis'"),
        ({"axis": ["+x", "+x", "+z"]}, "each of x, y and z once"),
        ({"vertex": {"position": "64_64_64_FLOAT"}}, "'vertex.position'"),
    ],
)
def test_invalid_settings_fail(sphere_glb: Path, settings: dict[str, Any], expected: str) -> None:
    assert expected in failed(sphere_glb, "sphere.glb", **settings)


def test_settings_that_are_not_json_fail_with_the_line(sphere_glb: Path) -> None:
    (sphere_glb / "sphere.ConversionSettings.json").write_text('{\n  "scaling": 2,\n}\n')
    message = failed(sphere_glb, "sphere.glb")
    assert "sphere.ConversionSettings.json is not valid JSON" in message and "line 3" in message


# --- failures -----------------------------------------------------------------------------------------------


def test_corrupt_glb_fails(tmp_path: Path) -> None:
    (tmp_path / "broken.glb").write_bytes(b"not a glTF file at all" * 20)
    assert "cannot parse broken.glb as GLB" in failed(tmp_path, "broken.glb")


def test_corrupt_las_and_xyz_fail(tmp_path: Path) -> None:
    (tmp_path / "broken.las").write_bytes(b"LASF" + bytes(100))
    assert "cannot parse broken.las as LAS" in failed(tmp_path, "broken.las")
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "broken.xyz").write_text("1 2 3\n4 5 6\n7 eight 9\n")
    assert "line 3: 'eight' is not a number" in failed(tmp_path, "broken.xyz")


def test_unsupported_extension_fails(tmp_path: Path) -> None:
    (tmp_path / "plan.dwg").write_bytes(b"AC1032")
    message = failed(tmp_path, "plan.dwg")
    assert "unsupported input format '.dwg'" in message and ".fbx" in message


def test_missing_input_fails_and_names_what_is_there(sphere_glb: Path) -> None:
    message = failed(sphere_glb, "sphre.glb")
    assert "'sphre.glb' was not found" in message and "sphere.glb" in message


def test_paths_outside_the_container_are_refused(sphere_glb: Path) -> None:
    assert "without '..'" in failed(sphere_glb, "../sphere.glb")
    out = sphere_glb / "out" / "deeper"
    outcome = convert(sphere_glb, "sphere.glb", out, "../escaped.arrAsset")
    assert not outcome.succeeded and "output asset name" in (outcome.error_message or "")
    # the report stays inside the output directory
    assert outcome.output_files == ["escaped.result.json"] and (out / "escaped.result.json").is_file()
    assert not (sphere_glb / "out" / "escaped.result.json").exists()


def test_output_names_must_be_loadable_assets(sphere_glb: Path) -> None:
    outcome = convert(sphere_glb, "sphere.glb", sphere_glb, "sphere.glb")
    assert not outcome.succeeded and "must end in .arrAsset" in (outcome.error_message or "")
    assert outcome.output_files == ["sphere.glb.result.json"]
    assert (sphere_glb / "sphere.glb").is_file()  # the failure cleaned up nothing that was not its own
    outcome = convert(sphere_glb, "sphere.glb", sphere_glb / "out", "nested/dir/ball.arrAsset")
    assert outcome.succeeded and outcome.output_files[0] == "nested/dir/ball.arrAsset"
    assert (sphere_glb / "out" / "nested" / "dir" / "ball.result.json").is_file()


def test_failure_removes_an_earlier_asset_of_the_same_name(sphere_glb: Path) -> None:
    succeeded(sphere_glb, "sphere.glb")
    (sphere_glb / "sphere.ConversionSettings.json").write_text('{"bogus": 1}')
    failed(sphere_glb, "sphere.glb")  # and it checks that only result.json is left


def test_unwritable_output_fails_without_raising(sphere_glb: Path) -> None:
    (sphere_glb / "out").write_text("a file where the output directory should be")
    outcome = convert(sphere_glb, "sphere.glb", sphere_glb / "out", "model.arrAsset")
    assert not outcome.succeeded and outcome.error_code == "InternalServerError"
    assert outcome.output_files == [] and "cannot write" in (outcome.error_message or "")


# --- the tree, materials and metadata -------------------------------------------------------------------------


def assembly_glb(path: Path) -> None:
    """A 3-level assembly: frame (extras) → arm → hand, and a base; the hand is a brushed-metal box, the rest
    painted; base and frame share one material through two identical copies (names differ)."""
    g = _Gltf()
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    geometry: dict[str, np.ndarray] = {
        "POSITION": np.asarray(box.vertices, np.float32),
        "NORMAL": np.asarray(box.vertex_normals, np.float32),
        "indices": np.asarray(box.faces, np.uint16).reshape(-1),
    }
    paint = g.material("paint", pbrMetallicRoughness={"baseColorFactor": [0.8, 0.2, 0.1, 1.0], "metallicFactor": 0.0})
    paint_copy = g.material(
        "paint.001", pbrMetallicRoughness={"baseColorFactor": [0.8, 0.2, 0.1, 1.0], "metallicFactor": 0.0}
    )
    metal = g.material("metal", pbrMetallicRoughness={"metallicFactor": 1.0, "roughnessFactor": 0.3}, doubleSided=True)
    meshes = [g.mesh(name, geometry, material) for name, material in (("m0", paint), ("m1", metal), ("m2", paint_copy))]

    def node(name: str, **fields: Any) -> int:
        return g._add("nodes", {"name": name, **fields})

    hand = node("hand", mesh=meshes[1], translation=[0.0, 0.0, 2.0], extras={"PartNumber": "H-3"})
    arm = node("arm", children=[hand], translation=[1.0, 0.0, 0.0])
    frame = node("frame", mesh=meshes[0], children=[arm], translation=[0.0, 1.0, 0.0], extras={"PartNumber": "F-1"})
    base = node("base", mesh=meshes[2], translation=[0.0, -1.0, 0.0])
    g.doc["scenes"][0]["nodes"] = [frame, base]
    g.write(path)


def _names(model: ModelData) -> list[tuple[str, str]]:
    """(node, parent) names of the model's tree."""
    nodes = model.tree()
    return [(n.name, nodes[n.parent].name if n.parent >= 0 else "") for n in nodes]


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_the_tree_its_names_materials_and_extras_survive(tmp_path: Path, mode: str) -> None:
    assembly_glb(tmp_path / "assembly.glb")
    asset, _, info = succeeded(tmp_path, "assembly.glb", sceneGraphMode=mode)
    assert asset.scene_graph_mode == mode
    assert _names(asset) == [
        ("assembly.glb", ""),
        ("frame", "assembly.glb"),
        ("arm", "frame"),
        ("hand", "arm"),
        ("base", "assembly.glb"),
    ]
    by_name = {n.name: i for i, n in enumerate(asset.nodes)}
    assert asset.nodes[by_name["frame"]].metadata == {"PartNumber": "F-1"}
    # a part per node: geometry stays with its node, in the rest pose
    parts = {asset.nodes[m.node].name: m for m in asset.meshes}
    assert sorted(parts) == ["base", "frame", "hand"] and asset.triangles == 36
    np.testing.assert_allclose(parts["hand"].positions.mean(axis=0), [1.0, 1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(rest_worlds(asset.nodes)[by_name["hand"]][:3, 3], [1.0, 1.0, 2.0])
    metal = asset.materials[parts["hand"].material]
    assert (metal.name, metal.metallic, metal.roughness, metal.double_sided) == ("metal", 1.0, 0.3, True)
    # deduplicateMaterials: the two identical paints became one
    assert parts["frame"].material == parts["base"].material and len(asset.materials) == 2
    assert info["inputStatistics"]["maxNodeDepth"] == 3 and info["inputStatistics"]["numNodes"] == 5
    # the ray caster's structure names the part a triangle belongs to
    assert asset.collision is not None and asset.collision.nodes is not None
    assert set(asset.collision.nodes.tolist()) == {by_name["frame"], by_name["hand"], by_name["base"]}


def test_scene_graph_mode_none_flattens_to_one_entity(tmp_path: Path) -> None:
    assembly_glb(tmp_path / "assembly.glb")
    asset, _, _ = succeeded(tmp_path, "assembly.glb", sceneGraphMode="none")
    assert asset.scene_graph_mode == "none" and _names(asset) == [("assembly.glb", "")]
    assert {m.node for m in asset.meshes} == {0} and asset.triangles == 36
    assert asset.collision is not None and asset.collision.nodes is None
    np.testing.assert_allclose(asset.bounds_max, [1.5, 1.5, 2.5], atol=1e-6)


def test_deduplicate_materials_false_keeps_every_material(tmp_path: Path) -> None:
    assembly_glb(tmp_path / "assembly.glb")
    asset, _, _ = succeeded(tmp_path, "assembly.glb", deduplicateMaterials=False)
    assert sorted(m.name for m in asset.materials) == ["metal", "paint", "paint.001"]


def test_scaling_and_recentering_move_the_root_so_parts_stay_on_their_nodes(tmp_path: Path) -> None:
    assembly_glb(tmp_path / "assembly.glb")
    asset, _, info = succeeded(tmp_path, "assembly.glb", scaling=2.0, recenterToOrigin=True, axis=["+x", "+z", "-y"])
    offset = np.array(info["outputStatistics"]["recenteringOffset"])
    np.testing.assert_allclose((asset.bounds_min + asset.bounds_max) / 2, 0.0, atol=1e-6)
    # every node's rest world still places its own geometry: the hand's box centre is its node's origin
    worlds = rest_worlds(asset.nodes)
    hand = next(i for i, n in enumerate(asset.nodes) if n.name == "hand")
    mesh = next(m for m in asset.meshes if m.node == hand)
    np.testing.assert_allclose(mesh.positions.mean(axis=0), worlds[hand][:3, 3], atol=1e-5)
    # y and z swapped with a sign (a rotation), scaled by 2: the hand's (1, 1, 2) goes to (2, 4, -2) + offset
    np.testing.assert_allclose(worlds[hand][:3, 3], np.array([2.0, 4.0, -2.0]) + offset, atol=1e-5)


def _fbx(folder: Path, name: str = "assembly") -> Path:
    """The assembly as an ASCII FBX (assimp 5.2 cannot read back its own binary FBX), with user properties on
    `frame` as a DCC tool writes them (flag "U"), and Phong values on the paint."""
    assembly_glb(folder / f"{name}.glb")
    subprocess.run(
        ["assimp", "export", f"{name}.glb", f"{name}.fbx", "-ffbxa"], cwd=folder, check=True, capture_output=True
    )
    (folder / f"{name}.glb").unlink()
    path = folder / f"{name}.fbx"
    text = path.read_text()
    start = text.index('"Model::frame"')
    table = text.index("Properties70:  {", start) + len("Properties70:  {")
    user = (
        '\n\t\t\tP: "PartNumber", "KString", "", "U", "F-1"'
        '\n\t\t\tP: "PartMass", "double", "Number", "U",2.5'
        '\n\t\t\tP: "Vendor", "KString", "", "U", "ACME, Inc."'
        '\n\t\t\tP: "Visibility", "Visibility", "", "A",1'
    )
    text = text[:table] + user + text[table:]
    # a shiny paint: the case fbxAssumeMetallic decides (a bright specular over a coloured diffuse)
    start = text.index('"Material::paint"')
    table = text.index("Properties70:  {", start) + len("Properties70:  {")
    text = text[:table] + '\n\t\t\tP: "SpecularColor", "Color", "", "A",0.9,0.9,0.9' + text[table:]
    path.write_text(text)
    return path


@needs_assimp
def test_fbx_keeps_the_tree_and_user_properties_under_metadata_keys(tmp_path: Path) -> None:
    _fbx(tmp_path)
    asset, _, info = succeeded(tmp_path, "assembly.fbx", metadataKeys=["Part*", "Vendor"])
    names = [n.name for n in asset.nodes]
    # the FBX's own tree: assimp's "RootNode" wrapper is gone
    assert sorted(names) == ["arm", "assembly.fbx", "base", "frame", "hand"] and names[0] == "assembly.fbx"
    parent = {n.name: asset.nodes[n.parent].name for n in asset.nodes[1:]}
    assert parent == {"frame": "assembly.fbx", "arm": "frame", "hand": "arm", "base": "assembly.fbx"}
    # and its transforms: every part's geometry sits at its node's rest-pose origin
    worlds = rest_worlds(asset.nodes)
    for mesh in asset.meshes:
        np.testing.assert_allclose(mesh.positions.mean(axis=0), worlds[mesh.node][:3, 3], atol=1e-5)
    hand = names.index("hand")
    np.testing.assert_allclose(worlds[hand][:3, 3], [1.0, 1.0, 2.0], atol=1e-5)
    frame = asset.nodes[names.index("frame")]
    # only user properties ("U"), only the keys asked for; the comma inside the quoted value survives
    assert frame.metadata == {"PartNumber": "F-1", "PartMass": 2.5, "Vendor": "ACME, Inc."}
    assert info["inputInfo"]["sourceAssetFormat"] == "FBX"
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "assembly.ConversionSettings.json").unlink()
    asset, _, _ = succeeded(tmp_path, "assembly.fbx")
    # no metadataKeys, no metadata (as in ARR)
    assert all(not n.metadata for n in asset.nodes)


@needs_assimp
def test_fbx_materials_map_to_pbr_honouring_fbx_assume_metallic(tmp_path: Path) -> None:
    _fbx(tmp_path)
    settings = {"gammaToLinearMaterial": False, "opaqueMaterialDefaultSidedness": "SingleSided"}
    metallic, _, _ = succeeded(tmp_path, "assembly.fbx", **settings)
    by_name = {m.name: m for m in metallic.materials}
    paint = by_name["paint"]
    # Diffuse (0.8, 0.2, 0.1), Specular 0.9 grey: ARR's quadratic reads it as metal; its albedo blends the
    # "dielectric" and "metal" colours by metalness² (values worked out by hand from ARR's published formulas);
    # roughness = sqrt(2 / (shininess * specular intensity + 2))
    shininess = _fbx_number(tmp_path / "assembly.fbx", "paint", "ShininessExponent")
    assert paint.metallic == pytest.approx(0.97294, abs=1e-5)
    np.testing.assert_allclose(paint.base_color, [1.0, 0.91570, 0.89514, 1.0], atol=1e-5)
    assert paint.roughness == pytest.approx(np.sqrt(2 / (shininess * 0.9 + 2)), abs=1e-6)
    assert not paint.double_sided  # FBX says nothing about sidedness: the setting does
    shutil.rmtree(tmp_path / "out")
    plastic, _, _ = succeeded(tmp_path, "assembly.fbx", fbxAssumeMetallic=False, **settings)
    shiny = {m.name: m for m in plastic.materials}["paint"]
    # not assumed metallic: a dielectric that keeps its diffuse colour as it is
    assert shiny.metallic == 0.0 and shiny.roughness == paint.roughness
    np.testing.assert_allclose(shiny.base_color, [0.8, 0.2, 0.1, 1.0], atol=1e-6)


def _fbx_number(path: Path, material: str, key: str) -> float:
    """A number of a material's Properties70 in an ASCII FBX, its own or its template's."""
    text = path.read_text()
    for where in (text.index(f'"Material::{material}"'), text.index('ObjectType: "Material"')):
        block = text[where : text.index("\n\t}", where)]
        for line in block.splitlines():
            if line.strip().startswith(f'P: "{key}"'):
                return float(line.rsplit(",", 1)[1])
    raise AssertionError(f"{key} not in {path.name}")


@needs_assimp
def test_fbx_properties_read_alike_from_binary_and_ascii(tmp_path: Path) -> None:
    assembly_glb(tmp_path / "a.glb")
    for target, kind in (("ascii.fbx", "-ffbxa"), ("binary.fbx", "-ffbx")):
        subprocess.run(["assimp", "export", "a.glb", target, kind], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "binary.fbx").read_bytes().startswith(b"Kaydara FBX Binary")
    ascii, binary = (read_fbx_properties(tmp_path / name) for name in ("ascii.fbx", "binary.fbx"))
    assert [name for name, _ in binary.models] == [name for name, _ in ascii.models]
    assert {"frame", "arm", "hand", "base"} <= {name for name, _ in binary.models}
    assert binary.materials.keys() == ascii.materials.keys() and "paint" in binary.materials
    for name, props in ascii.materials.items():
        for key in ("DiffuseColor", "SpecularColor", "ShininessExponent", "Opacity"):
            np.testing.assert_allclose(binary.materials[name][key], props[key], rtol=1e-6, err_msg=f"{name}.{key}")


def test_gamma_to_linear_vertex_false_keeps_the_files_colours(tmp_path: Path) -> None:
    colors = np.tile(np.array([[255, 128, 0, 255]], dtype=np.uint8), (len(POINTS), 1))
    trimesh.PointCloud(POINTS, colors=colors).export(tmp_path / "cloud.ply")
    # the PLY reader reads colours as sRGB and makes them linear; false takes them back to the file's values
    asset, _, _ = succeeded(tmp_path, "cloud.ply", gammaToLinearVertex=False)
    np.testing.assert_allclose(asset.meshes[0].colors[0], [1.0, 128 / 255, 0.0, 1.0], atol=1e-6)
