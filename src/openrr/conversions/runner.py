"""Runs conversion jobs, each in its own worker process, outside the API's process and at a lower priority.

Every pass claims waiting jobs (and jobs whose control plane stopped reporting) up to the worker limit. While a
worker runs, its progress and a heartbeat go into the job record; a job whose record says it was cancelled or
taken over has its worker killed. A worker that dies without an outcome is retried once, then the job fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import psutil

from openrr.conversions import codes
from openrr.conversions.job import JobSpec, Outcome, parse_report
from openrr.conversions.service import Claim, ConversionService
from openrr.storage.container import ContainerAccess
from openrr.storage.errors import redact
from openrr.storage.links import LinkCredentials
from openrr.storage.uri import ContainerUri

logger = logging.getLogger(__name__)
WORKER_MODULE = "openrr.conversions.worker"
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

    @property
    def heartbeat_s(self) -> float:
        # Several heartbeats per lease, so that one slow write does not let another control plane take over.
        return max(0.1, min(1.0, self.lease_s / 4))


class _Reports:
    def __init__(self) -> None:
        self.progress = 0.0
        self.outcome: Outcome | None = None


class ConversionRunner:
    def __init__(self, service: ConversionService, config: RunnerConfig) -> None:
        self.service = service
        self.config = config
        self.owner = f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._jobs: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._last_maintenance = 0.0

    def kick(self) -> None:
        """Ask for a pass now; safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._clean_leftovers)
        self._task = asyncio.create_task(self._run(), name="openrr-conversions")

    async def stop(self) -> None:
        """Stop every worker and hand their jobs back, so that the next start resumes them without delay."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        jobs = list(self._jobs.values())
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        try:
            released = await asyncio.to_thread(self.service.release, self.owner)
            if released:
                logger.info("handed %d running conversions back for the next start", released)
        except Exception:
            logger.exception("could not hand running conversions back; they are taken over after the lease")

    # --- the loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                logger.exception("conversion pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.interval_s)
            self._wake.clear()

    async def run_once(self) -> None:
        free = self.config.workers - len(self._jobs)
        if free > 0 and await asyncio.to_thread(self.service.claimable, self.config.lease_s):
            claims = await asyncio.to_thread(
                self.service.claim,
                self.owner,
                free,
                self.config.lease_s,
                self.config.attempts,
                frozenset(self._jobs),
            )
            for claim in claims:
                key = (claim.account_id, claim.id)
                task = asyncio.create_task(self._run_job(claim), name=f"conversion {claim.id}")
                self._jobs[key] = task
                task.add_done_callback(lambda t, k=key: self._done(t, k))  # type: ignore[misc]
        now = time.monotonic()
        if now - self._last_maintenance > MAINTENANCE_EVERY_S:
            self._last_maintenance = now
            purged = await asyncio.to_thread(self.service.purge_older_than, self.config.retention_days)
            if purged:
                logger.info("purged %d conversion records older than %d days", purged, self.config.retention_days)

    def _done(self, task: asyncio.Task[None], key: tuple[str, str]) -> None:
        self._jobs.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("running conversion %s failed", key[1], exc_info=task.exception())
        self._wake.set()  # a worker slot is free

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
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER_MODULE,
            "--job",
            f"{claim.account_id}/{claim.id}",
            "--work-dir",
            str(work_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C meant for `openrr serve` must not kill workers behind the runner's back.
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        reports = _Reports()
        tail: deque[str] = deque(maxlen=20)
        readers = asyncio.gather(_read_reports(proc.stdout, reports), _forward_log(proc.stderr, tail))
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # stdin then stays open: the worker takes its closing to mean that this process is gone.
                proc.stdin.write(self._spec(claim).to_line())
                await proc.stdin.drain()
            deadline = time.monotonic() + self.config.timeout_s
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), self.config.heartbeat_s)
                    break
                except TimeoutError:
                    pass
                if time.monotonic() > deadline:
                    # Not retried: a job that ran this long would most likely run as long again.
                    return Outcome(
                        codes.PROCESS_FAILED,
                        f"The conversion did not finish within {self.config.timeout_s:.0f} seconds and was stopped.",
                    )
                ours = await asyncio.to_thread(
                    self.service.heartbeat, self.owner, claim.account_id, claim.id, reports.progress
                )
                if not ours:
                    return None
            await readers
            if reports.outcome is not None:
                return reports.outcome
            return _why_it_died(proc.returncode, tail)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # a worker holds nothing worth a graceful stop: the job starts over anyway
                with contextlib.suppress(Exception):
                    await proc.wait()
            readers.cancel()
            proc.stdin.close()
            await asyncio.to_thread(shutil.rmtree, work_dir, True)

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
        )

    def _access(self, container: ContainerUri, sas: str | None, link: LinkCredentials | None) -> ContainerAccess:
        return ContainerAccess(
            uri=container.uri,
            sas=sas,
            storage_account=link.storage_account if link else None,
            account_key=link.account_key if link else None,
            local_roots=[str(r) for r in self.config.local_roots],
        )

    # --- after a crash -------------------------------------------------------------------------------

    def _clean_leftovers(self) -> None:
        """Kill workers a killed control plane left behind (they exit by themselves, but may not have yet) and
        remove their scratch directories."""
        root = str(self.config.work_root) + os.sep
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if WORKER_MODULE in cmd and any(c.startswith(root) for c in cmd):
                logger.info("stopping conversion worker %d left by an earlier run", p.info["pid"])
                with contextlib.suppress(psutil.Error):
                    p.kill()
        if self.config.work_root.is_dir():
            for child in self.config.work_root.iterdir():
                shutil.rmtree(child, ignore_errors=True)
        self.config.work_root.mkdir(parents=True, exist_ok=True)


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
