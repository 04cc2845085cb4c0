"""Runs conversion jobs, each in its own worker process, outside the API's process and at a lower priority.

Every pass claims waiting jobs (and jobs whose control plane stopped reporting) up to the worker limit. While a
worker runs, its progress and a heartbeat go into the job record; a job whose record says it was cancelled or
taken over has its worker killed. A worker that dies without an outcome is retried once, then the job fails.

Workers run as the child user (util/child_process.py) when the service is root, with a cleaned environment and a
work directory of their own, entered for them before they switch user: the data directory it lies in stays out
of their reach, and they address their directory as /proc/self/cwd. file:// containers are read and written
here, not by the worker (staging.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import psutil

from openrr.conversions import codes, staging
from openrr.conversions.job import CONVERT, DOWNLOAD, JobSpec, Outcome, StagingError, parse_report
from openrr.conversions.service import Claim, ConversionService
from openrr.protocol.storage_uri import ContainerUri
from openrr.storage.container import ContainerAccess
from openrr.storage.errors import StorageError, redact
from openrr.storage.links import LinkCredentials
from openrr.util.background import BackgroundLoop
from openrr.util.child_process import (
    ChildIdentity,
    child_identity,
    clean_env,
    popen_identity,
    require_reachable,
)

logger = logging.getLogger(__name__)
WORKER_MODULE = "openrr.conversions.worker"
WORKER_HOME = Path("/proc/self/cwd")
"""How a worker names its work directory (its HOME and TMPDIR too): the path it lies at is out of its reach."""
T = TypeVar("T")
MAINTENANCE_EVERY_S = 60.0


@dataclass(frozen=True)
class RunnerConfig:
    workers: int
    attempts: int
    lease_s: float
    nice: int
    work_root: Path
    local_roots: list[Path]
    max_input_bytes: int
    interval_s: float
    retention_days: int
    timeout_s: float
    fetch_allow: tuple[str, ...] = ()
    """Non-public addresses blob containers may be at (storage/guard.py; --fetch-allow)."""
    child: ChildIdentity = field(default_factory=lambda: child_identity(None))
    """Who workers run as (the child user when the service is root)."""

    @property
    def heartbeat_s(self) -> float:
        # Several heartbeats per lease, so that one slow write does not let another control plane take over.
        return max(0.1, min(1.0, self.lease_s / 4))


class _Reports:
    def __init__(self) -> None:
        self.progress = 0.0
        self.outcome: Outcome | None = None


class _Lost(Exception):
    """The job was cancelled or taken over: it is no longer ours to run."""


class _Overdue(Exception):
    """The job ran past the conversion timeout."""


class _Stopped(Exception):
    """Raised into a copy running in a thread (through its progress callback) to stop it at the next file."""


class ConversionRunner(BackgroundLoop[tuple[str, str]]):
    """Its tasks are the jobs it runs, keyed (account id, conversion id)."""

    def __init__(self, service: ConversionService, config: RunnerConfig) -> None:
        super().__init__("openrr-conversions", config.interval_s)
        self.service = service
        self.config = config
        self.owner = f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        require_reachable(config.child, "conversion workers")

    async def before_start(self) -> None:
        await asyncio.to_thread(self._clean_leftovers)

    async def after_stop(self) -> None:
        """Every worker stopped: hand their jobs back, so that the next start resumes them without delay."""
        try:
            released = await asyncio.to_thread(self.service.release, self.owner)
            if released:
                logger.info("handed %d running conversions back for the next start", released)
        except Exception:
            logger.exception("could not hand running conversions back; they are taken over after the lease")

    # --- the loop ------------------------------------------------------------------------------------

    async def run_once(self) -> None:
        running = self.running_keys()
        free = self.config.workers - len(running)
        if free > 0 and await asyncio.to_thread(self.service.claimable, self.config.lease_s):
            claims = await asyncio.to_thread(
                self.service.claim,
                self.owner,
                free,
                self.config.lease_s,
                self.config.attempts,
                running,
            )
            for claim in claims:
                self.spawn((claim.account_id, claim.id), self._run_job(claim), f"running conversion {claim.id}")
        if self.maintenance_due(MAINTENANCE_EVERY_S):
            purged = await asyncio.to_thread(self.service.purge_older_than, self.config.retention_days)
            if purged:
                logger.info("purged %d conversion records older than %d days", purged, self.config.retention_days)

    def on_finished(self, key: tuple[str, str]) -> None:
        self.wake()  # a worker slot is free

    # --- one job -------------------------------------------------------------------------------------

    async def _run_job(self, claim: Claim) -> None:
        account, cid = claim.account_id, claim.id
        attempt = claim.attempt
        while True:
            logger.info("conversion %s: attempt %d starts", cid, attempt)
            result = await self._attempt(claim)
            if result is None:
                logger.info("conversion %s: cancelled or taken over; its worker was stopped", cid)
                return
            if isinstance(result, Outcome):
                error = None if result.succeeded else (result.error_code or "", result.error_message or "")
                if await asyncio.to_thread(self.service.finish, self.owner, account, cid, error, result.warnings):
                    logger.info("conversion %s: %s", cid, "succeeded" if error is None else f"failed ({error[0]})")
                else:
                    logger.info("conversion %s: outcome dropped, the job was cancelled or taken over meanwhile", cid)
                return
            logger.warning("conversion %s: %s", cid, result)
            again = await asyncio.to_thread(
                self.service.retry_or_fail, self.owner, account, cid, self.config.attempts, result
            )
            if not again:
                return
            attempt += 1

    async def _attempt(self, claim: Claim) -> Outcome | str | None:
        """The worker's outcome, why it died without one, or None when the job is no longer ours to run."""
        work_dir = self.config.work_root / uuid.uuid4().hex
        reports = _Reports()
        deadline = time.monotonic() + self.config.timeout_s
        try:
            await asyncio.to_thread(staging.make_work_dir, work_dir)
            spec = self._spec(claim)
            if staging.is_local(spec.input.uri):
                spec = await self._stage_input(claim, spec, work_dir, reports, deadline)
            await asyncio.to_thread(staging.hand_over, self.config.child, work_dir)
            result = await self._run_worker(claim, spec, work_dir, reports, deadline)
            if isinstance(result, Outcome) and spec.stage_output:
                result = await self._store_outputs(claim, spec, result, work_dir, reports, deadline)
            return result
        except _Lost:
            return None
        except _Overdue:
            # Not retried: a job that ran this long would most likely run as long again.
            return Outcome(
                codes.PROCESS_FAILED,
                f"The conversion did not finish within {self.config.timeout_s:.0f} seconds and was stopped.",
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work_dir, True)

    async def _stage_input(
        self, claim: Claim, spec: JobSpec, work_dir: Path, reports: _Reports, deadline: float
    ) -> JobSpec:
        """A file:// input copied into the work directory, here: the worker's user cannot read the account's
        files. A failure goes to the worker, which reports it (and stores the result file) as its own."""
        roots = staging.account_roots(self.config.local_roots, claim.account_id)

        def stage(progress: Callable[[float], None]) -> list[str]:
            return staging.stage_input(
                spec.input.uri, roots, spec.input_prefix, work_dir, spec.max_input_bytes, progress
            )

        try:
            names = await self._in_thread(claim, reports, deadline, stage, 0.0, DOWNLOAD)
        except StorageError as e:
            return replace(spec, staging_error=StagingError.of(e))
        return replace(spec, staged_input=names)

    async def _store_outputs(
        self, claim: Claim, spec: JobSpec, outcome: Outcome, work_dir: Path, reports: _Reports, deadline: float
    ) -> Outcome:
        """What the worker left in `output/`, stored in the file:// output container, here."""
        roots = staging.account_roots(self.config.local_roots, claim.account_id)

        def store(progress: Callable[[float], None]) -> list[str]:
            return staging.store_outputs(spec.output.uri, roots, spec.output_prefix, work_dir, progress)

        try:
            names = await self._in_thread(claim, reports, deadline, store, CONVERT, 1 - CONVERT)
        except StorageError as e:
            return outcome.unstored(e)
        return replace(outcome, outputs=names)

    async def _in_thread(
        self,
        claim: Claim,
        reports: _Reports,
        deadline: float,
        work: Callable[[Callable[[float], None]], T],
        base: float,
        share: float,
    ) -> T:
        """`work(progress)` in a thread, heartbeating meanwhile; stopped at its next file once the job is lost."""
        stop = threading.Event()

        def progress(fraction: float) -> None:
            if stop.is_set():
                raise _Stopped
            reports.progress = base + fraction * share

        task = asyncio.ensure_future(asyncio.to_thread(work, progress))
        try:
            await self._watch(claim, reports, deadline, task)
        except BaseException:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)  # nothing may write into the work dir once it goes
            raise
        return task.result()

    async def _watch(self, claim: Claim, reports: _Reports, deadline: float, done: asyncio.Future[Any]) -> None:
        """Wait for `done`, heartbeating the job record; _Lost when it is no longer ours, _Overdue past the
        timeout. `done`'s own exception propagates."""
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(done), self.config.heartbeat_s)
                return
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise _Overdue
            ours = await asyncio.to_thread(
                self.service.heartbeat, self.owner, claim.account_id, claim.id, reports.progress
            )
            if not ours:
                raise _Lost

    async def _run_worker(
        self, claim: Claim, spec: JobSpec, work_dir: Path, reports: _Reports, deadline: float
    ) -> Outcome | str:
        proc = await asyncio.to_thread(self._start_worker, spec, work_dir)
        loop = asyncio.get_running_loop()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdout, stderr = asyncio.StreamReader(), asyncio.StreamReader()
        transports = [
            (await loop.connect_read_pipe(functools.partial(asyncio.StreamReaderProtocol, reader), pipe))[0]
            for reader, pipe in ((stdout, proc.stdout), (stderr, proc.stderr))
        ]
        exited = _exit_of(proc)
        tail: deque[str] = deque(maxlen=20)
        readers = asyncio.gather(_read_reports(stdout, reports), _forward_log(stderr, tail))
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # One short line (well within a pipe's buffer). stdin then stays open: the worker takes its
                # closing to mean that this process is gone.
                proc.stdin.write(spec.to_line())
                proc.stdin.flush()
            await self._watch(claim, reports, deadline, exited)
            await readers
            if reports.outcome is not None:
                return reports.outcome
            return _why_it_died(proc.returncode, tail)
        finally:
            if not exited.done():
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # a worker holds nothing worth a graceful stop: the job starts over anyway
                with contextlib.suppress(Exception):
                    await exited
            # Whatever it left running in its session goes too, before anything here reads its output directory.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            readers.cancel()
            for transport in transports:
                transport.close()
            with contextlib.suppress(OSError):
                proc.stdin.close()

    def _start_worker(self, spec: JobSpec, work_dir: Path) -> subprocess.Popen[bytes]:
        """The worker process, as the child user. subprocess.Popen rather than the event loop's own subprocess
        support: uvloop's cannot switch user, and Popen does it in C between fork and exec."""
        child = self.config.child
        return subprocess.Popen(
            # -I: no PYTHON* variable, no user site, and not the work directory (the tenant's files) on sys.path.
            [sys.executable, "-I", "-m", WORKER_MODULE, "--job", spec.job],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own session: a Ctrl-C meant for `openrr serve` must not kill workers behind the runner's back.
            start_new_session=True,
            # Entered before the switch of user (Popen changes directory first): the worker keeps its directory
            # without being able to reach the data directory above it.
            cwd=work_dir,
            env=clean_env(child, WORKER_HOME),
            **popen_identity(child),
        )

    def _spec(self, claim: Claim) -> JobSpec:
        req = claim.request
        return JobSpec(
            job=f"{claim.account_id}/{claim.id}",
            input=self._access(req.input.container, req.input.sas, claim.input_link),
            input_prefix=req.input.blob_prefix,
            relative_input=req.input.relative_input_asset_path,
            output=self._access(req.output.container, req.output.sas, claim.output_link),
            output_prefix=req.output.blob_prefix,
            output_filename=req.output.output_asset_filename,
            max_input_bytes=self.config.max_input_bytes,
            nice=self.config.nice,
            stage_output=req.output.container.is_local,
        )

    def _access(self, container: ContainerUri, sas: str | None, link: LinkCredentials | None) -> ContainerAccess:
        return ContainerAccess(
            uri=container.uri,
            sas=sas,
            storage_account=link.storage_account if link else None,
            account_key=link.account_key if link else None,
            # None: file:// containers are read and written by the runner, never by a worker (staging.py).
            local_roots=[],
            fetch_allow=list(self.config.fetch_allow),
        )

    # --- after a crash -------------------------------------------------------------------------------

    def _clean_leftovers(self) -> None:
        """Kill workers a killed control plane left behind (they exit by themselves, but may not have yet) and
        remove their scratch directories."""
        root = str(self.config.work_root.resolve()) + os.sep
        for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
            cmd = p.info["cmdline"] or []
            if WORKER_MODULE in cmd and (p.info["cwd"] or "").startswith(root):
                logger.info("stopping conversion worker %d left by an earlier run", p.info["pid"])
                with contextlib.suppress(psutil.Error):
                    p.kill()
        if self.config.work_root.is_dir():
            for child in self.config.work_root.iterdir():
                shutil.rmtree(child, ignore_errors=True)
        self.config.work_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.config.work_root, 0o700)


async def _read_reports(stream: asyncio.StreamReader, reports: _Reports) -> None:
    async for line in stream:
        report = parse_report(line)
        if isinstance(report, Outcome):
            reports.outcome = report
        elif report is not None:
            reports.progress = report


async def _forward_log(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    async for raw in stream:
        line = redact(raw.decode(errors="replace").rstrip())
        tail.append(line)
        logger.info("%s", line)


def _exit_of(proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """The worker's exit status, once it exits: waited for by a thread of its own, since a wait can last hours
    and must not hold one of the default executor's few threads."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()

    def settle(code: int) -> None:
        if not exited.done():
            exited.set_result(code)

    def wait() -> None:
        code = proc.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown): nobody waits any more
            loop.call_soon_threadsafe(settle, code)

    threading.Thread(target=wait, name=f"conversion worker {proc.pid}", daemon=True).start()
    return exited


def _why_it_died(returncode: int | None, tail: deque[str]) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"The conversion worker process was killed by {name}."
    last = next((ln for ln in reversed(tail) if ln.strip()), "")
    said = f" Its last words: {last[-300:]}" if last else ""
    return f"The conversion worker process exited with status {returncode} without a result.{said}"
