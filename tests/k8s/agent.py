"""THE ONE STAND-IN of the Kubernetes tests: a node agent that plays the kubelet for fake nodes.

Everything else in those tests is real: etcd, kube-apiserver, kube-scheduler (it binds pods to these nodes),
kube-controller-manager (node lifecycle, garbage collection), RBAC, the API's semantics, the control plane and its
PostgreSQL. The agent does, per node (each one a loopback address 127.0.1.x):

- registers the Node (InternalIP, capacity cpu/memory/pods and optionally `nvidia.com/gpu`), renews its Lease in
  kube-node-lease every second and posts the Ready condition; `stop_renewing(node)` cuts the node off as a
  network partition would (no lease, no status, nothing finalised; its processes keep running), so the real
  controller-manager turns it NotReady; `resume_renewing(node)` reconnects it;
- for each pod the scheduler bound to one of its nodes: materialises its secret / configMap / emptyDir / hostPath
  volumes (waiting, as a kubelet does, for a missing Secret or ConfigMap), resolves env (values, fieldRef
  status.hostIP / status.podIP / metadata.name / metadata.namespace / spec.nodeName, secretKeyRef,
  configMapKeyRef; envFrom) and `$(VAR)` in command and args, rewrites volume mountPaths found in command, args and
  env to the materialised directories (it cannot chroot), runs `openrr ...` as `[python, "-m", "openrr", ...]`
  and any other command as is, in its own process group (the container);
- patches pod status: Pending -> Running (hostIP, podIP = the node address for hostNetwork pods, else a unique
  127.0.2.x, containerStatuses), the Ready condition from the readinessProbe it runs (httpGet, tcpSocket, exec),
  Succeeded / Failed with the exit code and reason when the process ends ("OOMKilled" when `oom_kill` killed it);
- on a deletionTimestamp: SIGTERM to the process group, SIGKILL after the pod's grace period, then deletes the pod
  with grace 0 (a kubelet's final delete).

What it does NOT do (a real kubelet does; the `kubelet`-marked tier in tests/k8s/kubelet.py runs one): no
containers, images, chroot, namespaces or cgroups (so no resource limits are enforced and no memory pressure
evicts), no liveness or startup probes, no restarts (one container per pod, `restartPolicy` Never only), no init
containers, no projected or downwardAPI volumes, no ports published (hostNetwork pods bind the node address
themselves), no CNI, no pod IP routing. Secret and ConfigMap files get the volume's (defaulted) modes, as a
kubelet writes them (0644 unless the pod's `defaultMode` / `items[].mode` say otherwise); their contents are never
logged.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from kubernetes import client, config

from tests.harness import wait_for
from tests.k8s.cluster import unverified_tls
from tests.k8s.informer import Informer, Obj, key_of

SMP = "application/strategic-merge-patch+json"
"""Status patches merge conditions and containerStatuses by key (the client's default is JSON Patch)."""

RENEW_S = 1.0
"""Lease renewal period (a kubelet's is 10 s; the test cluster's node grace period is 4 s)."""
NODE_STATUS_S = 10.0
"""Node status heartbeat (the lease carries liveness; the status only has to be fresh)."""
KILL_WAIT_S = 5.0
"""After SIGKILL, how long a process group may take to be reaped."""

PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
PASS_ENV_PREFIXES = ("MESA_", "LIBGL_", "EGL_", "__EGL", "GALLIUM_")
"""The agent's environment a pod's process inherits (what an image would set); nothing else leaks in."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _PodRun:
    namespace: str
    name: str
    uid: str
    node: str
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    oom: bool = False
    deleting: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    """Set once the process exited (or never started): the probe stops."""


class NodeAgent:
    """Plays the kubelet for `nodes` ({node name: loopback address}); see the module docstring."""

    def __init__(
        self,
        kubeconfig: Path,
        nodes: dict[str, str],
        root: Path,
        python: str,
        *,
        gpus: dict[str, int] | None = None,
        cpu: str = "8",
        memory: str = "16Gi",
        max_pods: int = 110,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.nodes = dict(nodes)
        self.root = root
        self.python = python
        self.gpus = gpus or {}
        self.capacity = {"cpu": cpu, "memory": memory, "pods": str(max_pods)}
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        self.server = cfg.host
        # A thread per pod patches status at once with the others (a 50-pod burst): more than the default 10.
        cfg.connection_pool_maxsize = 64
        self._api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self._api)
        self.coord = client.CoordinationV1Api(self._api)
        self._silent: set[str] = set()
        self._lock = threading.Lock()
        self._runs: dict[str, _PodRun] = {}  # by pod uid
        self._seen: set[str] = set()  # uids already handled (a finished pod is not run again)
        self._next_ip = 1
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Secrets and ConfigMaps share one condition: a pod waiting for its volumes wakes on either.
        self._objects_changed = threading.Condition()
        self.secrets = Informer(self.core.list_secret_for_all_namespaces, changed=self._objects_changed)
        self.config_maps = Informer(self.core.list_config_map_for_all_namespaces, changed=self._objects_changed)
        self.pods = Informer(self.core.list_pod_for_all_namespaces, on_event=self._on_pod)

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> NodeAgent:
        """Registers the nodes, starts renewing, and returns once every node is Ready and schedulable (the
        controller-manager removed the not-ready taint)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            self._register(node)
        self._spawn(self._heartbeat, "agent-heartbeat")
        self.secrets.start()
        self.config_maps.start()
        self.pods.start()
        wait_for(self._schedulable, timeout, f"nodes {sorted(self.nodes)} to be Ready without taints")
        return self

    def stop(self) -> None:
        """Stops every process it started (TERM, then KILL), force-deletes their pods and its Node objects."""
        self._stopping.set()
        for inf in (self.pods, self.secrets, self.config_maps):
            inf.stop()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            self._terminate(run, grace_s=2)
        for t in self._threads:
            t.join(15)
        with contextlib.suppress(client.ApiException):
            for pod in self._bound_pods():
                self._delete_now(pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"])
        for node in self.nodes:
            with contextlib.suppress(client.ApiException):
                self.core.delete_node(node)
        self._api.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests use -------------------------------------------------------------------------------

    def stop_renewing(self, node: str) -> None:
        """Cut `node` off: no lease renewal, no status, no deletes finalised; its processes keep running."""
        with self._lock:
            self._silent.add(node)

    def resume_renewing(self, node: str) -> None:
        """Reconnect `node`: renewing again, and what happened to its pods meanwhile (deletes) is acted on now."""
        with self._lock:
            self._silent.discard(node)
        # As a kubelet does when it gets through again: post the lease and the node's status at once.
        self._renew(node)
        self.core.patch_node_status(node, {"status": self._conditions()}, _content_type=SMP)
        for pod in self._bound_pods():
            if pod["spec"].get("nodeName") == node:
                self._on_pod("MODIFIED", pod)

    def process_of(self, pod_name: str) -> psutil.Process | None:
        """The running process of the pod named `pod_name` (any namespace), else None."""
        with self._lock:
            runs = [r for r in self._runs.values() if r.name == pod_name and r.proc and r.proc.poll() is None]
        if not runs:
            return None
        try:
            return psutil.Process(runs[0].proc.pid)  # type: ignore[union-attr]
        except psutil.NoSuchProcess:
            return None

    def pods_running(self) -> list[str]:
        """Names of the pods whose process is alive now."""
        with self._lock:
            return sorted(r.name for r in self._runs.values() if r.proc is not None and r.proc.poll() is None)

    def oom_kill(self, pod_name: str) -> None:
        """SIGKILL the pod's process group and report it as a kernel OOM kill would (reason OOMKilled, 137)."""
        with self._lock:
            runs = [r for r in self._runs.values() if r.name == pod_name and r.proc and r.proc.poll() is None]
        for run in runs:
            run.oom = True
            _kill_group(run.proc, signal.SIGKILL)  # type: ignore[arg-type]

    def log_of(self, pod_name: str) -> str:
        """The pod's process output (what `kubectl logs` shows)."""
        with self._lock:
            runs = [r for r in self._runs.values() if r.name == pod_name]
        return "".join((r.dir / "container.log").read_text(errors="replace") for r in runs if r.dir.exists())

    # --- nodes ----------------------------------------------------------------------------------------

    def _register(self, node: str) -> None:
        ip = self.nodes[node]
        labels = {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
        body: Any = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": labels}}
        try:
            self.core.create_node(body)
        except client.ApiException as e:
            if e.status != 409:
                raise
        capacity = dict(self.capacity)
        if self.gpus.get(node):
            capacity["nvidia.com/gpu"] = str(self.gpus[node])
        node_id = uuid.uuid5(uuid.NAMESPACE_DNS, node)
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": node_id.hex, "systemUUID": str(node_id),
                "bootID": str(uuid.uuid4()), "kernelVersion": os.uname().release, "osImage": "openrr test node agent",
                "containerRuntimeVersion": "agent://0", "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }  # fmt: skip
        self.core.patch_node_status(node, {"status": status | self._conditions()}, _content_type=SMP)
        node_uid = self._node_json(node)["metadata"]["uid"]
        lease: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": node,
                "namespace": "kube-node-lease",
                # As a kubelet does: the lease goes with its Node.
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
            },
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": _micro_now()},
        }
        try:
            self.coord.create_namespaced_lease("kube-node-lease", lease)
        except client.ApiException as e:
            if e.status != 409:
                raise
            self._renew(node)

    def _conditions(self) -> dict[str, Any]:
        now = _now()
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "node agent is posting ready"}
        ready |= {"lastHeartbeatTime": now, "lastTransitionTime": now}
        return {"conditions": [ready]}

    def _renew(self, node: str) -> None:
        body = {"spec": {"renewTime": _micro_now(), "holderIdentity": node}}
        self.coord.patch_namespaced_lease(node, "kube-node-lease", body, _content_type=SMP)

    def _heartbeat(self) -> None:
        last_status = datetime.now(UTC)
        while not self._stopping.wait(RENEW_S):
            with self._lock:
                live = [n for n in self.nodes if n not in self._silent]
            post_status = (datetime.now(UTC) - last_status).total_seconds() >= NODE_STATUS_S
            for node in live:
                try:
                    self._renew(node)
                    if post_status:
                        self.core.patch_node_status(node, {"status": self._conditions()}, _content_type=SMP)
                except (client.ApiException, OSError):
                    continue  # the next beat tries again, as a kubelet does
            if post_status:
                last_status = datetime.now(UTC)

    def _schedulable(self) -> bool:
        for node in self.nodes:
            n = self._node_json(node)
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
            if not ready or n["spec"].get("taints"):
                return False
        return True

    def _node_json(self, node: str) -> Obj:
        doc: Obj = self._api.sanitize_for_serialization(self.core.read_node(node))  # type: ignore[no-untyped-call]  # the API's own JSON
        return doc

    # --- pods: events -----------------------------------------------------------------------------------

    def _bound_pods(self) -> list[Obj]:
        with self.pods.changed:
            return [p for p in self.pods.objects.values() if p["spec"].get("nodeName") in self.nodes]

    def _on_pod(self, kind: str, pod: Obj) -> None:
        node = pod["spec"].get("nodeName")
        if node not in self.nodes or self._stopping.is_set():
            return
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            run = self._runs.get(uid)
            silent = node in self._silent
            if kind == "DELETED":
                # Force-deleted (or finalised): whatever runs for it goes, even on a cut-off node (once its
                # Node object is gone a real kubelet would kill it as well when it comes back); a pod still
                # waiting for its volumes stops waiting.
                if run is not None:
                    run.deleting = True
                    self._spawn(lambda: self._terminate(run, grace_s=0), f"kill-{meta['name']}")
                return
            if silent:
                return
            if meta.get("deletionTimestamp"):
                if run is None:
                    if uid not in self._seen:
                        self._seen.add(uid)
                        self._spawn(lambda: self._delete_now(meta["namespace"], meta["name"], uid), "finalise")
                    return
                if not run.deleting:
                    run.deleting = True
                    grace = meta.get("deletionGracePeriodSeconds") or 0
                    self._spawn(lambda: self._finalise(run, grace), f"delete-{meta['name']}")
                return
            if uid in self._seen or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            self._seen.add(uid)
            d = self.root / f"{meta['namespace']}_{meta['name']}_{uid[:8]}"
            run = _PodRun(meta["namespace"], meta["name"], uid, node, d)
            self._runs[uid] = run
        self._spawn(lambda: self._run_pod(run, pod), f"pod-{meta['name']}")

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    # --- pods: running ----------------------------------------------------------------------------------

    def _run_pod(self, run: _PodRun, pod: Obj) -> None:
        spec = pod["spec"]
        host_ip = self.nodes[run.node]
        pod_ip = host_ip if spec.get("hostNetwork") else self._pod_ip()
        try:
            if len(spec["containers"]) != 1 or spec.get("initContainers"):
                raise _PodError("Unsupported", "the node agent runs exactly one container and no init containers")
            container = spec["containers"][0]
            self._patch_status(run, {"phase": "Pending", "hostIP": host_ip, "containerStatuses": [
                _container_status(container, waiting="ContainerCreating")]})  # fmt: skip
            mounts = self._materialise(run, pod)
            if mounts is None:
                return  # deleted while waiting for its volumes
            argv, env = self._command(run, pod, container, host_ip, pod_ip, mounts)
        except _PodError as e:
            self._patch_status(run, {"phase": "Failed", "reason": e.reason, "message": e.message})
            run.done.set()
            return
        sc = spec.get("securityContext", {}) | container.get("securityContext", {})
        workdir = _rewrite(container.get("workingDir", ""), mounts) or str(run.dir)
        with self._lock, open(run.dir / "container.log", "ab") as log:
            if run.deleting:  # deleted meanwhile: _terminate found no process, so none may start now
                run.done.set()
                return
            run.proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True, user=sc.get("runAsUser"), group=sc.get("runAsGroup"),
            )  # fmt: skip
        started = _now()
        probe = container.get("readinessProbe")
        run.ready = probe is None
        status = {
            "phase": "Running", "hostIP": host_ip, "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": started,
            "conditions": _pod_conditions(run.ready, initialized=True),
            "containerStatuses": [_container_status(container, running=started, ready=run.ready, pid=run.proc.pid)],
        }  # fmt: skip
        self._patch_status(run, status)
        if probe is not None:
            self._spawn(lambda: self._probe_loop(run, container, probe, pod_ip), f"probe-{run.name}")
        code = run.proc.wait()
        run.done.set()
        if run.deleting or self._stopping.is_set():
            return
        reason = "OOMKilled" if run.oom else ("Completed" if code == 0 else "Error")
        exit_code = 137 if run.oom else (code if code >= 0 else 128 - code)
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": _now()}
        self._patch_status(run, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": _pod_conditions(False, initialized=True),
            "containerStatuses": [_container_status(container, terminated=terminated)],
        })  # fmt: skip

    def _pod_ip(self) -> str:
        with self._lock:
            n = self._next_ip
            self._next_ip += 1
        return f"127.0.2.{n % 254 + 1}"

    def _materialise(self, run: _PodRun, pod: Obj) -> dict[str, Path] | None:
        """{mountPath: directory} for the container's volumeMounts; None if the pod went away while waiting."""
        vols_dir = run.dir / "volumes"
        vols_dir.mkdir(parents=True, exist_ok=True)
        ns = run.namespace
        paths: dict[str, Path] = {}
        sc = pod["spec"].get("securityContext", {}) | pod["spec"]["containers"][0].get("securityContext", {})
        uid = sc.get("runAsUser")
        for vol in pod["spec"].get("volumes", []):
            target = vols_dir / vol["name"]
            if "hostPath" in vol:
                paths[vol["name"]] = Path(vol["hostPath"]["path"])
                continue
            if "emptyDir" in vol:
                target.mkdir(exist_ok=True)
                if uid is not None:
                    os.chown(target, uid, -1)
            elif "secret" in vol or "configMap" in vol:
                is_secret = "secret" in vol
                src = vol["secret"] if is_secret else vol["configMap"]
                ref = src["secretName"] if is_secret else src["name"]
                informer = self.secrets if is_secret else self.config_maps
                obj = self._wait_for_object(informer, ns, ref, run, optional=bool(src.get("optional")))
                if obj is None and not src.get("optional"):
                    return None
                data = (_decoded(obj) if is_secret else _encoded(obj)) if obj else {}
                # The API defaults defaultMode to 0644, as a kubelet writes them; a pod wanting 0600 says so.
                mode = src.get("defaultMode", 0o644)
                _write_volume(target, data, src.get("items"), mode, uid)
            else:
                raise _PodError("Unsupported", f"volume {vol['name']}: the node agent has no such volume type")
            paths[vol["name"]] = target
        mounts: dict[str, Path] = {}
        for m in pod["spec"]["containers"][0].get("volumeMounts", []):
            base = paths.get(m["name"])
            if base is None:
                raise _PodError("CreateContainerConfigError", f"volumeMount {m['name']} names no volume")
            mounts[m["mountPath"].rstrip("/")] = base / m["subPath"] if m.get("subPath") else base
        return mounts

    def _wait_for_object(self, informer: Informer, ns: str, name: str, run: _PodRun, optional: bool) -> Obj | None:
        """The object once it exists (a kubelet retries a missing Secret volume until it appears)."""
        with informer.changed:
            while True:
                obj = informer.objects.get((ns, name))
                if obj is not None or optional:
                    return obj
                if run.deleting or self._stopping.is_set():
                    return None
                informer.changed.wait(1.0)  # woken by any change; the timeout only rechecks `deleting`

    def _command(
        self, run: _PodRun, pod: Obj, container: Obj, host_ip: str, pod_ip: str, mounts: dict[str, Path]
    ) -> tuple[list[str], dict[str, str]]:
        env: dict[str, str] = {k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith(PASS_ENV_PREFIXES)}
        host, _, port = self.server.removeprefix("https://").partition(":")
        env |= {"HOME": str(run.dir), "HOSTNAME": run.node if pod["spec"].get("hostNetwork") else run.name}
        env |= {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
        fields = {
            "status.hostIP": host_ip, "status.podIP": pod_ip, "metadata.name": run.name,
            "metadata.namespace": run.namespace, "spec.nodeName": run.node, "metadata.uid": run.uid,
        }  # fmt: skip
        pod_env: dict[str, str] = {}
        # envFrom first, then env (which wins), as a kubelet does (deploy/kubernetes's settings ConfigMap).
        for source in container.get("envFrom", []):
            pod_env |= {k: _rewrite(v, mounts) for k, v in self._env_all(source, run).items()}
        for var in container.get("env", []):
            value: str | None
            if "value" in var:
                value = _expand(var["value"], pod_env)
            else:
                value = self._env_from(var["valueFrom"], run, fields)
                if value is None:
                    continue
            pod_env[var["name"]] = _rewrite(value, mounts)
        env |= pod_env
        command = [_rewrite(_expand(a, pod_env), mounts) for a in container.get("command", [])]
        args = [_rewrite(_expand(a, pod_env), mounts) for a in container.get("args", [])]
        argv = command + args
        if not argv:
            raise _PodError("Unsupported", "the node agent has no image entrypoint: give the container a command")
        if argv[0] == "openrr":
            argv = [self.python, "-m", "openrr", *argv[1:]]
        return argv, env

    def _env_all(self, source: Obj, run: _PodRun) -> dict[str, str]:
        """One envFrom entry: every key of a ConfigMap or Secret, with its prefix."""
        is_secret = "secretRef" in source
        ref = source["secretRef"] if is_secret else source["configMapRef"]
        informer = self.secrets if is_secret else self.config_maps
        obj = self._wait_for_object(informer, run.namespace, ref["name"], run, bool(ref.get("optional")))
        data = (_decoded(obj) if is_secret else _encoded(obj)) if obj else {}
        return {source.get("prefix", "") + k: v.decode() for k, v in data.items()}

    def _env_from(self, source: Obj, run: _PodRun, fields: dict[str, str]) -> str | None:
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in fields:
                raise _PodError("CreateContainerConfigError", f"fieldRef {path} is not supported by the node agent")
            return fields[path]
        for kind, informer in (("secretKeyRef", self.secrets), ("configMapKeyRef", self.config_maps)):
            if kind in source:
                ref = source[kind]
                obj = self._wait_for_object(informer, run.namespace, ref["name"], run, bool(ref.get("optional")))
                data = (_decoded(obj) if kind == "secretKeyRef" else _encoded(obj)) if obj else {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise _PodError("CreateContainerConfigError", f"{kind} {ref['name']}: no key {ref['key']}")
                return data[ref["key"]].decode()
        raise _PodError("CreateContainerConfigError", f"env valueFrom {sorted(source)} is not supported")

    # --- pods: readiness ----------------------------------------------------------------------------------

    def _probe_loop(self, run: _PodRun, container: Obj, probe: Obj, pod_ip: str) -> None:
        period = probe.get("periodSeconds", 10)
        successes_needed = probe.get("successThreshold", 1)
        failures_allowed = probe.get("failureThreshold", 3)
        ok_run = bad_run = 0
        if run.done.wait(probe.get("initialDelaySeconds", 0)):
            return
        while not run.done.is_set() and not self._stopping.is_set():
            if _probe(probe, container, pod_ip, run):
                ok_run, bad_run = ok_run + 1, 0
            else:
                ok_run, bad_run = 0, bad_run + 1
            ready = run.ready
            if not run.ready and ok_run >= successes_needed:
                ready = True
            elif run.ready and bad_run >= failures_allowed:
                ready = False
            if ready != run.ready and not run.done.is_set() and not run.deleting:
                run.ready = ready
                self._patch_status(run, {
                    "conditions": _pod_conditions(ready, initialized=True),
                    "containerStatuses": [{"name": container["name"], "ready": ready}],
                })  # fmt: skip
            if run.done.wait(period):
                return

    # --- pods: deletion ---------------------------------------------------------------------------------

    def _finalise(self, run: _PodRun, grace_s: float) -> None:
        self._terminate(run, grace_s)
        with self._lock:
            if run.node in self._silent:
                return  # a cut-off node finalises nothing
        self._delete_now(run.namespace, run.name, run.uid)

    def _terminate(self, run: _PodRun, grace_s: float) -> None:
        with self._lock:  # atomic with the process's start in _run_pod
            run.deleting = True
            proc = run.proc
        if proc is not None and proc.poll() is None:
            _kill_group(proc, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait(KILL_WAIT_S)
        run.done.set()
        with self._lock:
            self._runs.pop(run.uid, None)

    def _delete_now(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)),
            )  # fmt: skip
        except client.ApiException as e:
            if e.status not in (404, 409):
                raise

    def _patch_status(self, run: _PodRun, status: dict[str, Any]) -> None:
        with self._lock:
            if run.node in self._silent:
                return
        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, {"status": status}, _content_type=SMP)
        except client.ApiException as e:
            if e.status not in (404, 409, 422):  # gone meanwhile
                raise


