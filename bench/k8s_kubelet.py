"""Render pod and whole-session create -> Ready on a REAL kubelet (containerd + runc), against the same on a fake
node of the test node agent, in the same run and the same cluster.

Run from the repository root:  python bench/k8s_kubelet.py [--pods 3] [--sessions 3]

Pods: the Kubernetes backend's own (hosting/kube_pod.render_pod, warm, hostNetwork, the readiness probe on /health),
created by hand here as the backend would: its Secret (control secret, a leaf for the node's address) once the
scheduler bound it. Ready is the pod's Ready condition: the kubelet's own HTTPS probe on the real node, the agent's
on the fake one. On the real node the pod's container runs the small image of tests/k8s/kubelet.py, which reaches
this machine's Python, venv and Mesa through read-only hostPath volumes (`kube_extra_volumes`).

Sessions: `openrr serve --hosting kubernetes` (no warm pool) with that image and those volumes; PUT to the first
GET that says Ready (the control plane's own health request on the pod). Each session is steered to one node by
cordoning the others (spec.unschedulable), alternating real and fake; its pod is gone before the next starts.
"""

from __future__ import annotations

import argparse
import functools
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from tests.harness import wait_for  # noqa: E402
from tests.k8s.kubelet import (  # noqa: E402
    ADDRESS,
    NODE,
    RENDER_REF,
    RealNode,
    host_runtime_env,
    host_runtime_volumes,
    kubelet_unavailable,
    render_server_image,
)
from tests.k8s.waits import condition, pod_named, watch_until  # noqa: E402

from bench.common import bench_workdir, load_average, pct, print_header  # noqa: E402
from bench.k8s_common import NODES, PORT_RANGE, KubeEnv, k8s_service, kube_env, pod_gone, pod_of_session  # noqa: E402
from bench.k8s_start import SERVE_ARGS  # noqa: E402
from bench.session_start import start_to_ready, stop_session  # noqa: E402
from openrr import tls  # noqa: E402
from openrr.hosting.kube_pod import STS_KEY, PodTemplate, new_pod_name, pod_secret, render_pod  # noqa: E402

READY_S = 120
"""create -> Ready of one render pod on two shared cores busy with other suites."""


