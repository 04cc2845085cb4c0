"""50 sessions created at once across two replicas on one PostgreSQL, Kubernetes backend with fake nodes: the time
until all are Ready, and a count of duplicates (which must be zero).

Run from the repository root:  python bench/k8s_burst.py [--sessions 50]

Two `openrr serve --hosting kubernetes` replicas share one real PostgreSQL (tests/postgres.py), one local CA
(--ca-dir) and one secrets key; no warm pool, so every session gets a new pod. The cluster is real (etcd,
kube-apiserver, kube-scheduler, kube-controller-manager v1.20.2); the test node agent (tests/k8s/agent.py, the one
stand-in) plays the kubelet for two fake nodes and runs the real `openrr render-server` for each pod.

All creates go out at once (one thread each, released by a barrier), alternating between the replicas; then the
session list is read every --poll-ms, alternating between the replicas, until every session is Ready. A watch
records every render pod the run saw, from before the burst, for the duplicate counts: a pod given to two sessions,
a session given two pods, a (node, host port) given to two pods; and the sessions' (hostname, handshakePort) must
all differ. Baseline, same run, same replicas: one session started alone (cold), --baseline times, median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psutil  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from tests.harness import wait_for  # noqa: E402
from tests.k8s.ledger import PodLedger  # noqa: E402
from tests.postgres import postgres_available, postgres_server  # noqa: E402

from bench.common import bench_workdir, load_average, pct, print_header  # noqa: E402
from bench.k8s_common import (  # noqa: E402
    NODES,
    KubeEnv,
    Replica,
    k8s_service,
    kube_env,
    render_pods,
)
from bench.session_start import start_to_ready  # noqa: E402

API = {"api-version": "2021-01-01"}
READY_WITHIN_S = 900
"""Give up on the burst after this long (50 render-server starts on two shared cores)."""
PUT_TIMEOUT_S = 300
"""A client's patience with one request of the burst (the harness's 30 s is too short for some creates)."""
NODE_GRACE_S = 40
"""Kubernetes' default node grace period. The test cluster's 4 s (made for the NotReady tests) was missed by the
node agent's lease renewal during a 50-pod burst on two overloaded cores, and a lost node fails its sessions."""
MEMORY_FLOOR_GIB = 2.0
"""Abort the burst when the machine's available memory falls below this: the VM is shared, and the kernel's OOM
killer would pick other people's processes as readily as ours."""


def sessions_url(svc: Replica, sid: str = "") -> str:
    return f"/accounts/{svc.account_id}/sessions" + (f"/{sid}" if sid else "")


def live_statuses(api: httpx.Client, svc: Replica) -> dict[str, str]:
    """Status of every live session of the account (the list, all pages)."""
    out: dict[str, str] = {}
    url: str | None = sessions_url(svc)
    params: dict[str, str] | None = API
    while url is not None:
        r = api.get(url, params=params)
        r.raise_for_status()
        doc = r.json()
        out.update({s["id"]: s["status"] for s in doc["sessions"]})
        url, params = doc.get("@nextLink"), None
    return out


def render_pss_mb(env: KubeEnv) -> tuple[int, float]:
    """Render-server processes the agent runs now and their proportional set size with their render processes, MB
    (PSS: shared libraries such as LLVM's are counted once over all processes, not once per process as in RSS)."""
    total, count = 0, 0
    for name in env.agent.pods_running():
        proc = env.agent.process_of(name)
        if proc is None:
            continue
        count += 1
        try:
            for p in [proc, *proc.children(recursive=True)]:
                total += p.memory_full_info().pss
        except psutil.Error:
            continue
    return count, total / 2**20


def available_gib() -> float:
    return psutil.virtual_memory().available / 2**30


