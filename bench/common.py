"""What every benchmark prints first: when, where, and how busy the machine was."""

from __future__ import annotations

import datetime as dt
import platform

import psutil


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in psutil.getloadavg())


def print_header(name: str) -> None:
    print(
        f"{name}  {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  {platform.node()}  "
        f"{psutil.cpu_count()} cpus  python {platform.python_version()}  load average {load_average()}"
    )
