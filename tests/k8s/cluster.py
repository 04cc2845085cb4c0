"""A real Kubernetes control plane on loopback for tests: etcd (Debian `etcd-server`) + kube-apiserver,
kube-controller-manager and kube-scheduler v1.20.2 (built from Debian's own source package by
tools/k8s/build.sh). Random free ports, a static admin token, RBAC, a kubeconfig; processes started and stopped
by pid. No kubelet: pods are run by tests/k8s/agent.py (fake nodes) or tests/k8s/kubelet.py (a real one).

By hand: `python -m tests.k8s.cluster up STATE_DIR` (prints the kubeconfig path; stays up until `down`) and
`python -m tests.k8s.cluster down STATE_DIR` (see tools/k8s/README.md).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client, config

from tests.harness import free_port, wait_for
from tests.k8s.daemons import Daemons, stop_pids

K8S_CACHE = Path(os.environ.get("OPENRR_K8S_CACHE", "/var/cache/openrr/k8s-1.20.2"))
BIN_DIR = K8S_CACHE / "bin"
"""Where tools/k8s/build.sh puts the binaries (the same default and variable as the script)."""

CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_GRACE_S = 4
"""controller-manager's --node-monitor-grace-period: a node whose lease is not renewed for this long turns
NotReady (the contract's bound; checked every --node-monitor-period=1s, so NotReady within ~5 s)."""

START_TIMEOUT_S = 60
"""etcd + apiserver are ready in 4-5 s on this machine alone; 2 shared cores under a parallel build: x10."""


def missing_binaries(bin_dir: Path = BIN_DIR) -> str | None:
    """None if the control plane can start from `bin_dir`, else why not (naming the script that builds it)."""
    absent = [b for b in CONTROL_PLANE if not os.access(bin_dir / b, os.X_OK)]
    if absent:
        return f"Kubernetes binaries {', '.join(absent)} are missing from {bin_dir}: run tools/k8s/build.sh"
    if shutil.which("etcd") is None:
        return "etcd is not installed (Debian package etcd-server; tools/k8s/build.sh installs it)"
    return None


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler; `.kubeconfig` once started."""

    def __init__(self, bin_dir: Path, state_dir: Path, *, node_grace_s: int = NODE_GRACE_S) -> None:
        self.bin_dir = bin_dir
        self.state_dir = state_dir
        self.node_grace_s = node_grace_s
        self.kubeconfig = state_dir / "kubeconfig"
        self.token = ""
        self.server = ""
        self.daemons = Daemons(state_dir)

    # --- start / stop -----------------------------------------------------------------------------------

    def start(self) -> KubeCluster:
        why = missing_binaries(self.bin_dir)
        if why:
            raise RuntimeError(why)
        d = self.state_dir
        (d / "etcd").mkdir(parents=True, exist_ok=True)
        (d / "certs").mkdir(exist_ok=True)
        try:
            self._start(d)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, d: Path) -> None:
        self._service_account_key(d)
        self.token = secrets.token_hex(16)
        # Mode 0600: the token is cluster-admin.
        _write_private(d / "tokens.csv", f"{self.token},admin,admin,system:masters\n")
        etcd_port, peer_port, api_port, sched_port = (free_port() for _ in range(4))
        self.server = f"https://127.0.0.1:{api_port}"
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.daemons.spawn(
            "etcd",
            [
                "etcd", "--name=default", f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync",
            ],
        )  # fmt: skip
        wait_for(lambda: self._get(f"{etcd_url}/health", "etcd"), START_TIMEOUT_S, "etcd to answer /health")
        self.daemons.spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
                "--insecure-port=0", f"--cert-dir={d / 'certs'}", f"--token-auth-file={d / 'tokens.csv'}",
                "--authorization-mode=RBAC", f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--api-audiences=https://kubernetes.default.svc", "--service-cluster-ip-range=10.96.0.0/24",
                "--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false",
            ],
        )  # fmt: skip
        wait_for(lambda: self._get(f"{self.server}/readyz", "kube-apiserver"), START_TIMEOUT_S, "apiserver /readyz")
        # The certificate the apiserver generated at start (leaf + its own CA): clients verify it.
        _write_private(d / "kubeconfig", _kubeconfig(self.server, self.token, d / "certs" / "apiserver.crt"))
        self.daemons.spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"), f"--kubeconfig={d / 'kubeconfig'}",
                "--leader-elect=false", "--controllers=*,-csrsigning",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'certs' / 'apiserver.crt'}", "--use-service-account-credentials=false",
                f"--node-monitor-grace-period={self.node_grace_s}s", "--node-monitor-period=1s",
                "--pod-eviction-timeout=300s", "--bind-address=127.0.0.1", "--secure-port=0", "--port=0",
            ],
        )  # fmt: skip
        self.daemons.spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"), f"--kubeconfig={d / 'kubeconfig'}", "--leader-elect=false",
                "--bind-address=127.0.0.1", "--port=0", f"--secure-port={sched_port}",
            ],
        )  # fmt: skip
        # The scheduler answers /healthz (always allowed) once serving; the controller-manager has no port here:
        # it is up once its service-account controllers gave `default` a token (which pods need to be admitted).
        wait_for(
            lambda: self._get(f"https://127.0.0.1:{sched_port}/healthz", "kube-scheduler", auth=False),
            START_TIMEOUT_S,
            "kube-scheduler /healthz",
        )
        core = client.CoreV1Api(self.api_client())
        wait_for(
            lambda: self.daemons.alive("kube-controller-manager") and has_default_token(core, "default"),
            START_TIMEOUT_S,
            "kube-controller-manager to give the default service account a token",
        )

    def _service_account_key(self, d: Path) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        _write_private(d / "sa.key", pem.decode())
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        (d / "sa.pub").write_bytes(pub)

    def _get(self, url: str, name: str, *, auth: bool = True) -> bool:
        """True when `url` answers 200 ok; raises if the process behind it died (no point waiting)."""
        self.daemons.alive(name)
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"} if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=2, context=unverified_tls()) as r:
                body = r.read().decode().strip()
        except (urllib.error.URLError, OSError):
            return False
        return r.status == 200 and (body == "ok" or '"health":"true"' in body.replace(" ", ""))

    def log(self, name: str) -> str:
        return self.daemons.log(name)

    @property
    def pids(self) -> dict[str, int]:
        return self.daemons.pids

    def stop(self) -> None:
        """SIGTERM each process (the reverse of start), SIGKILL after 10 s; by recorded pid only."""
        self.daemons.stop()

    # --- clients ----------------------------------------------------------------------------------------

    def api_client(self) -> client.ApiClient:
        """A new client of this cluster as admin (its own connection pool: close it when done)."""
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        return client.ApiClient(cfg)

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def has_default_token(core: client.CoreV1Api, namespace: str) -> bool:
    """True once `namespace`'s default service account has its token (pods are refused admission before)."""
    try:
        sa = core.read_namespaced_service_account("default", namespace)
    except client.ApiException:
        return False
    return bool(sa.secrets)


def unverified_tls() -> ssl.SSLContext:
    """A TLS context that checks no certificate: for the components' self-signed ones (loopback only), and what a
    kubelet's HTTPS probe does."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _kubeconfig(server: str, token: str, ca: Path) -> str:
    cluster = {"server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "openrr-test", "cluster": cluster}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "openrr-test", "context": {"cluster": "openrr-test", "user": "admin"}}],
        "current-context": "openrr-test",
    }
    return json.dumps(doc, indent=1)  # JSON is YAML: no YAML writer needed


# --- by hand: python -m tests.k8s.cluster up|down STATE_DIR --------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.k8s.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("state_dir", type=Path)
    p.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = p.parse_args(argv)
    state: Path = args.state_dir.resolve()
    if args.action == "up":
        if (state / "kube-apiserver.pid").exists():
            print(f"{state} already holds a running cluster (down it first)", file=sys.stderr)
            return 1
        t0 = time.monotonic()
        cluster = KubeCluster(args.bin_dir, state).start()
        (state / "pids.json").write_text(json.dumps(cluster.pids))
        print(f"control plane ready in {time.monotonic() - t0:.1f} s; export KUBECONFIG={cluster.kubeconfig}")
        return 0
    pids = json.loads((state / "pids.json").read_text()) if (state / "pids.json").exists() else {}
    stop_pids(state, list(pids.items())[::-1])
    shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
