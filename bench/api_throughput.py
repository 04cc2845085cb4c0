"""API throughput and latency under concurrent keep-alive HTTPS load, against a bare FastAPI endpoint.

Run from the repository root:  python bench/api_throughput.py [--duration 5] [--connections 32]

Targets, each loaded in turn by `wrk` (one thread, --connections kept-alive HTTPS connections):

* openrr GET session     GET /accounts/{id}/sessions/{sid}?api-version=2021-01-01 with an STS bearer token
* openrr token exchange  GET /accounts/{id}/token with `Authorization: Bearer id:key`
* bare FastAPI /ping     `@app.get("/ping") async def` returning a small JSON (the baseline)
* bare FastAPI /ping-sync  the same as a plain `def` (run in the thread pool, like openrr's handlers)

The bare app runs in its own uvicorn subprocess with the same TLS certificate and the same uvicorn settings as
`openrr serve`. The targets are interleaved over --rounds rounds and each figure is the median over rounds, so
that drift on a shared machine hits all of them alike. `openrr serve` runs with --rate-limit-per-s 0 and
--warm-pool Standard=0. The service, the bare server and wrk share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import Service, create_account, free_port, wait_for  # noqa: E402

from bench.common import load_average, print_header, stop_service  # noqa: E402

API = {"api-version": "2021-01-01"}
MARK = "WRKJSON "
LUA = """
wrk.method = "GET"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


# --- the bare baseline server (this script, run as a subprocess) ------------------------------------------


def serve_bare(port: int, certfile: str, keyfile: str) -> int:
    import uvicorn
    from fastapi import FastAPI

    from openrr.tls import AEAD_CIPHERS

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok", "service": "bare"}

    @app.get("/ping-sync")
    def ping_sync() -> dict[str, str]:
        return {"status": "ok", "service": "bare"}

    # The settings `openrr serve` gives uvicorn (src/openrr/serve.py), except the app.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        ssl_ciphers=AEAD_CIPHERS,
        log_level="info",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    return 0


