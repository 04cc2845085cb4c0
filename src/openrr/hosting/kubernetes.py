"""Render servers as Kubernetes pods, one per session, with a warm pool per size shared by every replica.

Clients reach a pod straight at its node: hostNetwork, and a pair of host ports from a configured range handed to
the pod (Agones' dynamic port policy). The rejected alternative, a Service (NodePort or LoadBalancer) per session,
adds a proxy hop to every frame, an object and an allocation per session, and (NodePort) a port on every node of
the cluster for one pod; Ready would also depend on kube-proxy programming it.

Every pod's control secret and TLS leaf (for its node's address) go into a Secret of its own, created once the pod
is bound to a node and owned by the pod (the garbage collector deletes it with the pod); the STS public key in one
shared Secret. Nothing secret is ever in a pod spec. State lives in the cluster only (labels and annotations), so
any replica can adopt, probe and release any pod; reads come from watch-backed caches (hosting/kube_cache.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from openrr.hosting.backend import HostGone, Placement, SessionKey
from openrr.hosting.health import fetch_health, keep_alive
from openrr.hosting.kube_cache import WatchCache
from openrr.hosting.kube_pod import (
    CONTROL_SECRET_KEY,
    SELECTOR,
    SIZE_LABEL,
    STATE_LABEL,
    STS_KEY,
    WARM,
    PodTemplate,
    claim_metadata,
    claimed_key,
    new_pod_name,
    pod_secret,
    render_pod,
    session_selector,
)
from openrr.hosting.kube_ports import free_pair, handshake_port, pod_host_ports
from openrr.hosting.kube_status import deleted_reason, gone_reason, node_ready
from openrr.hosting.render_tls import RenderCertificates
from openrr.hosting.server_control import Pushed, ServerControl
from openrr.render.control import HEALTH_PATH, AssignBody, IdentityReport, control_headers, new_secret

logger = logging.getLogger(__name__)
GONE_REMEMBERED = 4096
"""Last words of deleted pods kept for probes (a session's error names why its pod went)."""
PORT_CLASH = "free ports"
"""The scheduler's NodePorts filter's message: 'node(s) didn't have free ports for the requested pod ports'."""


@dataclass(frozen=True)
class KubernetesBackendOptions:
    kubeconfig: Path | None
    namespace: str
    template: PodTemplate
    port_range: tuple[int, int]
    warm_pool: dict[str, int]
    tls_dir: Path
    """The local CA (shared by replicas): every pod gets a leaf from it for its node's address."""
    sts_public_key: Path
    node_hostnames: dict[str, str]
    control: ServerControl


def api_client(kubeconfig: Path | None) -> client.ApiClient:
    """The API client: from a kubeconfig file, else the pod's service account (in-cluster)."""
    if kubeconfig is not None:
        made: client.ApiClient = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        return made
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


class KubernetesBackend:
    shared = True
    """Pods outlive this process and every replica sees them: the pool is the cluster's, maintained by one."""

    def __init__(self, options: KubernetesBackendOptions, api: client.ApiClient | None = None) -> None:
        self.opts = options
        self.ns = options.namespace
        self.api = api or api_client(options.kubeconfig)
        # Any: the client's generated types want its model classes; pods and Secrets are built as plain dicts here.
        self.core: Any = client.CoreV1Api(self.api)
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        """Control secrets of pods, as this process knows them (made here, or read from their Secret)."""
        self._pushed: dict[str, Pushed] = {}
        self._gone: OrderedDict[str, str] = OrderedDict()
        self._verify = RenderCertificates(options.tls_dir, []).verify_context()
        self._client: httpx.AsyncClient | None = None
        # Secrets of freshly bound pods are made off the watch thread.
        self._binder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="openrr-kube-bind")
        self._binding: set[str] = set()
        self._made: set[str] = set()
        """Pods whose Secret exists (made or read by this process)."""
        self.write_sts_secret()
        self.nodes = WatchCache("nodes", self.core.list_node)
        self.pods = WatchCache(
            "render pods",
            self.core.list_namespaced_pod,
            on_delete=self._remember_gone,
            on_change=self._on_pod,
            namespace=self.ns,
            label_selector=SELECTOR,
        )
        self.nodes.start()
        self.pods.start()

    # --- HostingBackend ------------------------------------------------------------------------------

    def acquire(self, key: SessionKey, size: str) -> str:
        placed = self._placed_for(key)
        if placed is not None:
            return placed
        for pod in self._ready_warm(size):
            name = pod.metadata.name
            claimed = self._claim(pod, key)
            if claimed is None:
                continue  # another replica took it first
            try:
                self._assign(claimed, key)
            except (httpx.HTTPError, HostGone, ApiException) as e:
                logger.warning("warm render pod %s could not be assigned (%s); starting one", name, e)
                self.release(name)
                break
            logger.info("session %s gets warm render pod %s", key.session_id, name)
            return str(name)
        return self._create(size, key)

    def warm_count(self, size: str) -> int:
        return len(self._ready_warm(size))

    async def probe(self, host_ref: str, key: SessionKey) -> Placement | None:
        pod = self.pods.get(host_ref) or await asyncio.to_thread(self._read_pod, host_ref)
        if pod is None:
            with self._lock:
                why = self._gone.get(host_ref)
            raise HostGone(why or f"The render pod {host_ref} was deleted.")
        node_name = pod.spec.node_name
        node = self.nodes.get(node_name) if node_name else None
        why = gone_reason(pod, node)
        if why is not None:
            raise HostGone(why)
        if node_name is None or node is None:
            if _unschedulable_for_ports(pod):
                await asyncio.to_thread(self._replace, pod)
            return None
        host_ip = pod.status.host_ip if pod.status else None
        port = handshake_port(pod)
        if not host_ip or port is None:
            return None
        secret = await asyncio.to_thread(self._secret_of, pod, node)
        if secret is None:
            return None
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self._verify)
        base = f"https://{_url_host(host_ip)}:{port}"
        doc = await fetch_health(self._client, base + HEALTH_PATH, secret)
        if doc is None:
            return None
        serves = doc.identity
        if serves.session_id is None and claimed_key(pod.metadata) == key:
            # Claimed for this session, but the replica that claimed it died before assigning it: assign it now.
            await self._assign_async(base, secret, key)
            return None
        if (serves.session_id, serves.account_id) != (key.session_id, key.account_id):
            raise HostGone(f"The render pod {host_ref} answers for another session ({serves.session_id}).")
        with self._lock:
            pushed = self._pushed.setdefault(host_ref, Pushed())
        if not await self.opts.control.push(self._client, base, secret, pushed, key, host_ref):
            return None
        return Placement(self._hostname(node), port, port + 1)

    def release(self, host_ref: str) -> None:
        grace = max(0, round(self.opts.template.stop_grace_s))
        try:
            self.core.delete_namespaced_pod(host_ref, self.ns, grace_period_seconds=grace)
        except ApiException as e:
            if e.status != 404:
                raise
        with self._lock:
            self._secrets.pop(host_ref, None)
            self._pushed.pop(host_ref, None)

    def maintain(self) -> None:
        pods = self.pods.items()
        for pod in pods:
            if claimed_key(pod.metadata) is None and pod.metadata.deletion_timestamp is None:
                why = gone_reason(pod, self.nodes.get(pod.spec.node_name) if pod.spec.node_name else None)
                if why is not None or _unschedulable_for_ports(pod):
                    logger.warning("replacing warm render pod %s: %s", pod.metadata.name, why or "its ports clash")
                    self.release(pod.metadata.name)
        self._bind_orphans(pods)
        self._keep_warm_alive(pods)
        for size, wanted in self.opts.warm_pool.items():
            have = sum(1 for p in self.pods.items() if _is_warm(p, size) and _alive(p))
            for _ in range(max(0, wanted - have)):
                self._create(size, None)

    def _keep_warm_alive(self, pods: list[Any]) -> None:
        """A health request with its secret to each Ready warm pod, so that none expires as an orphan (a session's
        pod gets its probes instead)."""
        targets: list[tuple[str, str]] = []
        for pod in pods:
            labels = pod.metadata.labels or {}
            if labels.get(STATE_LABEL) != WARM or pod.metadata.deletion_timestamp is not None or not _pod_ready(pod):
                continue
            port, host_ip = handshake_port(pod), pod.status.host_ip
            secret = self._secret_of(pod, self.nodes.get(pod.spec.node_name))
            if port is not None and host_ip and secret is not None:
                targets.append((f"https://{_url_host(host_ip)}:{port}{HEALTH_PATH}", secret))
        keep_alive(targets, self._verify)

    def claimed_refs(self) -> dict[str, SessionKey]:
        refs: dict[str, SessionKey] = {}
        for pod in self.pods.items():
            key = claimed_key(pod.metadata)
            # A pod being deleted is being stopped already (on a lost node it stays so until the node is deleted).
            if key is not None and pod.metadata.deletion_timestamp is None:
                refs[pod.metadata.name] = key
        return refs

    def shutdown(self) -> None:
        """Nothing: pods outlive this replica, and another (or this one restarted) adopts them."""

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def close(self) -> None:
        """Stop the watches (tests; a replica's process simply ends)."""
        self.pods.stop()
        self.nodes.stop()
        self._binder.shutdown(wait=False, cancel_futures=True)

    # --- the STS public key ---------------------------------------------------------------------------

    def write_sts_secret(self) -> None:
        """The Secret every render pod mounts the STS public key from: created, or updated to this key."""
        pem = self.opts.sts_public_key.read_text()
        name = self.opts.template.sts_secret
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {STS_KEY: pem}}
        try:
            self.core.create_namespaced_secret(self.ns, body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.core.patch_namespaced_secret(name, self.ns, {"stringData": {STS_KEY: pem}})

    # --- pods ----------------------------------------------------------------------------------------

    def _create(self, size: str, key: SessionKey | None, name: str | None = None) -> str:
        """Create a render pod on a free pair of host ports (it gets its Secret once bound)."""
        name = name or new_pod_name()
        used = set().union(*(pod_host_ports(p) for p in self.pods.items()))
        port = free_pair(self.opts.port_range, used)
        with self._lock:
            self._secrets[name] = new_secret()
        created = self.core.create_namespaced_pod(self.ns, render_pod(self.opts.template, name, size, port, key))
        # Seen at once by the next allocation and by probes, not only once its watch event arrives.
        self.pods.put(created)
        logger.info(
            "created render pod %s (%s, ports %d/%d)%s",
            name,
            size,
            port,
            port + 1,
            f" for session {key.session_id}" if key else " for the warm pool",
        )
        return name

    def _replace(self, pod: Any) -> None:
        """A pod the scheduler cannot place because its ports clash on every fitting node: the same pod (name,
        session) on another pair. Unbound, so its delete is immediate."""
        name = pod.metadata.name
        key = claimed_key(pod.metadata)
        size = pod.metadata.labels.get(SIZE_LABEL, "Standard")
        logger.info("render pod %s cannot be scheduled on its ports; recreating it on others", name)
        try:
            self.core.delete_namespaced_pod(
                name,
                self.ns,
                grace_period_seconds=0,
                body={"preconditions": {"uid": pod.metadata.uid}},
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise
        self.pods.wait_for(lambda: getattr(self.pods.get(name), "metadata", None) is None, 5)
        self._create(size, key, name)

    def _placed_for(self, key: SessionKey) -> str | None:
        """The live pod already given to `key` (by any replica, perhaps one that died mid-start). From the API, not
        the cache: a pod another replica created a moment ago must count."""
        pods = self.core.list_namespaced_pod(self.ns, label_selector=session_selector(key)).items
        for pod in pods:
            if pod.metadata.deletion_timestamp is None and claimed_key(pod.metadata) == key:
                return str(pod.metadata.name)
        return None

    def _ready_warm(self, size: str) -> list[Any]:
        return [
            p
            for p in self.pods.items()
            if _is_warm(p, size) and _pod_ready(p) and node_ready_or_none(self.nodes.get(p.spec.node_name))
        ]

    def _claim(self, pod: Any, key: SessionKey) -> Any | None:
        """Give a warm pod to `key`: a patch guarded by the resourceVersion read, so that of two replicas claiming
        one pod at once exactly one succeeds (the other gets 409 Conflict). The patched pod, or None."""
        meta = claim_metadata(key)
        meta["resourceVersion"] = pod.metadata.resource_version
        try:
            patched = self.core.patch_namespaced_pod(pod.metadata.name, self.ns, {"metadata": meta})
        except ApiException as e:
            if e.status in (404, 409):
                return None
            raise
        self.pods.put(patched)
        return patched

    def _assign(self, pod: Any, key: SessionKey) -> None:
        secret = self._secret_of(pod, self.nodes.get(pod.spec.node_name))
        port = handshake_port(pod)
        if secret is None or port is None or not pod.status.host_ip:
            raise HostGone(f"The warm render pod {pod.metadata.name} is not set up yet.")
        r = httpx.post(
            f"https://{_url_host(pod.status.host_ip)}:{port}{AssignBody.path}",
            json=AssignBody(key.session_id, key.account_id).to_json(),
            headers=control_headers(secret),
            verify=self._verify,
            timeout=5,
        )
        r.raise_for_status()
        IdentityReport.from_json(r.json())

    async def _assign_async(self, base: str, secret: str, key: SessionKey) -> None:
        assert self._client is not None
        try:
            r = await self._client.post(
                base + AssignBody.path,
                json=AssignBody(key.session_id, key.account_id).to_json(),
                headers=control_headers(secret),
                timeout=5,
            )
        except httpx.HTTPError:
            return  # the next probe tries again
        if r.status_code == 409:
            raise HostGone("The render pod claimed for this session serves another session.")

    def _read_pod(self, name: str) -> Any | None:
        try:
            return self.core.read_namespaced_pod(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _remember_gone(self, pod: Any) -> None:
        with self._lock:
            self._gone[pod.metadata.name] = deleted_reason(pod)
            while len(self._gone) > GONE_REMEMBERED:
                self._gone.popitem(last=False)
            self._binding.discard(pod.metadata.name)
            self._made.discard(pod.metadata.name)
            self._secrets.pop(pod.metadata.name, None)
            self._pushed.pop(pod.metadata.name, None)

    # --- Secrets of pods -----------------------------------------------------------------------------

    def _on_pod(self, pod: Any) -> None:
        """Watch thread: a pod this process created was just bound to a node: make its Secret (off this thread)."""
        name = pod.metadata.name
        if not pod.spec.node_name or pod.metadata.deletion_timestamp is not None:
            return
        with self._lock:
            if name not in self._secrets or name in self._made or name in self._binding:
                return
            self._binding.add(name)
        self._binder.submit(self._bind_logged, pod)

    def _bind_logged(self, pod: Any) -> None:
        try:
            self._secret_of(pod, self.nodes.get(pod.spec.node_name))
        except Exception:
            logger.exception("could not make the Secret of render pod %s", pod.metadata.name)
            with self._lock:
                self._binding.discard(pod.metadata.name)

    def _bind_orphans(self, pods: list[Any]) -> None:
        """Bound pods whose creator died before making their Secret (the kubelet waits for it forever)."""
        bound = [
            p for p in pods if p.spec.node_name and p.metadata.deletion_timestamp is None and _phase(p) == "Pending"
        ]
        if not bound:
            return
        have = {s.metadata.name for s in self.core.list_namespaced_secret(self.ns, label_selector=SELECTOR).items}
        for pod in bound:
            if pod.metadata.name not in have:
                self._secret_of(pod, self.nodes.get(pod.spec.node_name))

    def _secret_of(self, pod: Any, node: Any | None) -> str | None:
        """The pod's control secret: known here, or read from its Secret, or (a bound pod without one) a Secret made
        now. None while the pod is not bound. Of two replicas making it at once, both end with the one created."""
        name = pod.metadata.name
        if not pod.spec.node_name:
            return None
        with self._lock:
            known, made = self._secrets.get(name), name in self._made
        if known is not None and made:
            return known
        secret = self._read_secret(name)
        if secret is None:
            if node is None:
                return None
            secret = known or new_secret()
            chain, leaf_key = RenderCertificates(self.opts.tls_dir, self._node_names(node)).issue()
            try:
                self.core.create_namespaced_secret(self.ns, pod_secret(name, pod.metadata.uid, secret, chain, leaf_key))
            except ApiException as e:
                if e.status != 409:
                    raise
                secret = self._read_secret(name) or secret
        with self._lock:
            self._secrets[name] = secret
            self._made.add(name)
        return secret

    def _read_secret(self, name: str) -> str | None:
        try:
            found = self.core.read_namespaced_secret(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        data = (found.data or {}).get(CONTROL_SECRET_KEY)
        return base64.b64decode(data).decode() if data else None

    # --- nodes ---------------------------------------------------------------------------------------

    def _node_names(self, node: Any) -> list[str]:
        addresses = {a.type: a.address for a in (node.status.addresses or [])}
        configured = self.opts.node_hostnames.get(node.metadata.name)
        return [n for n in (configured, addresses.get("ExternalIP"), addresses.get("InternalIP")) if n]

    def _hostname(self, node: Any) -> str:
        """What clients are told to connect to: the configured name, else the ExternalIP, else the InternalIP."""
        names = self._node_names(node)
        return names[0] if names else str(node.metadata.name)


def _phase(pod: Any) -> str | None:
    return pod.status.phase if pod.status else None


def _is_warm(pod: Any, size: str) -> bool:
    labels = pod.metadata.labels or {}
    return (
        labels.get(STATE_LABEL) == WARM and labels.get(SIZE_LABEL) == size and pod.metadata.deletion_timestamp is None
    )


def _alive(pod: Any) -> bool:
    return _phase(pod) not in ("Failed", "Succeeded")


def _pod_ready(pod: Any) -> bool:
    if _phase(pod) != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def node_ready_or_none(node: Any | None) -> bool:
    return node is not None and node_ready(node)


def _unschedulable_for_ports(pod: Any) -> bool:
    if pod.spec.node_name:
        return False
    for c in (pod.status.conditions if pod.status else None) or []:
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return PORT_CLASH in (c.message or "")
    return False


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
