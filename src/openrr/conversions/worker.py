"""A conversion worker: one process per job, started by the control plane's runner.

`python -I -m openrr.conversions.worker --job ACCOUNT/ID` reads its job from stdin, downloads the input, runs the
converter, uploads the outputs, and reports progress and the outcome on stdout. It exits as soon as its stdin
closes: the control plane that started it is gone, and another will retry the job.

It runs in its work directory, which the control plane entered for it before switching to the child user; it
names that directory /proc/self/cwd, since the path above it (the data directory) is out of its reach. The
inputs and outputs of file:// containers are copied in and out by the control plane (see job.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from openrr.conversions import codes
from openrr.conversions.job import CONVERT, DOWNLOAD, JobSpec, Outcome, outcome_line, progress_line
from openrr.conversions.report import result_document
from openrr.conversions.request import ASSET_SUFFIX
from openrr.storage.container import Container, open_container
from openrr.storage.errors import StorageError, redact
from openrr.storage.transfer import download_prefix, upload_tree
from openrr.util.atomic import write_atomic
from openrr.util.child_process import lower_standing

logger = logging.getLogger("openrr.conversions.worker")
HERE = Path("/proc/self/cwd")


class Reporter:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._last = -1.0

    def progress(self, value: float) -> None:
        # Only visible steps: the control plane writes progress into the job record.
        if value - self._last < 0.005 and value < 1.0:
            return
        self._last = value
        self._send(progress_line(value))

    def outcome(self, outcome: Outcome) -> None:
        self._send(outcome_line(outcome))

    def _send(self, line: bytes) -> None:
        with self._lock:
            self.stream.write(line)
            self.stream.flush()


def run_job(spec: JobSpec, work_dir: Path, report: Reporter) -> Outcome:
    input_dir, output_dir = work_dir / "input", work_dir / "output"
    input_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    name = spec.output_filename.removesuffix(ASSET_SUFFIX)

    try:
        found = _fetch_input(spec, input_dir, report)
    except StorageError as e:
        code, message = _input_failure(e)
        return _store_failure(spec, output_dir, name, code, message)
    if spec.relative_input not in found:
        return _store_failure(spec, output_dir, name, codes.INPUT_CONTAINER_ERROR, _missing_input(spec, found))

    from openrr.conversions.converter import convert

    logger.info("converting %s (%d input files)", spec.relative_input, len(found))
    result = convert(
        input_dir,
        spec.relative_input,
        output_dir,
        spec.output_filename,
        lambda f: report.progress(DOWNLOAD + f * (CONVERT - DOWNLOAD)),
    )
    error = None if result.succeeded else (result.error_code or codes.PROCESS_FAILED, result.error_message or "")
    try:
        outputs = _upload(spec, output_dir, lambda f: report.progress(CONVERT + f * (1 - CONVERT)))
    except StorageError as e:
        return Outcome(error[0] if error else None, error[1] if error else None, list(result.warnings)).unstored(e)
    return Outcome(error[0] if error else None, error[1] if error else None, list(result.warnings), outputs)


def _fetch_input(spec: JobSpec, input_dir: Path, report: Reporter) -> list[str]:
    """The input's file names in `input_dir`: downloaded here, or already copied there by the control plane."""
    if spec.staging_error is not None:
        raise spec.staging_error.error()
    if spec.staged_input is not None:
        report.progress(DOWNLOAD)
        return spec.staged_input
    source = open_container(spec.input)
    try:
        return download_prefix(
            source, spec.input_prefix, input_dir, spec.max_input_bytes, lambda f: report.progress(f * DOWNLOAD)
        )
    finally:
        source.close()


def _upload(spec: JobSpec, output_dir: Path, progress: Callable[[float], None]) -> list[str]:
    if spec.stage_output:
        return []  # the control plane stores `output_dir` once this process has reported
    target: Container = open_container(spec.output)
    try:
        return upload_tree(target, spec.output_prefix, output_dir, progress)
    finally:
        target.close()