@contextmanager
def bare_server(svc: Service, log_path: Path) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    cmd = [
        sys.executable, __file__, "--serve-bare", str(port),
        "--certfile", str(svc.data_dir / "tls" / "server.pem"),
        "--keyfile", str(svc.data_dir / "tls" / "server-key.pem"),
    ]  # fmt: skip
    log = open(log_path, "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    url = f"https://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"bare server exited with {proc.returncode}: {log_path.read_text()}")
            try:
                return httpx.get(url + "/ping", verify=svc.tls, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 30, f"bare server on {url}")
        yield url, psutil.Process(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- load ------------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    server: psutil.Process
    expect: str
    """A substring the response body must contain (checked once before loading)."""


@dataclass
class Run:
    rps: float
    p50: float
    p95: float
    p99: float
    server_cpu_us: float
    """Server CPU time (user + system, all threads) per request, in microseconds."""
    wrk_cpu_share: float
    """wrk's CPU time as a share of wall time (1.0 = one full core)."""


def lua_script(work: Path, target: Target) -> Path:
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    path = work / f"{uuid.uuid4().hex[:8]}.lua"
    path.write_text(LUA.format(headers=headers, mark=MARK))
    return path


def check_target(target: Target, svc: Service) -> None:
    r = httpx.get(target.url, headers=target.headers, verify=svc.tls, timeout=10)
    if r.status_code != 200 or target.expect not in r.text:
        raise RuntimeError(f"{target.name}: {r.status_code} {r.text[:300]}")


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def load(target: Target, work: Path, connections: int, duration_s: float) -> Run:
    script = lua_script(work, target)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s", "-s", str(script), target.url]
    server_before = cpu_s(target.server)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wrk = psutil.Process(proc.pid)
    wrk_cpu = 0.0
    out_lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wrk prints only at the end; its CPU is read just before it exits
            out_lines.append(line)
            if line.startswith(MARK):
                with suppress(psutil.Error):
                    wrk_cpu = cpu_s(wrk)
        proc.wait(duration_s + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.perf_counter() - t0
    server_cpu = cpu_s(target.server) - server_before
    doc_line = next((x for x in out_lines if x.startswith(MARK)), None)
    if proc.returncode != 0 or doc_line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {''.join(out_lines)}")
    doc: dict[str, Any] = json.loads(doc_line[len(MARK) :])
    errors = {k: doc[k] for k in ("connect", "read", "write", "status", "timeout") if doc[k]}
    if errors:
        raise RuntimeError(f"{target.name}: wrk reported errors {errors} (non-2xx responses count as 'status')")
    n = int(doc["requests"])
    return Run(
        rps=n / (doc["duration_us"] / 1e6),
        p50=doc["p50"] / 1e6,
        p95=doc["p95"] / 1e6,
        p99=doc["p99"] / 1e6,
        server_cpu_us=server_cpu / max(n, 1) * 1e6,
        wrk_cpu_share=wrk_cpu / wall,
    )


def median_run(runs: list[Run]) -> Run:
    def med(field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in runs))

    return Run(med("rps"), med("p50"), med("p95"), med("p99"), med("server_cpu_us"), med("wrk_cpu_share"))


# --- main ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load per target and round (default 5)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the targets (default 2)")
    ap.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--certfile", help=argparse.SUPPRESS)
    ap.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_bare:
        return serve_bare(args.serve_bare, args.certfile, args.keyfile)
    if shutil.which("wrk") is None:
        print("wrk is required: apt-get install -y wrk", file=sys.stderr)
        return 2

    print_header("api_throughput")
    print(
        f"  load generator: wrk, 1 thread, {args.connections} kept-alive HTTPS connections, {args.duration:g} s per "
        f"target, {args.rounds} interleaved rounds (service, bare server and wrk share the cores)"
    )
    base = Path(tempfile.mkdtemp(prefix="openrr-bench-api-"))
    started = time.perf_counter()
    svc = Service(base / "svc", free_port(), ["--rate-limit-per-s", "0", "--warm-pool", "Standard=0"])
    results: dict[str, list[Run]] = {}
    try:
        svc.start()
        assert svc.proc is not None
        account = create_account(svc.data_dir)  # `openrr account create --json`, as an operator would
        aid, key = account["accountId"], account["primaryKey"]
        token = svc.token(aid, key)
        sid = "bench-" + uuid.uuid4().hex[:12]
        with svc.api(aid, key) as api:
            r = api.put(
                f"/accounts/{aid}/sessions/{sid}", params=API, json={"maxLeaseTimeMinutes": 30, "size": "Standard"}
            )
            r.raise_for_status()
            wait_for(
                lambda: api.get(f"/accounts/{aid}/sessions/{sid}", params=API).json()["status"] == "Ready",
                60,
                "the session to be Ready",
            )
        server = psutil.Process(svc.proc.pid)
        with bare_server(svc, base / "bare.log") as (bare_url, bare_proc):
            targets = [
                Target("bare FastAPI /ping (baseline)", bare_url + "/ping", {}, bare_proc, '"ok"'),
                Target(
                    "openrr GET session",
                    f"{svc.endpoint}/accounts/{aid}/sessions/{sid}?api-version=2021-01-01",
                    {"Authorization": f"Bearer {token}"},
                    server,
                    '"Ready"',
                ),
                Target(
                    "openrr token exchange",
                    f"{svc.endpoint}/accounts/{aid}/token",
                    {"Authorization": f"Bearer {aid}:{key}"},
                    server,
                    "AccessToken",
                ),
                Target("bare FastAPI /ping-sync", bare_url + "/ping-sync", {}, bare_proc, '"ok"'),
            ]
            for t in targets:
                check_target(t, svc)
                load(t, base, args.connections, 1.0)  # warm-up, not counted
            for rnd in range(args.rounds):
                for t in targets:
                    run = load(t, base, args.connections, args.duration)
                    results.setdefault(t.name, []).append(run)
                    print(
                        f"    round {rnd + 1}: {t.name:<30} {run.rps:8.0f} req/s  p50 {run.p50 * 1000:6.1f} ms  "
                        f"p99 {run.p99 * 1000:6.1f} ms",
                        flush=True,
                    )
    finally:
        stop_service(svc, base)
        shutil.rmtree(base, ignore_errors=True)

    med = {name: median_run(runs) for name, runs in results.items()}
    bare = med["bare FastAPI /ping (baseline)"]
    print()
    print(f"results (median of {args.rounds} rounds)")
    print(f"  {'target':<30} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'srv CPU/req':>12} {'wrk CPU':>8}")
    for name, m in med.items():
        print(
            f"  {name:<30} {m.rps:8.0f} {m.p50 * 1000:8.2f} {m.p95 * 1000:8.2f} {m.p99 * 1000:8.2f} "
            f"{m.server_cpu_us:9.0f} us {m.wrk_cpu_share:7.0%}"
        )
    print()
    sync = med["bare FastAPI /ping-sync"]
    print("ratios against the bare /ping endpoint, same run (throughput: higher is better; latency: lower is better)")
    print(f"  {'target':<30} {'req/s':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'srv CPU/req':>12} {'req/s vs sync':>14}")
    for name, m in med.items():
        print(
            f"  {name:<30} {m.rps / bare.rps:7.2f}x {m.p50 / bare.p50:7.2f}x {m.p95 / bare.p95:7.2f}x "
            f"{m.p99 / bare.p99:7.2f}x {m.server_cpu_us / bare.server_cpu_us:11.2f}x {m.rps / sync.rps:13.2f}x"
        )
    print()
    print("goal: openrr throughput >= 0.5 x the bare endpoint's")
    goal_met = True
    for name, m in med.items():
        if name.startswith("openrr"):
            ratio = m.rps / bare.rps
            print(f"  {name:<30} {ratio:.2f}x  {'MET' if ratio >= 0.5 else 'NOT MET'}")
            goal_met = goal_met and ratio >= 0.5
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
