"""What the control plane hands a worker process (on its stdin), and what the worker reports back (on stdout).

One JSON object per line both ways. The job carries credentials, so it never goes on the command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from openrr.storage.container import ContainerAccess


@dataclass(frozen=True)
class JobSpec:
    job: str
    """`account/conversion id`, for logs."""
    input: ContainerAccess
    input_prefix: str
    relative_input: str
    output: ContainerAccess
    output_prefix: str
    output_filename: str
    max_input_bytes: int
    nice: int = 0

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def from_line(cls, line: str) -> JobSpec:
        doc: dict[str, Any] = json.loads(line)
        doc["input"] = ContainerAccess.from_json(doc["input"])
        doc["output"] = ContainerAccess.from_json(doc["output"])
        return cls(**doc)


@dataclass(frozen=True)
class Outcome:
    error_code: str | None
    error_message: str | None
    warnings: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    """Blob names written under the output prefix."""

    @property
    def succeeded(self) -> bool:
        return self.error_code is None


def progress_line(value: float) -> bytes:
    return (json.dumps({"progress": round(value, 4)}) + "\n").encode()


def outcome_line(outcome: Outcome) -> bytes:
    return (json.dumps({"outcome": asdict(outcome)}) + "\n").encode()


def parse_report(line: bytes) -> float | Outcome | None:
    """A worker's stdout line: progress, the outcome, or None for anything else (ignored)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("progress"), int | float):
        return float(doc["progress"])
    if isinstance(doc.get("outcome"), dict):
        try:
            return Outcome(**doc["outcome"])
        except TypeError:
            return None
    return None
