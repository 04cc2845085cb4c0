"""Finding 6 (textures): a 21 KB PNG of 13000x13000 left 2.9 GB resident. Textures over the width/height or
pixel limit are now refused from their header, before a pixel is decoded, with a clear ModelLoadError; a model
and the files it references share one byte budget (model_max_bytes).

Before the fix the load succeeded and decoded the texture (169 M pixels, ~680 MB as RGBA and more in copies), so
`pytest.raises` failed and the child's peak RSS went far over the bound asserted here.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openrr.model.mesh import ModelLoadError
from openrr.model.texture_guard import TextureLimits
from openrr.render.model_loader import load_model
from openrr.storage.account_area import AccountArea
from openrr.storage.area_files import AreaFiles

SIDE = 13000
MESSAGE = "texture {} is 13000x13000, over the limit of 16384 px per side / 67108864 pixels"


def _big_png() -> bytes:
    Image.MAX_IMAGE_PIXELS = None
    image = Image.new("1", (SIDE, SIDE), 1)  # 1 bit per pixel: a few tens of KB as PNG
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _textured_glb(png: bytes | None, uri: str | None = None) -> bytes:
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes()
    blob = pos + uv + (png or b"")
    blob += b"\0" * (-len(blob) % 4)
    image: dict[str, object] = {"uri": uri} if uri else {"bufferView": 2, "mimeType": "image/png"}
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}],
        "images": [image],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 24},
            {"buffer": 0, "byteOffset": 60, "byteLength": len(png or b"")},
        ],
        "buffers": [{"byteLength": len(blob)}],
    }
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I", len(text)) + b"JSON" + text + struct.pack("<I", len(blob)) + b"BIN\0" + blob
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    d = root / "acct"
    d.mkdir()
    png = _big_png()
    assert len(png) < 64 * 1024
    (d / "embedded.glb").write_bytes(_textured_glb(png))
    (d / "huge.png").write_bytes(png)
    (d / "referenced.glb").write_bytes(_textured_glb(None, "huge.png"))
    small = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(small, "PNG")
    (d / "small.png").write_bytes(small.getvalue())
    (d / "fine.glb").write_bytes(_textured_glb(None, "small.png"))
    return root


def _files(root: Path) -> AreaFiles:
    return AreaFiles(AccountArea([root], "acct"))


def test_oversized_texture_is_refused_before_decoding(area: Path) -> None:
    # In a child process, so that its peak RSS is this load's alone (VmHWM: ru_maxrss would count the forked
    # parent's pages too).
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from openrr.model.mesh import ModelLoadError\n"
        "from openrr.render.model_loader import load_model\n"
        "from openrr.storage.area_files import AreaFiles\n"
        "from openrr.storage.account_area import AccountArea\n"
        "files = AreaFiles(AccountArea([Path(sys.argv[1])], 'acct'))\n"
        "for name in ('embedded.glb', 'referenced.glb'):\n"
        "    try:\n"
        "        load_model(name, local_files=files)\n"
        "        print('LOADED', name)\n"
        "    except ModelLoadError as e:\n"
        "        print(e)\n"
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, str(area)], capture_output=True, text=True, check=True
    )
    embedded, referenced, peak_mb = out.stdout.strip().splitlines()
    assert embedded == f"cannot load embedded.glb: {MESSAGE.format('(embedded)')}"
    assert referenced == f"cannot load referenced.glb: {MESSAGE.format(repr('huge.png'))}"
    # Python + numpy + trimesh + PIL import to ~110 MB here; the decoded texture alone would be 169 MB as L8,
    # 676 MB as RGBA.
    assert int(peak_mb) < 200, peak_mb


def test_limits_are_the_operators(area: Path) -> None:
    files = _files(area)
    model = load_model("fine.glb", local_files=files)
    texture = model.materials[model.meshes[0].material].base_color_texture
    assert texture is not None and model.images[texture.image].pixels.shape == (64, 64, 4)
    with pytest.raises(ModelLoadError, match=r"texture 'small.png' is 64x64, over the limit of 32 px per side"):
        load_model("fine.glb", local_files=files, textures=TextureLimits(max_dimension=32))
    with pytest.raises(ModelLoadError, match=r"64x64, over the limit of .* / 1000 pixels"):
        load_model("fine.glb", local_files=files, textures=TextureLimits(max_pixels=1000))


def test_referenced_files_share_the_model_byte_budget(area: Path) -> None:
    files = _files(area)
    size = (area / "acct" / "fine.glb").stat().st_size
    load_model("fine.glb", local_files=files, max_bytes=size + 1000)
    with pytest.raises(ModelLoadError, match="larger than the limit"):
        load_model("fine.glb", local_files=files, max_bytes=size + 10)