def _store_failure(spec: JobSpec, output_dir: Path, name: str, code: str, message: str) -> Outcome:
    """A job that failed before converting still leaves its result file in the output container if it can."""
    write_result_file(output_dir / f"{name}.result.json", code, message)
    try:
        outputs = _upload(spec, output_dir, lambda _f: None)
    except StorageError as e:
        return Outcome(code, f"{message} (The result file could not be stored either: {e.message})")
    return Outcome(code, message, [], outputs)


def write_result_file(path: Path, code: str, message: str) -> None:
    """The converter's result file (ARR's shape), for a job that failed before the converter ran."""
    title = _TITLES.get(code, "Conversion failed")
    write_atomic(path, result_document(uuid.uuid4().hex, [], (code, title, message)))


_TITLES = {
    codes.INPUT_ACCESS_DENIED: "Input container access denied",
    codes.INPUT_CONTAINER_ERROR: "Input asset not found",
    codes.INTERNAL: "Internal error",
}


def _input_failure(e: StorageError) -> tuple[str, str]:
    if e.reason == "failed":
        return codes.PROCESS_FAILED, f"{codes.INVALID_INPUT_MESSAGE} {codes.capital(e.message)}"
    return codes.INPUT_ACCESS_DENIED, codes.access_message(codes.INPUT_ACCESS_DENIED_MESSAGE, e)


def _missing_input(spec: JobSpec, found: list[str]) -> str:
    where = f"under the blob prefix '{spec.input_prefix}'" if spec.input_prefix else "in the container"
    listed = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    count = "1 blob is" if len(found) == 1 else f"{len(found)} blobs are"
    seen = f"{count} there: {listed}." if found else "No blobs are there at all."
    # ARR's sentence first (the SDK's tests look for it), then what openrr saw.
    return (
        f"{codes.MISSING_ASSET_MESSAGE} The input asset '{spec.relative_input}' does not exist {where} of "
        f"{spec.input.uri}; {seen}"
    )


def _exit_when_orphaned() -> None:
    """The control plane keeps our stdin open while it lives; EOF means it is gone and the job will be retried."""
    # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read stalls interpreter shutdown.
    while os.read(0, 65536):
        pass
    logger.warning("the control plane went away; stopping")
    os._exit(3)


def _read_line(fd: int) -> str:
    """One line, read unbuffered so that nothing after it is taken from the descriptor."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openrr.conversions.worker")
    parser.add_argument("--job", required=True, help="ACCOUNT/CONVERSION_ID (for logs and ps)")
    parser.add_argument(
        "--work-dir", type=Path, default=HERE, help="default: the working directory the control plane started it in"
    )
    args = parser.parse_args(argv)
    # First the kernel's choice when memory runs short: a worker, not the control plane.
    lower_standing()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"worker[{args.job}] %(levelname)s: %(message)s")
    # azure-core logs every request and response at INFO: the job's log would be nothing else.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # The protocol owns the real stdout; anything a library prints goes to stderr instead of corrupting it.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    spec = JobSpec.from_line(_read_line(0))
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    if spec.nice:
        os.nice(spec.nice)
    report = Reporter(protocol)
    try:
        outcome = run_job(spec, args.work_dir, report)
    except Exception as e:  # a bug of ours, not the input's: say so rather than dying without a word
        logger.exception("conversion failed unexpectedly")
        outcome = Outcome(
            codes.INTERNAL, redact(f"Unexpected internal error in the conversion worker: {type(e).__name__}: {e}")
        )
    finally:
        # The input goes now; the outputs too unless the control plane stores them after this report. (The work
        # directory itself is the control plane's to remove.)
        shutil.rmtree(args.work_dir / "input", ignore_errors=True)
        if not spec.stage_output:
            shutil.rmtree(args.work_dir / "output", ignore_errors=True)
    report.outcome(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
