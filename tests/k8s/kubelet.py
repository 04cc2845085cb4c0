"""A REAL node for the Kubernetes tests (the `kubelet`-marked tier): containerd + runc (Debian packages) and the
kubelet built by tools/k8s/build.sh, joined to a `KubeCluster` as node `real-node-0` on 127.0.0.1. Images are
built locally as OCI archives and imported into containerd; nothing is pulled from a registry.

The render-server image (`render_server_image`) is deliberately small: a rootfs of mount points and the merged-usr
symlinks, whose container reaches this machine's /usr (Python, Mesa EGL), /etc and the virtual environment and
source tree of openrr through READ-ONLY hostPath volumes (`host_runtime_volumes`; the backend adds them to its pods
through the `kube_extra_volumes` setting, so `openrr serve --hosting kubernetes` runs whole sessions here). The
container, its namespaces, cgroups, the CRI, image handling, Secret volumes and the kubelet's own probes are all
real; the image is not self-contained (deploy/ holds the real Containerfiles; building them needs a registry-free
image builder this machine does not have).

Traps solved here (also in tools/k8s/README.md): containerd needs `restrict_oom_score_adj = true` (the sandbox
forbids lowering oom scores); CRI normalises image names, so local images are `docker.io/local/...`; cgroup v1
needs `hugetlb` mounted for kubelet 1.20; CRI reports the network not ready without a CNI config, so a loopback-only
one is written (pods here use hostNetwork).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from kubernetes import client

from openrr.config import KubeHostVolume
from tests.harness import free_port, wait_for
from tests.k8s.agent import SMP
from tests.k8s.cluster import BIN_DIR, K8S_CACHE, KubeCluster
from tests.k8s.daemons import Daemons

NODE = "real-node-0"
ADDRESS = "127.0.0.1"
"""A kubelet's node IP must be an address of one of the host's interfaces: lo has 127.0.0.1 only."""
PAUSE_REF = "docker.io/local/pause:1"
RENDER_REF = "docker.io/local/openrr-render:1"
READY_S = 90
"""kubelet registration -> node Ready: ~7 s measured alone; 2 shared cores with other suites, x10+."""


def kubelet_unavailable(bin_dir: Path = BIN_DIR) -> str | None:
    """None if a real node can start here, else why not."""
    if os.geteuid() != 0:
        return "a kubelet with containerd needs root"
    for tool in ("containerd", "runc", "ctr", "gcc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages containerd, runc, gcc; .ci/run installs them)"
    if not Path("/usr/lib/cni/loopback").exists():
        return "the CNI loopback plugin is missing (Debian package containernetworking-plugins)"
    if not os.access(bin_dir / "kubelet", os.X_OK) or not (K8S_CACHE / "pause.c").exists():
        return f"kubelet or pause.c missing from {K8S_CACHE}: run tools/k8s/build.sh"
    return None


class RealNode:
    """containerd + kubelet as node `NODE`; `start()` returns once the node is Ready."""

    def __init__(self, cluster: KubeCluster, state_dir: Path, bin_dir: Path = BIN_DIR) -> None:
        self.cluster = cluster
        self.dir = state_dir
        self.bin_dir = bin_dir
        self.ctr_dir = state_dir / "ctr"
        self.socket = self.ctr_dir / "containerd.sock"
        self.daemons = Daemons(state_dir)

    def start(self) -> RealNode:
        why = kubelet_unavailable(self.bin_dir)
        if why:
            raise RuntimeError(why)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        _mount_hugetlb()
        (self.ctr_dir / "cni").mkdir(parents=True, exist_ok=True)
        (self.ctr_dir / "config.toml").write_text(_containerd_config(self.ctr_dir, self.socket))
        (self.ctr_dir / "cni" / "10-lo.conflist").write_text(
            json.dumps({"cniVersion": "0.4.0", "name": "lo", "plugins": [{"type": "loopback"}]})
        )
        self.daemons.spawn("containerd", ["containerd", "--config", str(self.ctr_dir / "config.toml")])
        wait_for(lambda: self.daemons.alive("containerd") and self.socket.exists(), 30, "containerd's socket")
        self.import_image(pause_image(self.dir / "img"))
        kubelet_dir = self.dir / "kubelet"
        kubelet_dir.mkdir(exist_ok=True)
        (self.dir / "kubelet.yaml").write_text(json.dumps(_kubelet_config(free_port(), free_port())))
        self.daemons.spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"), f"--config={self.dir / 'kubelet.yaml'}",
                f"--kubeconfig={self.cluster.kubeconfig}", "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.socket}", f"--node-ip={ADDRESS}",
                f"--hostname-override={NODE}", f"--root-dir={kubelet_dir}", f"--cert-dir={kubelet_dir / 'pki'}",
                f"--pod-infra-container-image={PAUSE_REF}",
            ],
        )  # fmt: skip
        with self.cluster.api_client() as api:
            core = client.CoreV1Api(api)
            wait_for(lambda: self.daemons.alive("kubelet") and _node_exists(core), READY_S, f"{NODE} registered")
            # The kubelet refuses a loopback node IP ("nodeIP can't be loopback address") and then posts no address
            # at all, so pods get no status.hostIP. Everything here stays on loopback: the test posts the address
            # once; the kubelet's later status updates leave a field they could not set alone.
            addresses = [{"type": "InternalIP", "address": ADDRESS}, {"type": "Hostname", "address": NODE}]
            core.patch_node_status(NODE, {"status": {"addresses": addresses}}, _content_type=SMP)
            wait_for(lambda: self.daemons.alive("kubelet") and _node_ready(core), READY_S, f"{NODE} Ready")

    def import_image(self, archive: Path) -> None:
        subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", "k8s.io", "images", "import", str(archive)],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip

    def container_log(self, namespace: str, pod: str) -> str:
        """What the pod's containers wrote (the kubelet keeps it under /var/log/pods, a path 1.20 fixes)."""
        logs = sorted(Path("/var/log/pods").glob(f"{namespace}_{pod}_*/*/*.log"))
        return "".join(p.read_text(errors="replace") for p in logs)

    def log(self, name: str) -> str:
        return self.daemons.log(name)

    def stop(self) -> None:
        """Force-deletes the node's pods, stops the kubelet, kills every container task, stops containerd,
        unmounts what they mounted under the state directory, and deletes the Node."""
        with contextlib.suppress(Exception), self.cluster.api_client() as api:
            core = client.CoreV1Api(api)
            for pod in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE}").items:
                meta = pod.metadata
                assert meta is not None and meta.name and meta.namespace
                core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=0)
        self.daemons.stop("kubelet")
        if "containerd" in self.daemons.pids:
            ctr = ["ctr", "-a", str(self.socket), "-n", "k8s.io"]
            for verb in (["tasks", "kill", "-s", "SIGKILL"], ["tasks", "rm", "-f"], ["containers", "rm"]):
                kind = verb[0]
                listed = subprocess.run([*ctr, kind, "ls", "-q"], capture_output=True, text=True, timeout=30)
                for ident in listed.stdout.split():
                    subprocess.run([*ctr, *verb, ident], capture_output=True, timeout=30)
            self.daemons.stop("containerd")
        _unmount_under(self.dir)
        with contextlib.suppress(Exception), self.cluster.api_client() as api:
            client.CoreV1Api(api).delete_node(NODE)