class _PodError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def _decoded(obj: Obj) -> dict[str, bytes]:
    import base64

    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()} | {
        k: v.encode() for k, v in (obj.get("stringData") or {}).items()
    }


def _encoded(obj: Obj) -> dict[str, bytes]:
    return {k: v.encode() for k, v in (obj.get("data") or {}).items()}


def _write_volume(target: Path, data: dict[str, bytes], items: list[Obj] | None, mode: int, uid: int | None) -> None:
    target.mkdir(exist_ok=True)
    chosen = [(i["key"], i["path"], i.get("mode", mode)) for i in items] if items else [(k, k, mode) for k in data]
    for key, rel, file_mode in chosen:
        if key not in data:
            continue
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, file_mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data[key])
        os.chmod(path, file_mode)  # umask-proof
        if uid is not None:
            os.chown(path, uid, -1)


_VAR = re.compile(r"\$\((\w+)\)|\$\$")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined VAR is replaced, an undefined one stays, `$$` is `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, text)


def _rewrite(text: str, mounts: dict[str, Path]) -> str:
    """Mount paths in `text` (whole path components only) replaced by their materialised directories, in one pass
    (a replacement is never rewritten again), the longest mount path first."""
    if not mounts:
        return text
    alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    pattern = rf"(?<![\w./-])(?:{alternatives})(?=/|$|[^\w.-])"
    return re.sub(pattern, lambda m: str(mounts[m.group(0)]), text)


def _pod_conditions(ready: bool, initialized: bool) -> list[Obj]:
    now = _now()
    flag = "True" if ready else "False"
    return [
        {"type": "Initialized", "status": "True" if initialized else "False", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
        {"type": "Ready", "status": flag, "lastTransitionTime": now},
    ]


def _container_status(
    container: Obj,
    *,
    waiting: str | None = None,
    running: str | None = None,
    terminated: Obj | None = None,
    ready: bool = False,
    pid: int | None = None,
) -> Obj:
    state: Obj = {}
    if waiting:
        state = {"waiting": {"reason": waiting}}
    elif running:
        state = {"running": {"startedAt": running}}
    elif terminated:
        state = {"terminated": terminated}
    status = {
        "name": container["name"], "image": container.get("image", ""), "imageID": "", "ready": ready,
        "restartCount": 0, "started": running is not None, "state": state,
    }  # fmt: skip
    if pid is not None:
        status["containerID"] = f"agent://{pid}"
    return status


def _probe(probe: Obj, container: Obj, pod_ip: str, run: _PodRun) -> bool:
    timeout = probe.get("timeoutSeconds", 1)
    try:
        if "httpGet" in probe:
            g = probe["httpGet"]
            port = _port(g["port"], container)
            scheme = g.get("scheme", "HTTP").lower()
            url = f"{scheme}://{g.get('host') or pod_ip}:{port}{g.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in g.get("httpHeaders", [])}
            # A kubelet does not verify the server's certificate either.
            r = httpx.get(url, headers=headers, timeout=timeout, verify=unverified_tls())
            return 200 <= r.status_code < 400
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            with socket.create_connection((t.get("host") or pod_ip, _port(t["port"], container)), timeout):
                return True
        if "exec" in probe:
            done = subprocess.run(probe["exec"]["command"], cwd=run.dir, capture_output=True, timeout=timeout)
            return done.returncode == 0
    except (httpx.HTTPError, OSError, subprocess.TimeoutExpired):
        return False
    return False


def _port(port: int | str, container: Obj) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"no container port named {port}")


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the pod's process group (its "container"), and any descendant that left it."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)


__all__ = ["NodeAgent", "key_of"]


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.k8s.agent KUBECONFIG node-a=127.0.1.1 ...`: fake nodes by hand, until Ctrl-C."""
    import argparse
    import sys
    import tempfile

    p = argparse.ArgumentParser(prog="python -m tests.k8s.agent", description=main.__doc__)
    p.add_argument("kubeconfig", type=Path)
    p.add_argument("nodes", nargs="+", metavar="NAME=ADDRESS", help="e.g. node-a=127.0.1.1")
    p.add_argument("--root", type=Path, help="where pods' volumes and logs go (default: a new temporary directory)")
    p.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity of each node")
    args = p.parse_args(argv)
    nodes = dict(n.split("=", 1) for n in args.nodes)
    root = args.root or Path(tempfile.mkdtemp(prefix="openrr-agent-"))
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before any thread starts: they inherit the mask
    agent = NodeAgent(args.kubeconfig, nodes, root, sys.executable, gpus=dict.fromkeys(nodes, args.gpus)).start()
    print(f"nodes {', '.join(nodes)} Ready; pods under {root}; Ctrl-C stops them and removes the nodes", flush=True)
    try:
        signal.sigwait(stop_signals)
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
