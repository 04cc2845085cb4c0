"""Session start to Ready, warm (a pooled render server) and cold (a new render-server process).

Run from the repository root:  python bench/session_start.py [--sessions 20]

Each phase starts a real `openrr serve` (HTTPS, SQLite) in a subprocess and, for each of N sessions, times
from just before the PUT to the first GET (polled every --poll-ms) that says Ready. In-run baselines, so that
the ratios hold on a shared, noisy machine:

* warm p50 is compared with a plain authenticated GET of a session (one HTTPS round trip on a kept-alive
  connection), sampled between the warm sessions;
* cold p50 is compared with starting `openrr render-server` by itself until its /health answers, sampled
  between the cold sessions (one bare start after each cold session).

Every process it starts is stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import Service, render_server_pids, wait_for  # noqa: E402

from bench.common import bench_service, load_average, pct, print_header  # noqa: E402
from openrr.render.control import CONTROL_HEADER  # noqa: E402

API = {"api-version": "2021-01-01"}
TERMINAL = {"Error", "Stopped", "Expired"}


# --- statistics ----------------------------------------------------------------------------------------


def summary(name: str, values: list[float]) -> str:
    return (
        f"  {name:<44} n={len(values):<4} p50={pct(values, 50) * 1000:8.1f} ms  p95={pct(values, 95) * 1000:8.1f} ms"
        f"  min={min(values) * 1000:8.1f} ms  max={max(values) * 1000:8.1f} ms"
    )


# --- the service -----------------------------------------------------------------------------------------


@contextmanager
def service(data_dir: Path, warm: int, stop_grace_s: float) -> Iterator[Service]:
    with bench_service(
        data_dir,
        ["--warm-pool", f"Standard={warm}", "--capacity", "Standard=4", "--rate-limit-per-s", "0",
         "--stop-grace-s", f"{stop_grace_s:g}", "--log-level", "warning"],
    ) as svc:  # fmt: skip
        yield svc


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def session_url(svc: Service, sid: str) -> str:
    return f"/accounts/{svc.account_id}/sessions/{sid}"


def start_to_ready(api: httpx.Client, svc: Service, poll_s: float) -> tuple[str, float, float]:
    """Creates a session; returns its id, seconds from before the PUT to the first Ready GET, and the PUT's own time."""
    sid = "bench-" + uuid.uuid4().hex[:12]
    body = {"maxLeaseTimeMinutes": 10, "size": "Standard"}
    t0 = time.perf_counter()
    r = api.put(session_url(svc, sid), params=API, json=body)
    t_put = time.perf_counter() - t0
    r.raise_for_status()
    deadline = t0 + 60
    while True:
        r = api.get(session_url(svc, sid), params=API)
        now = time.perf_counter()
        r.raise_for_status()
        status = r.json()["status"]
        if status == "Ready":
            return sid, now - t0, t_put
        if status in TERMINAL or now > deadline:
            raise RuntimeError(f"session {sid} is {status}: {r.text}\n--- service log ---\n{svc.log()[-4000:]}")
        time.sleep(poll_s)


def stop_session(api: httpx.Client, svc: Service, sid: str) -> None:
    api.post(session_url(svc, sid) + "/:stop", params=API).raise_for_status()


def probe_client(svc: Service) -> httpx.Client:
    # `Connection: close`: an idle kept-alive TLS connection to a render server holds up its SIGTERM exit
    # (see the README), and this client must not change how fast the service's servers stop.
    return httpx.Client(verify=svc.tls, headers={"Connection": "close"})


def host_pid(svc: Service, sid: str) -> int | None:
    """The pid of the render server the service placed for session `sid` (from its host files)."""
    for host_file in (svc.data_dir / "hosts").glob("*.host.json"):
        with suppress(FileNotFoundError, json.JSONDecodeError):
            rec = json.loads(host_file.read_text())
            if rec.get("session_id") == sid:
                return int(rec["pid"])
    return None


def gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def warm_server_healthy(svc: Service, client: httpx.Client) -> bool:
    """True when an unassigned (warm) render server of the service answers /health."""
    for host_file in (svc.data_dir / "hosts").glob("*.host.json"):
        try:
            rec = json.loads(host_file.read_text())
            # The server writes its ports into its own home, hosts/<id>/.
            ports = json.loads((host_file.parent / rec["host_id"] / "ports.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if rec.get("session_id") is not None:
            continue
        try:
            # /health tells its identity only to the holder of the control secret (the control plane's probe).
            headers = {CONTROL_HEADER: rec["secret"]}
            r = client.get(f"https://127.0.0.1:{ports['handshakePort']}/health", headers=headers, timeout=2)
        except httpx.HTTPError:
            continue
        if r.status_code == 200 and r.json().get("sessionId") is None:
            return True
    return False


# --- the bare render server (cold baseline) --------------------------------------------------------------


def bare_render_server_start(work: Path, ca: Path, cert: Path, key: Path, poll_s: float) -> float:
    """Seconds from spawning `openrr render-server` to its first 200 on /health; the process is stopped after.

    A fresh client per start (like the service's first probe of a new server: a new TCP and TLS connection),
    closed before the SIGTERM so that no idle connection delays the exit.
    """
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(ca)))
    host_id = uuid.uuid4().hex[:16]
    state = work / f"{host_id}.ports.json"
    cmd = [
        sys.executable, "-m", "openrr", "render-server", "--host-id", host_id, "--ports-file", str(state),
        "--certfile", str(cert), "--keyfile", str(key),
    ]  # fmt: skip
    log = open(work / f"{host_id}.log", "ab")  # noqa: SIM115 (the child owns it)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True)
    log.close()
    assert proc.stdin is not None
    proc.stdin.write(secrets.token_urlsafe(24).encode() + b"\n")  # the control secret comes on stdin
    proc.stdin.close()
    try:
        port: int | None = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bare render server exited with {proc.returncode}")
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("bare render server did not answer /health within 30 s")
            if port is None:
                with suppress(FileNotFoundError, json.JSONDecodeError):
                    port = int(json.loads(state.read_text())["handshakePort"])
            if port is not None:
                with suppress(httpx.HTTPError):
                    if client.get(f"https://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        return time.perf_counter() - t0
            time.sleep(poll_s)
    finally:
        client.close()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --- the phases ------------------------------------------------------------------------------------------


def warm_phase(base: Path, n: int, poll_s: float, gets_per_session: int, grace: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ready": [], "put": [], "get": [], "refill": [], "exit": []}
    with service(base / "warm", 1, grace) as svc, svc.api() as api, probe_client(svc) as probe:
        wait_for(lambda: warm_server_healthy(svc, probe), 60, "the first warm render server", 0.02)
        api.get("/", params=API)  # open the kept-alive connection before timing
        for i in range(n):
            sid, ready, put = start_to_ready(api, svc, poll_s)
            out["ready"].append(ready)
            out["put"].append(put)
            for _ in range(gets_per_session):  # baseline: a plain authenticated GET of a session
                t0 = time.perf_counter()
                api.get(session_url(svc, sid), params=API).raise_for_status()
                out["get"].append(time.perf_counter() - t0)
            pid = host_pid(svc, sid)
            t_stop = time.perf_counter()
            stop_session(api, svc, sid)
            # Quiesce before the next session: the pool refilled and the stopped session's server gone.
            refilled = exited = 0.0
            while not (refilled and exited):
                if time.perf_counter() - t_stop > 60:
                    raise RuntimeError(f"no refill/exit 60 s after stop\n{svc.log()[-4000:]}")
                if not refilled and warm_server_healthy(svc, probe):
                    refilled = time.perf_counter() - t_stop
                if not exited and gone(pid):
                    exited = time.perf_counter() - t_stop
                time.sleep(0.02)
            out["refill"].append(refilled)
            out["exit"].append(exited)
            after = f"after stop: pool refilled {refilled:5.2f} s, server exited {exited:5.2f} s"
            print(f"    warm {i + 1:2d}/{n}: ready {ready * 1000:7.1f} ms;  {after}", flush=True)
    return out


def cold_phase(base: Path, n: int, poll_s: float, grace: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ready": [], "put": [], "bare": [], "exit": []}
    bare_dir = base / "bare"
    bare_dir.mkdir(parents=True)
    with service(base / "cold", 0, grace) as svc, svc.api() as api:
        # The control plane's own leaf (the service gives each server a leaf of its own, made at spawn).
        ca, cert, key = Path(svc.cert), svc.data_dir / "tls" / "server.pem", svc.data_dir / "tls" / "server-key.pem"
        api.get("/", params=API)
        bare_render_server_start(bare_dir, ca, cert, key, poll_s)  # warms the OS page cache; not counted
        for i in range(n):
            sid, ready, put = start_to_ready(api, svc, poll_s)
            out["ready"].append(ready)
            out["put"].append(put)
            pid = host_pid(svc, sid)
            t_stop = time.perf_counter()
            stop_session(api, svc, sid)
            wait_for(lambda p=pid: gone(p), 60, "the stopped session's server to exit", 0.02)  # type: ignore[misc]
            out["exit"].append(time.perf_counter() - t_stop)
            out["bare"].append(bare_render_server_start(bare_dir, ca, cert, key, poll_s))
            bare, exited = out["bare"][-1], out["exit"][-1]
            line = f"ready {ready * 1000:7.1f} ms, bare {bare * 1000:7.1f} ms; after stop: exited {exited:4.2f} s"
            print(f"    cold {i + 1:2d}/{n}: {line}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20, help="sessions per phase (default 20)")
    ap.add_argument("--poll-ms", type=float, default=10.0, help="GET polling interval (default 10 ms)")
    ap.add_argument("--gets-per-session", type=int, default=10, help="baseline GETs sampled per warm session")
    ap.add_argument(
        "--stop-grace-s",
        type=float,
        default=1.0,
        help="the service's SIGTERM-to-SIGKILL grace for render servers (default 1; openrr's is 5). "
        "Only bounds the wait between sessions: a stopped session's server takes 30 s to exit on SIGTERM "
        "while the service holds a kept-alive health-probe connection to it",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = ap.parse_args(argv)
    poll_s = args.poll_ms / 1000

    print_header("session_start")
    print(
        f"  {args.sessions} sessions per phase, polling GET every {args.poll_ms:g} ms, "
        f"service --stop-grace-s {args.stop_grace_s:g}"
    )
    base = Path(tempfile.mkdtemp(prefix="openrr-bench-start-"))
    started = time.perf_counter()
    try:
        print("  phase (a) warm: --warm-pool Standard=1", flush=True)
        warm = warm_phase(base, args.sessions, poll_s, args.gets_per_session, args.stop_grace_s)
        print("  phase (b) cold: --warm-pool Standard=0", flush=True)
        cold = cold_phase(base, args.sessions, poll_s, args.stop_grace_s)
    finally:
        kill_pids(render_server_pids(base))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print("results")
    print(summary("warm: PUT -> first Ready GET", warm["ready"]))
    print(summary("warm: PUT alone", warm["put"]))
    print(summary("warm baseline: authenticated GET session", warm["get"]))
    print(summary("warm: stop -> pool refilled (untimed above)", warm["refill"]))
    print(summary("warm: stop -> stopped server exited", warm["exit"]))
    print(summary("cold: PUT -> first Ready GET", cold["ready"]))
    print(summary("cold: PUT alone", cold["put"]))
    print(summary("cold: stop -> stopped server exited", cold["exit"]))
    print(summary("cold baseline: bare render-server to /health", cold["bare"]))
    warm_p50, cold_p50 = pct(warm["ready"], 50), pct(cold["ready"], 50)
    ratios: dict[str, Any] = {
        "warm_p50_over_get_p50": warm_p50 / pct(warm["get"], 50),
        "cold_p50_over_bare_p50": cold_p50 / pct(cold["bare"], 50),
        "cold_p95_over_bare_p95": pct(cold["ready"], 95) / pct(cold["bare"], 95),
    }
    print()
    print("ratios (same run)")
    print(f"  warm p50 / authenticated GET p50        = {ratios['warm_p50_over_get_p50']:6.1f}x")
    print(f"  cold p50 / bare render-server start p50 = {ratios['cold_p50_over_bare_p50']:6.2f}x")
    print(f"  cold p95 / bare render-server start p95 = {ratios['cold_p95_over_bare_p95']:6.2f}x")
    print()
    print("goals (ARR took about 3 minutes)")
    ok_warm, ok_cold = warm_p50 < 0.5, cold_p50 < 3.0
    print(f"  warm p50 < 0.5 s: {warm_p50:.3f} s  {'MET' if ok_warm else 'NOT MET'}")
    print(f"  cold p50 < 3 s:   {cold_p50:.3f} s  {'MET' if ok_cold else 'NOT MET'}")
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0 if ok_warm and ok_cold else 1


if __name__ == "__main__":
    sys.exit(main())