def _node_exists(core: client.CoreV1Api) -> bool:
    try:
        core.read_node(NODE)
    except client.ApiException:
        return False
    return True


def _node_ready(core: client.CoreV1Api) -> bool:
    try:
        node = core.read_node(NODE)
    except client.ApiException:
        return False
    conditions = node.status.conditions if node.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or []) and not (
        node.spec and node.spec.taints
    )


def _mount_hugetlb() -> None:
    """kubelet 1.20 on cgroup v1 refuses to start without the hugetlb hierarchy mounted."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists() or (root / "hugetlb").exists():
        return  # cgroup v2, or mounted already
    (root / "hugetlb").mkdir()
    subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", str(root / "hugetlb")], check=True)


def _unmount_under(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def _containerd_config(root: Path, socket: Path) -> str:
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # This sandbox denies lowering oom_score_adj (pause asks for -998): keep it >= containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{root / "cni"}"
"""


def _kubelet_config(port: int, healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "address": ADDRESS,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": ADDRESS,
        "healthzPort": healthz_port,
        # A test machine's disk and memory are what they are: evict only when truly short.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "nodeStatusUpdateFrequency": "2s",
    }


# --- images, no registry -------------------------------------------------------------------------------------


def oci_archive(
    rootfs: Path, ref: str, out: Path, entrypoint: list[str] | None = None, env: list[str] | None = None
) -> Path:
    """A single-layer OCI image archive of `rootfs` named `ref`, for `ctr images import` (what `docker save` of a
    one-layer image holds; hand-written because no image builder is installed and none may be downloaded)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(rootfs / name, arcname=name)
    layer = raw.getvalue()
    layer_gz = gzip.compress(layer, mtime=0)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": env or ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    config_b = json.dumps(image_config).encode()
    blobs = {_sha(layer_gz): layer_gz, _sha(config_b): config_b}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + _sha(config_b),
                   "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + _sha(layer_gz),
                    "size": len(layer_gz)}],
    }  # fmt: skip
    manifest_b = json.dumps(manifest).encode()
    blobs[_sha(manifest_b)] = manifest_b
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + _sha(manifest_b),
            "size": len(manifest_b),
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.split(":")[-1]},
        }],
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w") as t:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()}
        files |= {f"blobs/sha256/{digest}": data for digest, data in blobs.items()}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pause_image(work: Path) -> Path:
    """The sandbox image: Kubernetes' own pause.c (kept by tools/k8s/build.sh), compiled static."""
    rootfs = work / "pause"
    rootfs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(rootfs / "pause"), str(K8S_CACHE / "pause.c")], check=True)
    return oci_archive(rootfs, PAUSE_REF, work / "pause.tar", ["/pause"])


