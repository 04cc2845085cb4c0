"""Findings 3 and 9: local model loads and the files models reference.

Finding 3: render servers loaded any local file with a model extension (bare path, file://, %2e%2e), including
other tenants' files, and their errors told whether a path existed. Before the fix `load_model` opened whatever
path it was given, so every "outside" case below loaded (or failed with "file not found: …" for a missing one,
unlike the existing one). Now a local load goes through the session account's area only, or is refused.

Finding 9: glTF/OBJ references were kept inside the model's directory only by trimesh 5's resolver (with 4.x a
buffer `../../outside/secret` was read and came back as the model's bounds). openrr now checks every reference
itself: the local resolver through the account area, the converter's DirectoryResolver, the HTTP resolver.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

from openrr.model.mesh import ModelLoadError
from openrr.model.references import DirectoryResolver
from openrr.model.trimesh_import import read_model
from openrr.render.model_loader import load_model
from openrr.storage.account_area import AccountArea, AreaRefused
from openrr.storage.area_files import AreaFiles

SECRET = np.array([[7.0, 8.0, 9.0]] * 3, np.float32).tobytes()  # as positions it would make bounds (7, 8, 9)
TRIANGLE = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()


def _gltf(buffer_uri: str) -> str:
    return json.dumps(
        {
            "asset": {"version": "2.0"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "accessors": [
                {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [9] * 3}
            ],
            "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36}],
            "buffers": [{"byteLength": 36, "uri": buffer_uri}],
        }
    )


@pytest.fixture
def areas(tmp_path: Path) -> tuple[Path, AreaFiles]:
    """Root with accounts A and B and a directory outside both; B's AreaFiles."""
    root = tmp_path / "containers"
    for d in ("A/in", "B/in", "outside"):
        (root / d).mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(SECRET)
    (root / "A" / "in" / "a.gltf").write_text(
        _gltf("data:application/octet-stream;base64," + base64.b64encode(SECRET).decode())
    )
    (root / "B" / "in" / "b.gltf").write_text(_gltf("b.bin"))
    (root / "B" / "in" / "b.bin").write_bytes(TRIANGLE)
    os.symlink(root / "A" / "in" / "a.gltf", root / "B" / "in" / "link.gltf")
    os.symlink(root / "A", root / "B" / "a-dir")
    return root, AreaFiles(AccountArea([root], "B"))


def _refusal(source: str, files: AreaFiles) -> str:
    with pytest.raises(ModelLoadError) as e:
        load_model(source, local_files=files)
    return str(e.value)


def test_own_area_loads_by_every_spelling(areas: tuple[Path, AreaFiles]) -> None:
    root, files = areas
    for source in ("in/b.gltf", str(root / "B/in/b.gltf"), (root / "B/in/b.gltf").as_uri(), "in/%62.gltf"):
        assert load_model(source, local_files=files).bounds_max.tolist() == [1.0, 1.0, 0.0], source


def test_other_tenant_and_outside_are_refused_like_missing_files(areas: tuple[Path, AreaFiles]) -> None:
    root, files = areas
    cases = {
        "bare path": str(root / "A/in/a.gltf"),
        "file url": (root / "A/in/a.gltf").as_uri(),
        "dotdot": "../A/in/a.gltf",
        "encoded dotdot": "%2e%2e/A/in/a.gltf",
        "encoded in url": f"file://{root}/B/%2e%2e/A/in/a.gltf",
        "symlinked file": "in/link.gltf",
        "symlinked dir": "a-dir/in/a.gltf",
    }
    for what, source in cases.items():
        message = _refusal(source, files)
        assert message == f"'{source}' is not a file in this account's local storage", (what, message)
        missing = source.replace("a.gltf", "zz.gltf")
        assert _refusal(missing, files) == message.replace("a.gltf", "zz.gltf"), what
    (root / "B" / "dir.glb").mkdir()
    assert _refusal("dir.glb", files) == "'dir.glb' is not a file in this account's local storage"


def test_local_models_off_refuses_every_local_load(areas: tuple[Path, AreaFiles]) -> None:
    root, _files = areas
    for source in ("in/b.gltf", str(root / "B/in/b.gltf"), (root / "B/in/b.gltf").as_uri()):
        with pytest.raises(ModelLoadError, match="local files are not enabled for this session"):
            load_model(source, local_files=None)


@pytest.mark.parametrize(
    "uri",
    ["../../../outside/secret", "%2e%2e/%2e%2e/%2e%2e/outside/secret", "..%2f..%2f..%2foutside%2fsecret"],
)
def test_gltf_buffer_climbing_out_is_refused(areas: tuple[Path, AreaFiles], uri: str) -> None:
    root, files = areas
    (root / "B" / "in" / "evil.gltf").write_text(_gltf(uri))
    message = _refusal("in/evil.gltf", files)
    assert "lies outside the model's own directory" in message, message
    assert "7" not in message.replace("evil", "")


def test_gltf_buffer_absolute_or_symlinked_out_is_refused(areas: tuple[Path, AreaFiles], tmp_path: Path) -> None:
    root, files = areas
    os.symlink(tmp_path / "outside" / "secret", root / "B" / "in" / "secret.bin")
    for name, uri in (("abs", str(tmp_path / "outside" / "secret")), ("link", "secret.bin")):
        (root / "B" / "in" / f"{name}.gltf").write_text(_gltf(uri))
        message = _refusal(f"in/{name}.gltf", files)
        assert "is not a file in this account's local storage" in message, message


def test_converter_resolver_keeps_references_in_the_input_directory(tmp_path: Path) -> None:
    model_dir = tmp_path / "input" / "models"
    model_dir.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(SECRET)
    os.symlink(tmp_path / "outside" / "secret", model_dir / "linked.bin")
    for uri in ("../../outside/secret", "%2e%2e/%2e%2e/outside/secret", "linked.bin"):
        (model_dir / "m.gltf").write_text(_gltf(uri))
        with pytest.raises((ModelLoadError, OSError)) as e:
            read_model(model_dir / "m.gltf", "models/m.gltf", resolver=DirectoryResolver(model_dir / "m.gltf", "m"))
        assert "7.0" not in str(e.value)
    (model_dir / "ok.bin").write_bytes(TRIANGLE)
    (model_dir / "m.gltf").write_text(_gltf("ok.bin"))
    assert read_model(model_dir / "m.gltf", "models/m.gltf").bounds_max.tolist() == [1.0, 1.0, 0.0]


def test_account_area_open_rechecks_and_hides_existence(areas: tuple[Path, AreaFiles]) -> None:
    root, _files = areas
    area = AccountArea([root], "B")
    fd = area.open("in/b.bin")
    try:
        assert os.read(fd, 100) == TRIANGLE
    finally:
        os.close(fd)
    messages = set()
    for source in ("../A/in/a.gltf", "../A/in/none.gltf"):
        with pytest.raises(AreaRefused) as e:
            area.open(source)
        messages.add(e.value.message.replace("none", "a"))
    assert len(messages) == 1
    with pytest.raises(ValueError):
        AccountArea([root], "..")
