"""Render one picture of a model in a Ready session, with the Python client (openrr.client).

    export OPENRR_ACCOUNT_ID=<account id> OPENRR_ACCOUNT_KEY=<account key>   # what `openrr serve` printed
    export OPENRR_CA_CERT=~/.local/share/openrr/tls/cert.pem     # DATA_DIR/tls/cert.pem of `openrr serve`
    export OPENRR_ENDPOINT=https://127.0.0.1:8443                # the default: `openrr serve`'s own default
    python examples/render_frame.py SESSION_ID https://example.org/house.glb --out house.jpg [--webrtc]

Prints what it saw as JSON. The model URL may be anything the session's server may load: an http(s) URL (local
addresses only if `openrr serve --fetch-allow` allows them), a blob SAS URL, or a path in the account's area.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg

from openrr.client import ClientError, RenderSessionClient, open_webrtc

DEFAULT_ENDPOINT = "https://127.0.0.1:8443"  # where `openrr serve` listens unless told otherwise


class MissingSetting(Exception):
    """An environment variable the script needs is not set."""


def connection(environ: Mapping[str, str]) -> tuple[str, str, str, str | None]:
    """(endpoint, account id, account key, CA file) from the environment; MissingSetting names what is unset."""
    missing = [name for name in ("OPENRR_ACCOUNT_ID", "OPENRR_ACCOUNT_KEY") if not environ.get(name)]
    if missing:
        raise MissingSetting(f"set {' and '.join(missing)} (the account id and key that `openrr serve` printed)")
    endpoint = environ.get("OPENRR_ENDPOINT") or DEFAULT_ENDPOINT
    return endpoint, environ["OPENRR_ACCOUNT_ID"], environ["OPENRR_ACCOUNT_KEY"], environ.get("OPENRR_CA_CERT") or None


async def render(args: argparse.Namespace) -> dict[str, Any]:
    endpoint, account_id, account_key, ca = connection(os.environ)
    async with await RenderSessionClient.connect_session(
        endpoint, account_id, account_key, args.session_id, ca=ca
    ) as session:
        model = await session.load_model(args.model_url)
        await session.set_camera(position=(0, 0, 5), target=(0, 0, 0))
        if args.webrtc:
            async with await open_webrtc(session) as video:
                command_id, image = await video.next_frame()  # the first picture that shows the model
        else:
            frame = await session.next_frame()  # the first frame that shows the model from the camera
            command_id, image = frame.command_id, frame.image
    if args.out:
        args.out.write_bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(image), colorspace="RGB"))
    height, width, _ = image.shape
    return {
        "model": model["name"],
        "triangles": model["triangles"],
        "commandId": command_id,
        "width": width,
        "height": height,
        "centre": image[height // 2, width // 2].tolist(),
        "corner": image[-1, -1].tolist(),  # the background (the top-left corner carries WebRTC's command stamp)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session_id")
    parser.add_argument("model_url")
    parser.add_argument("--out", type=Path, help="write the picture here as a JPEG")
    parser.add_argument("--webrtc", action="store_true", help="receive the picture over WebRTC")
    args = parser.parse_args()
    try:
        print(json.dumps(asyncio.run(render(args))))
    except MissingSetting as e:
        print(f"error: {e}")
        return 2
    except ClientError as e:  # every error the client library raises on purpose
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
