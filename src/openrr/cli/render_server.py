"""`openrr render-server`: one render server, started by the service (hosting/) with the argv render/control.py
defines. Its options are the render server's own."""

from __future__ import annotations

import argparse


def run(argv: list[str]) -> int:
    # Imported here, not above: only this command needs the render stack (GL, OpenCV, aiortc: ~1.5 s), and render
    # servers start often, so `openrr render-server` skips the rest of the CLI too (cli/main.py).
    from openrr.render.server import add_arguments, run

    parser = argparse.ArgumentParser(prog="openrr render-server")
    add_arguments(parser)
    return run(parser.parse_args(argv))