def burst(env: KubeEnv, replicas: list[Replica], apis: list[httpx.Client], n: int, poll_s: float) -> dict[str, Any]:
    sids = [f"burst-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    put_status: dict[str, int] = {}
    put_done: dict[str, float] = {}
    barrier = threading.Barrier(n + 1)
    body = {"maxLeaseTimeMinutes": 30, "size": "Standard"}

    def create(i: int, sid: str) -> None:
        svc, api = replicas[i % 2], apis[i % 2]
        barrier.wait()
        r = api.put(sessions_url(svc, sid), params=API, json=body)
        put_done[sid] = time.perf_counter()
        put_status[sid] = r.status_code

    threads = [threading.Thread(target=create, args=(i, sid)) for i, sid in enumerate(sids)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    # Polled from the start, while creates are still in flight: a session may be Ready before the last create answers.
    ready_at: dict[str, float] = {}
    polls = 0
    low = available_gib()
    failed: dict[str, str] = {}
    while len(ready_at) + len(failed) < n:
        if time.perf_counter() - t0 > READY_WITHIN_S:
            raise RuntimeError(f"only {len(ready_at)}/{n} Ready after {READY_WITHIN_S} s")
        if not any(t.is_alive() for t in threads) and len(put_status) < n:
            raise RuntimeError(f"{n - len(put_status)} creates raised (see above)")
        refused = {sid: code for sid, code in put_status.items() if code not in (200, 201)}
        if refused:
            raise RuntimeError(f"creates refused: {refused}")
        asked = time.perf_counter()
        statuses = live_statuses(apis[polls % 2], replicas[polls % 2])
        polls += 1
        now = time.perf_counter()
        for sid in sids:
            if sid in ready_at:
                continue
            status = statuses.get(sid)
            if status == "Ready":
                ready_at[sid] = now - t0
            # Absent: ended (Error, Stopped, Expired), or created after the list was read (not judged yet).
            elif status is None and put_done.get(sid, now) < asked and sid not in failed:
                doc = apis[0].get(sessions_url(replicas[0], sid), params=API).json()
                failed[sid] = f"{now - t0:.1f} s: {doc.get('status')}: {(doc.get('error') or {}).get('message')}"
        low = min(low, available_gib())
        if low < MEMORY_FLOOR_GIB:
            ready = f"{len(ready_at)}/{n} Ready"
            raise RuntimeError(f"available memory {low:.1f} GiB < {MEMORY_FLOOR_GIB} GiB with {ready}: aborted")
        if polls % 20 == 0:
            print(f"    {now - t0:6.1f} s: {len(ready_at)}/{n} Ready, {low:.1f} GiB available", flush=True)
        time.sleep(poll_s)
    t_all = time.perf_counter() - t0
    for t in threads:
        t.join(PUT_TIMEOUT_S)
    t_puts = max(put_done.values()) - t0
    low = min(low, available_gib())
    docs = [
        apis[i % 2].get(sessions_url(replicas[i % 2], sid), params=API).json()
        for i, sid in enumerate(sids)
        if sid in ready_at
    ]
    return {
        "sids": sids,
        "puts": t_puts,
        "put_each": [put_done[s] - t0 for s in sids],
        "created": sum(1 for c in put_status.values() if c == 201),
        "ready": list(ready_at.values()),
        "failed": failed,
        "all": t_all,
        "docs": docs,
        "available_low": low,
        "pss": render_pss_mb(env),
    }


def stop_all(env: KubeEnv, replicas: list[Replica], apis: list[httpx.Client], sids: list[str]) -> float:
    """Stop the sessions (alternating replicas); seconds until every render pod is deleted."""
    t0 = time.perf_counter()
    for i, sid in enumerate(sids):
        apis[i % 2].post(sessions_url(replicas[i % 2], sid) + "/:stop", params=API).raise_for_status()
    wait_for(lambda: not render_pods(env), 300, "every render pod to be deleted", 0.2)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50, help="sessions created at once (default 50)")
    ap.add_argument("--baseline", type=int, default=3, help="single cold starts for the baseline (default 3)")
    ap.add_argument("--poll-ms", type=float, default=100.0, help="session list polling interval (default 100 ms)")
    ap.add_argument(
        "--start-timeout-s",
        type=float,
        default=None,
        help="the replicas' start_timeout_s (a session whose server is not Ready by then fails); default: openrr's "
        "60 s, which N render-server starts on two shared cores can exceed",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args(argv)
    why = postgres_available()
    if why is not None:
        raise SystemExit(f"needs a real PostgreSQL: {why}")
    n = args.sessions
    print_header("k8s_burst")
    mem = psutil.virtual_memory()
    timeout = f"{args.start_timeout_s:g} s" if args.start_timeout_s is not None else "openrr's default"
    print(f"  {n} sessions at once across 2 replicas on one PostgreSQL; no warm pool; start timeout {timeout}; "
          f"node grace {NODE_GRACE_S} s; fake nodes {NODES}; "
          f"memory {mem.total / 2**30:.1f} GiB, {mem.available / 2**30:.1f} GiB available")  # fmt: skip
    started = time.perf_counter()
    serve_args = ["--warm-pool", "Standard=0", "--capacity", f"Standard={n + 10}", "--rate-limit-per-s", "0",
                  "--stop-grace-s", "1", "--log-level", "warning"]  # fmt: skip
    shared_env = {"OPENRR_SECRETS_KEY": Fernet.generate_key().decode()}
    if args.start_timeout_s is not None:
        shared_env["OPENRR_START_TIMEOUT_S"] = f"{args.start_timeout_s:g}"
    with ExitStack() as stack, bench_workdir("openrr-bench-k8s-burst-", args.keep) as work:
        ca = work / "ca"
        ca.mkdir()
        # Not under the work directory: that is private to root, and the server runs as the postgres user.
        pg_base = Path(tempfile.mkdtemp(prefix="openrr-bench-pg-"))
        stack.callback(shutil.rmtree, pg_base, ignore_errors=True)
        cluster = kube_env(work, max_pods=max(110, n + 10), node_grace_s=NODE_GRACE_S)
        with postgres_server(pg_base) as url, cluster as env:
            flags = [*serve_args, "--database-url", url]
            with (
                k8s_service(env, work / "a", flags, extra_env=shared_env, ca_dir=ca) as a,
                k8s_service(
                    env, work / "b", flags, extra_env=shared_env, ca_dir=ca, account=(a.account_id, a.key)
                ) as b,
                a.api() as api_a,
                b.api() as api_b,
            ):
                replicas, apis = [a, b], [api_a, api_b]
                for api in apis:  # a create in the burst may take longer than the harness's 30 s: measure it
                    api.timeout = httpx.Timeout(PUT_TIMEOUT_S)
                print(
                    f"  replicas up in {time.perf_counter() - started:.0f} s; baseline: one session alone", flush=True
                )
                single = []
                for i in range(args.baseline):
                    sid, ready, _ = start_to_ready(apis[i % 2], replicas[i % 2], 0.01)  # type: ignore[arg-type]
                    single.append(ready)
                    stop_all(env, replicas, apis, [sid])
                    print(f"    single {i + 1}/{args.baseline}: ready {ready:6.2f} s", flush=True)
                ledger = PodLedger(env.core, env.namespace)
                ledger.start()
                try:
                    before_gib = available_gib()
                    print(f"  burst: {n} creates at once ({before_gib:.1f} GiB available)", flush=True)
                    out = burst(env, replicas, apis, n, args.poll_ms / 1000)
                    pods_now = render_pods(env)
                    running = len(env.agent.pods_running())
                    t_stop = stop_all(env, replicas, apis, out["sids"])
                finally:
                    ledger.stop()
            dups = ledger.duplicates()
    endpoints = {(d["hostname"], d["handshakePort"]) for d in out["docs"]}
    live_pods = [p for p in pods_now if p.metadata.deletion_timestamp is None]
    print()
    print("results")
    s50 = pct(single, 50)
    print(f"  baseline: one session alone, cold        n={len(single)}  p50 {s50:7.2f} s  (min {min(single):.2f}, "
          f"max {max(single):.2f})")  # fmt: skip
    print(f"  burst: {n} creates answered in           {out['puts']:7.2f} s  ({out['created']} answered 201)")
    print(f"  burst: each create's answer              p50 {pct(out['put_each'], 50):7.2f} s  p90 "
          f"{pct(out['put_each'], 90):7.2f} s  max {max(out['put_each']):.2f} s")  # fmt: skip
    print(f"  burst: each session's Ready              p50 {pct(out['ready'], 50):7.2f} s  p90 "
          f"{pct(out['ready'], 90):7.2f} s  first {min(out['ready']):.2f} s")  # fmt: skip
    failed = out["failed"]
    if failed:
        print(f"  burst: {len(failed)} of {n} FAILED, e.g. {sorted(failed.values())[:3]}")
        print(f"  burst: the other {n - len(failed)} Ready; all settled at {out['all']:7.2f} s")
    else:
        print(f"  burst: ALL {n} Ready after                {out['all']:7.2f} s")
    print(f"  stop all {n} -> every pod deleted        {t_stop:7.2f} s (untimed above)")
    cnt, pss = out["pss"]
    each = pss / max(cnt, 1)
    drop = before_gib - out["available_low"]
    print(f"  render servers' memory (PSS) when all Ready: {pss:.0f} MB over {cnt} pods ({each:.0f} MB each)")
    print(f"  machine's available memory: {before_gib:.1f} GiB before the burst, lowest {out['available_low']:.1f} GiB "
          f"during it ({drop * 1024 / n:.0f} MB per session)")  # fmt: skip
    print()
    print("ratios (same run)")
    print(f"  all Ready / one session alone p50         = {out['all'] / s50:6.2f}x")
    print(f"  all Ready / ({n} x one session alone p50) = {out['all'] / (n * s50):6.2f}x  (serial starts would be 1)")
    print()
    print("duplicates (all must be 0)")
    problems = 0
    for what, found in dups.items():
        problems += len(found)
        print(f"  {what:<36} {len(found)}  {found[:3] if found else ''}")
    extra = [
        ("sessions sharing (hostname, port)", len(out["docs"]) - len(endpoints)),
        (f"render pods live at the end (!= {n - len(failed)})", abs(len(live_pods) - (n - len(failed)))),
        (f"agent processes running (!= {n - len(failed)})", abs(running - (n - len(failed)))),
        ("sessions the ledger saw no pod for", sum(1 for s in out["sids"] if s not in ledger.pods_of_session)),
    ]
    for what, count in extra:
        problems += count
        print(f"  {what:<36} {count}")
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0 if problems == 0 and not failed else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
