"""The `openrr` command: its sub-commands, each in a module of its own, and the dispatch.

Start-up time: only the chosen command's module is imported (`openrr account` does not load httpx for `session`,
nor FastAPI for `serve`); the others are listed for `--help` by their one-line help below.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from typing import Protocol

# The sub-commands and their help lines. "render-server" is render/control.py's RENDER_SERVER_COMMAND, spelled out
# because importing that module here would cost every command its start-up time.
COMMANDS = {
    "serve": "run the service (HTTPS, SQLite, local render servers)",
    "account": "manage accounts",
    "session": "manage rendering sessions (like ARR's RenderingSession.ps1)",
    "convert": "convert models to .arrAsset (like ARR's Conversion.ps1)",
    "render-server": "run one render server (started by the service)",
}
RENDER_SERVER = "render-server"


class Command(Protocol):
    """A sub-command's module: its flags and its run."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _command(name: str) -> Command:
    # Imported one at a time, on demand: start-up time (see the module docstring); no import circle is hidden here.
    if name == "serve":
        from openrr.cli import serve

        return serve
    if name == "account":
        from openrr.cli import account

        return account
    if name == "session":
        from openrr.cli import session

        return session
    if name == "convert":
        from openrr.cli import convert

        return convert
    raise KeyError(name)


def build_parser(full: Collection[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The parser; the commands in `full` get their flags, the others only their help line."""
    parser = argparse.ArgumentParser(prog="openrr", description="Open Remote Rendering")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in COMMANDS.items():
        # render-server is listed for --help only: main() hands it to the render server's own parser.
        detailed = name in full and name != RENDER_SERVER
        p = sub.add_parser(name, help=helptext, add_help=detailed)
        if detailed:
            _command(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [RENDER_SERVER]:
        # Render servers start often and must start fast: skip the rest of the CLI's parsing.
        from openrr.cli import render_server

        return render_server.run(argv[1:])
    args = build_parser(full=argv[:1]).parse_args(argv)
    return _command(args.command).run(args)
