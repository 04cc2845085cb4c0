"""What every benchmark prints first: when, where, and how busy the machine was."""

from __future__ import annotations

import datetime as dt
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from tests.harness import Service


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in psutil.getloadavg())


def print_header(name: str) -> None:
    print(
        f"{name}  {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  {platform.node()}  "
        f"{psutil.cpu_count()} cpus  python {platform.python_version()}  load average {load_average()}"
    )


@contextmanager
def bench_workdir(prefix: str, keep: bool, extra_diagnostics: Callable[[], str] | None = None) -> Iterator[Path]:
    """A scratch directory for a run: on failure the service's log tail is printed; removed unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    except BaseException:
        if extra_diagnostics is not None:
            print(extra_diagnostics(), file=sys.stderr)
        log = work / "service" / "serve.log"
        if log.exists():
            print(f"--- service log (last 3000 chars) ---\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        if keep:
            print(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def stop_service(svc: Service, data_dir: Path) -> None:
    """Stop a benchmark's service however the run ended, and any render server it left behind."""
    import subprocess

    from tests.harness import render_server_pids

    if svc.proc is not None:
        try:
            svc.stop(timeout=30)
        except subprocess.TimeoutExpired:
            svc.kill9()
    for pid in render_server_pids(data_dir):  # only if the service left any behind
        with suppress(psutil.Error):
            psutil.Process(pid).kill()


@contextmanager
def bench_service(data_dir: Path, args: list[str]) -> Iterator[Service]:
    """`openrr serve` (HTTPS, SQLite) with `args` in a subprocess; stopped however the run ends (stop_service)."""
    from tests.harness import Service, free_port

    svc = Service(data_dir, free_port(), args)
    try:
        svc.start()
        yield svc
    finally:
        stop_service(svc, data_dir)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
