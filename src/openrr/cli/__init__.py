"""The `openrr` command: every subcommand (serve, account, session, convert, render-server) lives in this package.

`openrr.cli:main` is the console script's entry point; importing this package stays cheap (start-up time).
"""

from __future__ import annotations

from openrr.cli.main import main

__all__ = ["main"]
