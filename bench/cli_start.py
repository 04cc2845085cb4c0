"""How long an admin command takes from exec to exit: `openrr account list` against an SQLite store, p50 of N runs.

Baselines in the same run: the interpreter alone (`python -c pass`) and the interpreter importing SQLAlchemy's ORM,
which any command that opens the store must load: the floor this command can reach without leaving SQLAlchemy.
`--openrr PATH` times another tree's `openrr` (e.g. a worktree of an older commit with its own venv).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import print_header


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--openrr", default=str(Path(sys.executable).with_name("openrr")), help="the openrr to time")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    python = str(Path(args.openrr).with_name("python"))
    print_header("cli_start")
    with tempfile.TemporaryDirectory(prefix="openrr-cli-start-") as work:
        runtime = Path(work) / "run"
        runtime.mkdir(mode=0o700)
        # No running service is found (a private runtime dir), and no OPENRR_* setting leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENRR_")}
        env["XDG_RUNTIME_DIR"] = str(runtime)
        command = [args.openrr, "account", "list", "--data-dir", str(Path(work) / "data")]
        wall(command, env)  # creates and migrates the store: not what is timed
        targets = {
            "python -c pass (baseline)": [python, "-c", "pass"],
            "python -c 'import sqlalchemy.orm' (floor)": [python, "-c", "import sqlalchemy.orm"],
            "openrr account list": command,
        }
        times: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.runs):  # interleaved, so that a busy moment hits every target alike
            for name, cmd in targets.items():
                times[name].append(wall(cmd, env))
    print(f"  {args.runs} runs each, interleaved; openrr: {args.openrr}")
    floor = statistics.median(times["python -c 'import sqlalchemy.orm' (floor)"])
    for name, samples in times.items():
        p50 = statistics.median(samples)
        print(f"  {name:44s} p50 {p50 * 1000:7.1f} ms  min {min(samples) * 1000:7.1f} ms  {p50 / floor:5.2f}x floor")
    account = statistics.median(times["openrr account list"])
    print(f"goal: openrr account list < 0.5 s: {account:.3f} s  {'MET' if account < 0.5 else 'NOT MET'}")


if __name__ == "__main__":
    main()
