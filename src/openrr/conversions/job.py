"""What the control plane hands a worker process (on its stdin), and what the worker reports back (on stdout).

One JSON object per line both ways. The job carries credentials, so it never goes on the command line (nor in
the environment).

file:// containers are the control plane's to read and write: the worker runs as a user that cannot reach the
accounts' files, so the control plane copies the input into the work directory before the worker starts
(`staged_input`) and stores what the worker leaves in its output directory after it reports (`stage_output`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from openrr.conversions import codes
from openrr.storage.container import ContainerAccess
from openrr.storage.errors import Reason, StorageError

# Shares of the progress bar: fetching the input, converting, storing the outputs (whoever does each).
DOWNLOAD, CONVERT = 0.15, 0.80


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
    staged_input: list[str] | None = None
    """The input was copied into the work directory's `input/` by the control plane: these names (None: the
    worker downloads it)."""
    staging_error: StagingError | None = None
    """The control plane could not copy the input: the worker reports this as it would its own download error."""
    stage_output: bool = False
    """The worker leaves its outputs in `output/`; the control plane stores them once it has reported."""

    def to_line(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def from_line(cls, line: str) -> JobSpec:
        doc: dict[str, Any] = json.loads(line)
        doc["input"] = ContainerAccess.from_json(doc["input"])
        doc["output"] = ContainerAccess.from_json(doc["output"])
        if doc.get("staging_error") is not None:
            doc["staging_error"] = StagingError(**doc["staging_error"])
        return cls(**doc)


@dataclass(frozen=True)
class StagingError:
    reason: Reason
    message: str

    @classmethod
    def of(cls, e: StorageError) -> StagingError:
        return cls(e.reason, e.message)

    def error(self) -> StorageError:
        return StorageError(self.reason, self.message)


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

    def unstored(self, e: StorageError) -> Outcome:
        """This outcome once storing its outputs failed: a success becomes the output's access error, a failure
        keeps its own code and says that its result file could not be stored either."""
        if self.error_code is None:
            message = codes.access_message(codes.OUTPUT_ACCESS_DENIED_MESSAGE, e)
            return Outcome(codes.OUTPUT_ACCESS_DENIED, message, list(self.warnings), [])
        detail = f"{self.error_message} (The result file could not be stored either: {e.message})"
        return Outcome(self.error_code, detail, list(self.warnings), [])


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
