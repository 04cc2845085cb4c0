"""A render pod's create -> Ready on a REAL kubelet (containerd + runc), against the same pod on a fake node of the
test node agent, in the same run and the same cluster.

Run from the repository root:  python bench/k8s_kubelet.py [--pods 3]

The pod is the Kubernetes backend's own (hosting/kube_pod.render_pod, warm, hostNetwork, the readiness probe on
/health), created by hand here as the backend would: its Secret (control secret, a leaf for the node's address) once
the scheduler bound it. Ready is the pod's Ready condition: the kubelet's own HTTPS probe on the real node, the
agent's on the fake one. On the real node the pod's container runs the small image of tests/k8s/kubelet.py, which
reaches this machine's Python, venv and Mesa through read-only hostPath volumes (the backend's pod template has no
way to add those, so a whole `openrr serve` session cannot run there: see bench/RESULTS.md §9). The figure is the
pod's part of a cold session start; the control plane's part is in bench/k8s_start.py.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from tests.k8s.kubelet import (  # noqa: E402
    ADDRESS,
    NODE,
    RENDER_REF,
    RealNode,
    host_runtime_volumes,
    kubelet_unavailable,
    render_server_image,
)
from tests.k8s.waits import condition, pod_named, watch_until  # noqa: E402

from bench.common import bench_workdir, load_average, pct, print_header  # noqa: E402
from bench.k8s_common import NODES, PORT_RANGE, KubeEnv, kube_env  # noqa: E402
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
    pod = render_pod(template, name, "Standard", port, None)
    pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    if node == NODE:
        volumes, mounts = host_runtime_volumes()
        pod["spec"]["volumes"] += volumes
        pod["spec"]["containers"][0]["volumeMounts"] += mounts
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=3, help="pods per node kind, alternating (default 3)")
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
        finally:
            node.stop()
    real, fake = pct(times["real"], 50), pct(times["fake"], 50)
    print()
    print("results (render pod create -> Ready condition)")
    for kind, label in (("real", "real kubelet (containerd + runc)"), ("fake", "fake node (test node agent)")):
        values = times[kind]
        print(f"  {label:<34} p50 {pct(values, 50):6.2f} s  min {min(values):.2f}  max {max(values):.2f}")
    print(f"  ratio real / fake p50 = {real / fake:.2f}x (same run)")
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