def free_pair(address: str, start: int) -> int:
    port = start
    while port < PORT_RANGE[1]:
        if all(_bindable(address, p) for p in (port, port + 1)):
            return port
        port += 2
    raise RuntimeError(f"no free port pair on {address}")


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def create_to_ready(env: KubeEnv, tls_dir: Path, template: PodTemplate, node: str, address: str, port: int) -> float:
    """Seconds from the pod's create to its Ready condition; the pod is deleted (and gone) after."""
    core, ns = env.core, env.namespace
    name = new_pod_name()
    if node == NODE:  # the stand-in image needs the host's runtime; the fake node runs this machine's Python
        template = replace(template, extra_volumes=host_runtime_volumes())
    pod = render_pod(template, name, "Standard", port, None)
    pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    t0 = time.perf_counter()
    created = core.create_namespaced_pod(ns, pod)
    bound = watch_until(**pod_named(core, ns, name), predicate=lambda p: bool(p and p["spec"].get("nodeName")),
                        timeout=READY_S, what="bound")  # fmt: skip
    assert bound is not None
    chain, key = tls.issue_server_certificate(tls_dir, [address])
    core.create_namespaced_secret(ns, pod_secret(name, created.metadata.uid, "s" * 32, chain, key))
    ready = watch_until(
        **pod_named(core, ns, name),
        predicate=lambda p: condition(p, "Ready") == "True" or (p or {}).get("status", {}).get("phase") == "Failed",
        timeout=READY_S, what=f"render pod Ready on {node}",
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if condition(ready, "Ready") != "True":
        raise RuntimeError(f"render pod {name} on {node} failed: {(ready or {}).get('status')}")
    core.delete_namespaced_pod(name, ns, grace_period_seconds=1)
    watch_until(**pod_named(core, ns, name), predicate=lambda p: p is None, timeout=READY_S, what="gone")
    return elapsed


def only_schedulable(env: KubeEnv, node: str) -> None:
    """Cordon every node but `node` (and uncordon it): the scheduler places the next pod there."""
    for name in (*NODES, NODE):
        env.core.patch_node(name, {"spec": {"unschedulable": name != node}})


def session_starts(env: KubeEnv, work: Path, n: int, fake_node: str) -> dict[str, list[float]]:
    """n sessions per node kind, alternating: seconds from the PUT to the first Ready GET (bench/session_start.py)."""
    times: dict[str, list[float]] = {"real": [], "fake": []}
    extra = {"OPENRR_KUBE_RENDER_IMAGE": RENDER_REF, "OPENRR_KUBE_EXTRA_VOLUMES": host_runtime_env()}
    args = ["--warm-pool", "Standard=0", "--stop-grace-s", "1", *SERVE_ARGS]
    try:
        with k8s_service(env, work / "serve", args, extra_env=extra) as svc, svc.api() as api:
            api.get("/", params={"api-version": "2021-01-01"})  # open the kept-alive connection before timing
            for i in range(n):
                for kind, node in (("real", NODE), ("fake", fake_node)):
                    only_schedulable(env, node)
                    sid, ready, _ = start_to_ready(api, svc, 0.02)
                    pod = pod_of_session(env, sid)
                    assert pod is not None
                    placed = env.core.read_namespaced_pod(pod, env.namespace).spec.node_name
                    if placed != node:
                        raise RuntimeError(f"session {sid}'s pod ran on {placed}, not {node}")
                    stop_session(api, svc, sid)
                    wait_for(functools.partial(pod_gone, env, pod), READY_S, f"{pod} gone", 0.05)
                    times[kind].append(ready)
                    print(f"    {kind} {i + 1}/{n}: session create -> Ready {ready:6.2f} s", flush=True)
    finally:
        for name in (*NODES, NODE):
            env.core.patch_node(name, {"spec": {"unschedulable": False}})
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"results ({title})")
    for kind, label in (("real", "real kubelet (containerd + runc)"), ("fake", "fake node (test node agent)")):
        values = times[kind]
        print(f"  {label:<34} p50 {pct(values, 50):6.2f} s  min {min(values):.2f}  max {max(values):.2f}")
    print(f"  ratio real / fake p50 = {pct(times['real'], 50) / pct(times['fake'], 50):.2f}x (same run)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=3, help="pods per node kind, alternating (default 3)")
    ap.add_argument("--sessions", type=int, default=3, help="sessions per node kind, alternating (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = ap.parse_args(argv)
    why = kubelet_unavailable()
    if why is not None:
        raise SystemExit(f"no real kubelet here: {why}")
    print_header("k8s_kubelet")
    fake_node, fake_ip = next(iter(NODES.items()))
    print(f"  {args.pods} render pods per node, alternating: real kubelet {NODE} ({ADDRESS}) and fake {fake_node}")
    started = time.perf_counter()
    times: dict[str, list[float]] = {"real": [], "fake": []}
    with bench_workdir("openrr-bench-k8s-kubelet-", args.keep) as work, kube_env(work) as env:
        node = RealNode(env.cluster, work / "node").start()
        try:
            node.import_image(render_server_image(work / "img"))
            print(f"  cluster, fake nodes and real node up in {time.perf_counter() - started:.0f} s", flush=True)
            tls_dir = work / "tls"
            tls.ensure_local_ca(tls_dir, [ADDRESS, *NODES.values()])
            sts = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
            pem = sts.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            secret: Any = {"metadata": {"name": "openrr-sts-public"}, "stringData": {STS_KEY: pem.decode()}}
            env.core.create_namespaced_secret(env.namespace, secret)
            template = PodTemplate(image=RENDER_REF, stop_grace_s=1, sts_secret="openrr-sts-public")
            for i in range(args.pods):
                for kind, name, ip in (("real", NODE, ADDRESS), ("fake", fake_node, fake_ip)):
                    port = free_pair(ip, PORT_RANGE[0] + 2 * i)
                    times[kind].append(create_to_ready(env, tls_dir, template, name, ip, port))
                    print(f"    {kind} {i + 1}/{args.pods}: create -> Ready {times[kind][-1]:6.2f} s", flush=True)
            sessions = session_starts(env, work, args.sessions, fake_node)
        finally:
            node.stop()
    print()
    report("render pod create -> Ready condition", times)
    report("session PUT -> Ready, openrr serve --hosting kubernetes, no warm pool", sessions)
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
