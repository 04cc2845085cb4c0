"""Finding 2: file:// containers were shared by every account. Each account's containers now live in
`<local storage root>/<accountId>/`; another account's directory is out of reach by every spelling.

Before the fix, `_check_reachable` only asked whether a directory lay under *some* storage root, so every
create below answered 201 (tenant B converted A's input and overwrote A's .arrAsset), and LocalContainer
followed symlinks out of the container when reading and writing blobs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openrr.storage.errors import StorageError
from openrr.storage.local import LocalContainer
from tests.harness import Service, create_account, free_port

V21 = {"api-version": "2021-01-01"}
REFUSAL = "is not in this account's local storage"


@pytest.fixture(scope="module")
def svc(base_dir: Path) -> Iterator[Service]:
    service = Service(
        base_dir / "tenant-storage",
        free_port(),
        ["--conversion-workers", "0", "--rate-limit-per-s", "0", "--warm-pool", "Standard=0"],
    ).start()
    yield service
    assert service.stop() == 0


@pytest.fixture(scope="module")
def tenants(svc: Service) -> tuple[str, dict[str, str], Path]:
    """(A's account id, B's account doc, the storage root), with A's input model and output asset in place."""
    b = create_account(svc.data_dir)
    root = svc.data_dir / "containers"
    a_in, a_out = root / svc.account_id / "in", root / svc.account_id / "out"
    a_in.mkdir(parents=True, exist_ok=True)
    a_out.mkdir(parents=True, exist_ok=True)
    (a_in / "house.glb").write_bytes(b"glTF A's model")
    (a_out / "house.arrAsset").write_bytes(b"A's asset")
    b_area = root / b["accountId"]
    (b_area / "mine").mkdir(parents=True, exist_ok=True)
    (b_area / "mine" / "house.glb").write_bytes(b"glTF B's model")
    link = b_area / "link-to-a"
    if not link.is_symlink():
        link.symlink_to(root / svc.account_id)
    return svc.account_id, b, root


def _create(svc: Service, b: dict[str, str], inp: str, out: str) -> httpx.Response:
    doc = {
        "settings": {
            "inputLocation": {"storageContainerUri": inp, "relativeInputAssetPath": "house.glb"},
            "outputLocation": {"storageContainerUri": out, "outputAssetFilename": "house.arrAsset"},
        }
    }
    with svc.api(b["accountId"], b["primaryKey"]) as api:
        cid = f"t-{uuid.uuid4().hex[:10]}"
        return api.put(f"/accounts/{b['accountId']}/conversions/{cid}", params=V21, json=doc)


def _spellings(root: Path, a: str, b: str, leaf: str) -> dict[str, str]:
    """Every way B might name A's directory `leaf`."""
    return {
        "absolute": (root / a / leaf).as_uri(),
        "dotdot": f"file://{root}/{b}/../{a}/{leaf}",
        "encoded-dotdot": f"file://{root}/{b}/%2e%2e/{a}/{leaf}",
        "symlink": (root / b / "link-to-a" / leaf).as_uri(),
        "root-itself": (root / b / "..").as_uri(),
    }


@pytest.mark.parametrize("spelling", ["absolute", "dotdot", "encoded-dotdot", "symlink", "root-itself"])
def test_b_cannot_convert_a_input(svc: Service, tenants: tuple[str, dict[str, str], Path], spelling: str) -> None:
    a, b, root = tenants
    inp = _spellings(root, a, b["accountId"], "in")[spelling]
    r = _create(svc, b, inp, (root / b["accountId"] / "mine").as_uri())
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "BadRequest" and err["target"] == "settings.inputLocation.storageContainerUri", err
    assert REFUSAL in err["message"]


@pytest.mark.parametrize("spelling", ["absolute", "dotdot", "encoded-dotdot", "symlink", "root-itself"])
def test_b_cannot_overwrite_a_output(svc: Service, tenants: tuple[str, dict[str, str], Path], spelling: str) -> None:
    a, b, root = tenants
    out = _spellings(root, a, b["accountId"], "out")[spelling]
    r = _create(svc, b, (root / b["accountId"] / "mine").as_uri(), out)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["target"] == "settings.outputLocation.storageContainerUri"
    assert REFUSAL in r.json()["error"]["message"]
    assert (root / a / "out" / "house.arrAsset").read_bytes() == b"A's asset"


def test_refusal_does_not_tell_whether_the_directory_exists(
    svc: Service, tenants: tuple[str, dict[str, str], Path]
) -> None:
    a, b, root = tenants
    mine = (root / b["accountId"] / "mine").as_uri()
    existing = _create(svc, b, (root / a / "in").as_uri(), mine).json()["error"]["message"]
    missing = _create(svc, b, (root / a / "nothing-here").as_uri(), mine).json()["error"]["message"]
    assert existing.replace("/in ", "/X ") == missing.replace("/nothing-here ", "/X "), (existing, missing)


def test_b_own_area_is_accepted(svc: Service, tenants: tuple[str, dict[str, str], Path]) -> None:
    _a, b, root = tenants
    mine = (root / b["accountId"] / "mine").as_uri()
    r = _create(svc, b, mine, mine)
    assert r.status_code in (200, 201), r.text


def test_local_container_refuses_symlinks_out_at_use(tmp_path: Path) -> None:
    """Between the API's check and the job's use, a symlink planted in the container must not lead out."""
    area, outside = tmp_path / "root" / "acct", tmp_path / "outside"
    (area / "c").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.glb").write_bytes(b"SECRET")
    (area / "c" / "model.glb").write_bytes(b"fine")
    os.symlink(outside / "secret.glb", area / "c" / "leak.glb")
    os.symlink(outside, area / "c" / "dir")
    container = LocalContainer(area / "c", [area])
    assert [e.name for e in container.list("")] == ["model.glb"]
    for name in ("leak.glb", "dir/secret.glb", "../../outside/secret.glb"):
        with pytest.raises(StorageError):
            container.download(name, tmp_path / "copy")
        assert not (tmp_path / "copy").exists() or b"SECRET" not in (tmp_path / "copy").read_bytes()
    src = tmp_path / "asset"
    src.write_bytes(b"B's asset")
    for name in ("leak.glb", "dir/new.arrAsset"):
        with pytest.raises(StorageError):
            container.upload(name, src)
    assert (outside / "secret.glb").read_bytes() == b"SECRET" and not (outside / "new.arrAsset").exists()
    container.upload("sub/out.arrAsset", src)
    assert (area / "c" / "sub" / "out.arrAsset").read_bytes() == b"B's asset"
    with pytest.raises(StorageError) as outside_err:
        LocalContainer(outside, [area])
    with pytest.raises(StorageError) as missing_err:
        LocalContainer(area / "missing", [area])
    assert str(outside_err.value).replace(str(outside), "X") == str(missing_err.value).replace(
        str(area / "missing"), "X"
    )
