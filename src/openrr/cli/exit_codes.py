"""How the `openrr session` and `openrr convert` commands end: the exit codes their users' scripts check."""

from __future__ import annotations

import sys
from collections.abc import Callable

from openrr.client.arrconfig import ConfigError


def run_command(prog: str, body: Callable[[], int], failures: tuple[type[Exception], ...]) -> int:
    """`body`'s status; 2 for bad settings (every problem on a line of its own), 1 for one of `failures` (the
    service or storage said no, or could not be reached), 130 when interrupted."""
    try:
        return body()
    except ConfigError as e:
        for problem in e.problems:
            print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    except failures as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