def _host_runtime() -> list[Path]:
    """What a render server needs from this machine: /usr (Python, Mesa), /etc (linker cache, alternatives), the
    virtual environment and openrr's source tree (an editable install lives there)."""
    import openrr

    source = Path(openrr.__file__).resolve().parents[1]
    return [Path("/usr"), Path("/etc"), Path(sys.prefix), source]


def render_server_image(work: Path) -> Path:
    """A small image for `openrr render-server` (see the module docstring): mount points, merged-usr symlinks."""
    rootfs = work / "render"
    rootfs.mkdir(parents=True, exist_ok=True)
    for d in ("usr", "etc", "tmp", "proc", "sys", "dev", "run", "var/run", "root"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        if not (rootfs / link).is_symlink():
            (rootfs / link).symlink_to(target)
    path = f"PATH={Path(sys.prefix) / 'bin'}:/usr/bin:/bin"
    return oci_archive(rootfs, RENDER_REF, work / "render.tar", None, [path, "HOME=/root"])


def host_runtime_volumes() -> tuple[KubeHostVolume, ...]:
    """The host's runtime for a pod of `render_server_image`, read-only, as `kube_extra_volumes` (the backend's pod
    template adds them: PodTemplate.extra_volumes)."""
    return tuple(
        KubeHostVolume(name=f"host-{i}", hostPath=str(path), mountPath=str(path), readOnly=True)
        for i, path in enumerate(_host_runtime())
    )


def host_runtime_env() -> str:
    """`host_runtime_volumes()` as OPENRR_KUBE_EXTRA_VOLUMES for `openrr serve`."""
    return json.dumps([v.model_dump(by_alias=True) for v in host_runtime_volumes()])
