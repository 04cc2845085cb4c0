"""Session start to Ready on Kubernetes (fake nodes), from the warm pool and cold, against the local backend's warm and
cold start in the same run; and what an SDK user waits for a warm session on Kubernetes.

Run from the repository root:  python bench/k8s_start.py [--warm 10] [--cold 5] [--sdk 5]

The cluster is real (etcd, kube-apiserver, kube-scheduler, kube-controller-manager v1.20.2, RBAC) with two fake
nodes whose kubelet is the test node agent (tests/k8s/agent.py, the one stand-in): it runs the real `openrr
render-server` for each bound pod. The control plane is `openrr serve --hosting kubernetes` (HTTPS, SQLite, like
the baseline's) in a subprocess. Each start is timed as bench/session_start.py times it: from just before the PUT
to the first GET (every --poll-ms) that says Ready; the PUT answers Ready by itself when a warm pod is free (fast
start), and the first GET then says so at once. Between sessions the bench waits until the stopped session's pod
is gone and, for warm starts, until a new warm pod is Ready (the pool refilled), so each warm start finds one.

Baselines, same run and same timing: the local backend's warm and cold starts (bench/session_start.py's phases).
SDK: the official SDK's `begin_rendering_session(...).result()` with its default polling (5 s), on a Ready warm pod.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import wait_for  # noqa: E402

from bench.common import bench_workdir, load_average, pct, print_header  # noqa: E402
from bench.k8s_common import (  # noqa: E402
    NODES,
    KubeEnv,
    delete_all_render_pods,
    k8s_service,
    kube_env,
    pod_gone,
    pod_of_session,
    ready_warm_pods,
)
from bench.session_start import cold_phase, start_to_ready, stop_session, warm_phase  # noqa: E402

SERVE_ARGS = ["--capacity", "Standard=4", "--rate-limit-per-s", "0", "--log-level", "warning"]
POD_START_S = 90
"""A pod from nothing: schedule, Secret, `python -m openrr render-server` (imports, EGL) on two shared cores."""


def k8s_phase(env: KubeEnv, data_dir: Path, n: int, warm: bool, poll_s: float, grace: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ready": [], "put": [], "refill": [], "gone": []}
    args = ["--warm-pool", f"Standard={1 if warm else 0}", "--stop-grace-s", f"{grace:g}", *SERVE_ARGS]
    with k8s_service(env, data_dir, args) as svc, svc.api() as api:
        api.get("/", params={"api-version": "2021-01-01"})  # open the kept-alive connection before timing
        if warm:
            wait_for(lambda: ready_warm_pods(env), POD_START_S, "the first Ready warm pod", 0.05)
        for i in range(n):
            sid, ready, put = start_to_ready(api, svc, poll_s)
            out["ready"].append(ready)
            out["put"].append(put)
            pod = pod_of_session(env, sid)
            t_stop = time.perf_counter()
            stop_session(api, svc, sid)
            refilled = gone = 0.0
            while not ((refilled or not warm) and gone):  # quiesce before the next session
                if time.perf_counter() - t_stop > POD_START_S:
                    raise RuntimeError(f"no refill/pod deletion {POD_START_S} s after stop\n{svc.log()[-4000:]}")
                if warm and not refilled and ready_warm_pods(env):
                    refilled = time.perf_counter() - t_stop
                if not gone and (pod is None or pod_gone(env, pod)):
                    gone = time.perf_counter() - t_stop
                time.sleep(0.05)
            out["refill"].append(refilled)
            out["gone"].append(gone)
            kind = "warm" if warm else "cold"
            after = (f"pool refilled {refilled:5.2f} s, " if warm else "") + f"pod gone {gone:5.2f} s"
            print(f"    k8s {kind} {i + 1:2d}/{n}: ready {ready * 1000:7.1f} ms;  after stop: {after}", flush=True)
    delete_all_render_pods(env)  # the warm pod outlives the replica
    return out


def sdk_phase(env: KubeEnv, data_dir: Path, n: int) -> tuple[list[float], list[str]]:
    """n SDK warm starts with default polling, each on a Ready warm pod (bench/sdk_warm_start.py's loop)."""
    from bench.sdk_warm_start import sdk_starts

    with k8s_service(env, data_dir, ["--warm-pool", "Standard=1", "--stop-grace-s", "1", *SERVE_ARGS]) as svc:
        times, statuses = sdk_starts(svc, n, warm_ready=lambda: ready_warm_pods(env))
    for i, (t, status) in enumerate(zip(times, statuses, strict=True)):
        print(f"    k8s sdk {i + 1:2d}/{n}: result() {t * 1000:7.1f} ms ({status})", flush=True)
    delete_all_render_pods(env)
    return times, statuses


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<46} n={len(values):<3} p50={pct(values, 50) * 1000:8.1f} ms  p90={pct(values, 90) * 1000:8.1f} ms"
        f"  min={min(values) * 1000:8.1f}  max={max(values) * 1000:8.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=10, help="warm starts per backend (default 10)")
    ap.add_argument("--cold", type=int, default=5, help="cold starts per backend (default 5)")
    ap.add_argument("--sdk", type=int, default=5, help="SDK warm starts on Kubernetes (default 5)")
    ap.add_argument("--poll-ms", type=float, default=10.0, help="GET polling interval (default 10 ms)")
    ap.add_argument("--stop-grace-s", type=float, default=1.0, help="render servers' stop grace (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args(argv)
    poll_s = args.poll_ms / 1000
    grace = args.stop_grace_s

    print_header("k8s_start")
    print(f"  {args.warm} warm and {args.cold} cold sessions per backend, {args.sdk} SDK starts; polling GET every "
          f"{args.poll_ms:g} ms; --stop-grace-s {grace:g}; fake nodes {NODES}")  # fmt: skip
    started = time.perf_counter()
    with bench_workdir("openrr-bench-k8s-start-", args.keep) as work:
        print("  baseline: local backend (bench/session_start.py's phases)", flush=True)
        local_warm = warm_phase(work / "local", args.warm, poll_s, 2, grace)
        local_cold = cold_phase(work / "local", args.cold, poll_s, grace)
        t_cluster = time.perf_counter()
        with kube_env(work) as env:
            print(f"  cluster up in {time.perf_counter() - t_cluster:.1f} s (2 fake nodes Ready)", flush=True)
            k8s_warm = k8s_phase(env, work / "k8s-warm", args.warm, True, poll_s, grace)
            k8s_cold = k8s_phase(env, work / "k8s-cold", args.cold, False, poll_s, grace)
            sdk, statuses = sdk_phase(env, work / "k8s-sdk", args.sdk) if args.sdk else ([], [])

    print()
    print("results (PUT -> first Ready GET unless said otherwise)")
    print(line("local warm (baseline)", local_warm["ready"]))
    print(line("local cold (baseline)", local_cold["ready"]))
    print(line("local cold: bare render-server to /health", local_cold["bare"]))
    print(line("k8s warm", k8s_warm["ready"]))
    print(line("k8s warm: PUT alone", k8s_warm["put"]))
    print(line("k8s warm: stop -> warm pool refilled (untimed)", k8s_warm["refill"]))
    print(line("k8s cold", k8s_cold["ready"]))
    print(line("k8s stop -> pod gone (untimed)", k8s_warm["gone"] + k8s_cold["gone"]))
    if sdk:
        print(line("k8s SDK result(), default polling, warm", sdk))
    warm_p50, cold_p50 = pct(k8s_warm["ready"], 50), pct(k8s_cold["ready"], 50)
    print()
    print("ratios (same run)")
    print(f"  k8s warm p50 / local warm p50 = {warm_p50 / pct(local_warm['ready'], 50):6.2f}x"
          f"   p90 {pct(k8s_warm['ready'], 90) / pct(local_warm['ready'], 90):6.2f}x")  # fmt: skip
    print(f"  k8s cold p50 / local cold p50 = {cold_p50 / pct(local_cold['ready'], 50):6.2f}x"
          f"   p90 {pct(k8s_cold['ready'], 90) / pct(local_cold['ready'], 90):6.2f}x")  # fmt: skip
    if sdk:
        print(f"  k8s SDK warm p50 / k8s warm p50 = {pct(sdk, 50) / warm_p50:6.2f}x")
    print()
    print("goals")
    checks = [("k8s warm p50 <= 0.5 s", warm_p50, 0.5), ("k8s cold p50 <= 3 s", cold_p50, 3.0)]
    if sdk:
        checks.append(("k8s SDK warm p50 <= 0.1 s", pct(sdk, 50), 0.1))
    ok = True
    for name, value, goal in checks:
        met = value <= goal
        ok = ok and met
        print(f"  {name:<28} {value:7.3f} s  {'MET' if met else 'NOT MET'}")
    if sdk and {s.lower().rsplit(".", 1)[-1] for s in statuses} != {"ready"}:
        print(f"  SDK statuses: {sorted(set(statuses))}  (expected Ready only)")
        ok = False
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
