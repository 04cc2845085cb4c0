"""deploy/kubernetes applied to a real Kubernetes control plane: the control plane deployed from it answers.

Real: kube-apiserver (RBAC), the controller-manager (the Deployment's ReplicaSet makes the pods, the endpoints
controller fills the Service), the scheduler (binds them to nodes), PostgreSQL, the Secrets as make-secrets.sh
makes them, and `openrr serve` itself. The one stand-in is the node agent (tests/k8s/agent.py), which plays the
kubelet for two fake nodes and runs each control-plane pod as a local process on its pod IP (127.0.2.x), with
the manifest's env, volumes, user and readiness probe.

What the test changes in the manifests, and why:
- the namespace: a fresh one per test (the cluster is shared by the session), as `kustomize edit set namespace`
  would do, with the cluster-scoped RBAC objects renamed to match;
- OPENRR_KUBECONFIG, a kubeconfig carrying the `openrr` ServiceAccount's own token: the agent cannot chroot, so it
  cannot put the token where the client's in-cluster loader looks (/var/run/secrets/kubernetes.io/...). The
  replicas still act with exactly the ServiceAccount's RBAC;
- the Service's names in OPENRR_EXTRA_HOSTNAMES follow the namespace.

Then the first session, as docs/kubernetes.md shows it: a render pod made from the ConfigMap's settings, its
endpoint a fake node's address and a port of the configured range, and its pod deleted by the stop.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from kubernetes import client, utils

from tests.harness import wait_for
from tests.k8s.agent import NodeAgent
from tests.k8s.cluster import KubeCluster
from tests.postgres import pg_url, postgres_available

__all__ = ["pg_url"]  # a fixture, used by name

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kubernetes"
NODES = {"node-a": "127.0.1.1", "node-b": "127.0.1.2"}
UP_TIMEOUT_S = 90
"""Both replicas Ready: two `openrr serve` starts (migrations on a fresh database, ~3 s each on 2 busy cores),
the scheduler, and the agent's 1 s readiness probes; generous for a loaded CI machine."""
SESSION_TIMEOUT_S = 60
"""The first session Ready: a render pod scheduled, its Secret made, `openrr render-server` started (~2 s of
imports and a GL context) and answering; generous for a loaded CI machine."""
RENDER_PODS = "app.kubernetes.io/name=openrr-render"
API_VERSION = "api-version=2021-01-01"

pytestmark = pytest.mark.skipif(
    postgres_available() is not None and not os.environ.get("CI"), reason=str(postgres_available())
)


@pytest.fixture
def agent(kube_cluster: KubeCluster) -> Iterator[NodeAgent]:
    # Not under pytest's tmp dir either: the control-plane pods run as the manifest's user 10001, which must
    # reach its materialised volumes.
    root = Path(tempfile.mkdtemp(prefix="openrr-agent-"))
    root.chmod(0o755)
    node_agent = NodeAgent(kube_cluster.kubeconfig, NODES, root, sys.executable).start()
    try:
        yield node_agent
    finally:
        node_agent.stop()
        shutil.rmtree(root, ignore_errors=True)


def manifests(namespace: str) -> list[dict[str, Any]]:
    """The objects kustomization.yaml lists, but postgres.yaml (the test's PostgreSQL stands in for an external
    one), moved to `namespace`."""
    objects: list[dict[str, Any]] = []
    for name in yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]:
        if name != "postgres.yaml":
            objects += [o for o in yaml.safe_load_all((MANIFESTS / name).read_text()) if o]
    moved = []
    for obj in map(copy.deepcopy, objects):
        kind = obj["kind"]
        if kind == "Namespace":
            continue
        if kind.startswith("Cluster"):
            obj["metadata"]["name"] += f"-{namespace}"
            if kind == "ClusterRoleBinding":
                obj["roleRef"]["name"] += f"-{namespace}"
        else:
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        moved.append(obj)
    return moved


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def make_secrets(namespace: str, database_url: str, out: Path) -> list[dict[str, Any]]:
    """The Secrets as deploy/kubernetes/make-secrets.sh makes them (printed, not applied)."""
    made = subprocess.run(
        [
            *(str(MANIFESTS / "make-secrets.sh"), "--namespace", namespace, "--network", "127.0.0.0/8"),
            *("--database-url", database_url, "--out", str(out), "--dry-run"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return [s for s in yaml.safe_load_all(made.stdout) if s]


def service_account_kubeconfig(core: Any, namespace: str, server: str) -> str:
    """A kubeconfig with the `openrr` ServiceAccount's token (the one the controller-manager made for it)."""

    def token_secret() -> Any:
        sa = core.read_namespaced_service_account("openrr", namespace)
        names = [s.name for s in sa.secrets or []]
        return core.read_namespaced_secret(names[0], namespace) if names else None

    secret = wait_for(token_secret, 30, "the openrr ServiceAccount's token")
    token = base64.b64decode(secret.data["token"]).decode()
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "c", "cluster": {"server": server, "certificate-authority-data": secret.data["ca.crt"]}}
            ],
            "users": [{"name": "openrr", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "openrr", "namespace": namespace}}],
            "current-context": "c",
        }
    )


def test_the_control_plane_deployed_from_the_manifests_answers(
    kube_cluster: KubeCluster, kube_namespace: str, pg_url: str, agent: NodeAgent, tmp_path: Path
) -> None:
    # Fixture order: the agent stops the replicas before PostgreSQL stops, and both before the namespace goes.
    ns = kube_namespace
    secrets = make_secrets(ns, pg_url, tmp_path / "ca")
    ca_cert = tmp_path / "ca" / "cert.pem"
    objects = manifests(ns)
    config = find(objects, "ConfigMap", "openrr-settings")["data"]
    config["OPENRR_EXTRA_HOSTNAMES"] = json.dumps([f"openrr.{ns}.svc", f"openrr.{ns}.svc.cluster.local"])
    deployment = find(objects, "Deployment", "openrr")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod["volumes"].append({"name": "test-kubeconfig", "secret": {"secretName": "openrr-test-kubeconfig"}})
    container["volumeMounts"].append({"name": "test-kubeconfig", "mountPath": "/var/run/openrr/kube"})
    container["env"].append({"name": "OPENRR_KUBECONFIG", "value": "/var/run/openrr/kube/kubeconfig"})

    with kube_cluster.api_client() as api:
        # Any: the client's generated types make every field Optional.
        core: Any = client.CoreV1Api(api)
        apps: Any = client.AppsV1Api(api)
        rbac: Any = client.RbacAuthorizationV1Api(api)
        try:
            for secret in secrets:
                core.create_namespaced_secret(ns, secret)
            # Not the converter's Deployment (converter.yaml): the same `openrr serve` with workers, whose image and
            # settings tests/unit/test_deploy_files.py checks; a third replica would only slow this test.
            for obj in objects:
                if obj["kind"] != "Deployment":
                    utils.create_from_dict(api, obj, namespace=ns)  # type: ignore[no-untyped-call]
            kubeconfig = service_account_kubeconfig(core, ns, kube_cluster.server)
            core.create_namespaced_secret(
                ns, {"metadata": {"name": "openrr-test-kubeconfig"}, "stringData": {"kubeconfig": kubeconfig}}
            )
            utils.create_from_dict(api, deployment, namespace=ns)  # type: ignore[no-untyped-call]

            def both_ready() -> bool:
                status = apps.read_namespaced_deployment("openrr", ns).status
                return bool(status.ready_replicas == 2)

            try:
                wait_for(both_ready, UP_TIMEOUT_S, "both control-plane replicas Ready", interval=0.5)
            except AssertionError:
                logs = {p: agent.log_of(p)[-3000:] for p in agent.pods_running()}
                raise AssertionError(f"replicas not Ready; their logs: {logs}") from None
            pods = core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=control-plane").items
            running = [p for p in pods if p.status.phase == "Running"]
            # Both first starts on one fresh database succeeded: no pod failed and was replaced.
            failed = {p.metadata.name: agent.log_of(p.metadata.name)[-2000:] for p in pods if p not in running}
            assert len(running) == 2 and not failed, failed
            user = pod["securityContext"]["runAsUser"]
            for replica in running:
                process = agent.process_of(replica.metadata.name)
                assert process is not None and process.uids().real == user  # the manifest's non-root user
            # The scheduler spread them (the Deployment's anti-affinity), and the Service selects both on the
            # port it names. (Not through its Endpoints: the API refuses loopback addresses there, and the fake
            # nodes' pod IPs are 127.0.2.x.)
            assert {p.spec.node_name for p in running} == set(NODES)
            addresses = sorted(p.status.pod_ip for p in running)
            service = core.read_namespaced_service("openrr", ns)
            selector = ",".join(f"{k}={v}" for k, v in service.spec.selector.items())
            selected = core.list_namespaced_pod(ns, label_selector=selector).items
            assert sorted(p.status.pod_ip for p in selected if p.status.phase == "Running") == addresses
            (port,) = service.spec.ports
            assert all(port.target_port in {cp.name for cp in p.spec.containers[0].ports} for p in selected)

            # An account, made as an operator would with `kubectl exec deploy/openrr -- openrr account create`.
            made = subprocess.run(
                [sys.executable, "-m", "openrr", "account", "create", "--json", "--database-url", pg_url],
                capture_output=True,
                text=True,
                timeout=60,
                env=os.environ | {"OPENRR_SECRETS_KEY": _secret_value(secrets, "openrr-secrets", "secrets-key")},
            )
            assert made.returncode == 0, made.stderr
            account = json.loads(made.stdout)
            account_id, key = account["accountId"], account["primaryKey"]

            # Over HTTPS, each replica's certificate checked against the CA the Secret carries: a token from one
            # replica, the session list from the other (the STS key is shared through the database).
            first, second = (f"https://{a}:8443" for a in addresses)
            with httpx.Client(verify=ssl.create_default_context(cafile=ca_cert), timeout=10) as http:
                sts = http.get(
                    f"{first}/accounts/{account_id}/token", headers={"Authorization": f"Bearer {account_id}:{key}"}
                )
                assert sts.status_code == 200, sts.text
                token = sts.json()["AccessToken"]
                listed = http.get(
                    f"{second}/accounts/{account_id}/sessions?{API_VERSION}",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert listed.status_code == 200, listed.text
                assert listed.json()["sessions"] == []

                # The first session: created through one replica, watched through the other.
                auth = {"Authorization": f"Bearer {token}"}
                session_url = f"/accounts/{account_id}/sessions/first?{API_VERSION}"
                put = http.put(first + session_url, json={"maxLeaseTimeMinutes": 5, "size": "Standard"}, headers=auth)
                assert put.status_code in (200, 201), put.text

                def ready() -> dict[str, Any] | None:
                    doc: dict[str, Any] = http.get(second + session_url, headers=auth).json()
                    assert doc["status"] in ("Starting", "Ready"), doc
                    return doc if doc["status"] == "Ready" else None

                session = wait_for(ready, SESSION_TIMEOUT_S, "the first session Ready", interval=0.2)
                assert session["hostname"] in NODES.values()
                low, high = json.loads(config["OPENRR_KUBE_PORT_RANGE"])
                assert low <= session["handshakePort"] <= high
                (render_pod,) = core.list_namespaced_pod(
                    ns, label_selector=f"{RENDER_PODS},openrr.io/state=claimed"
                ).items
                (render,) = render_pod.spec.containers
                assert render.image == config["OPENRR_KUBE_RENDER_IMAGE"]
                assert render.resources.requests == json.loads(config["OPENRR_KUBE_RESOURCES"])["Standard"]["requests"]
                # Its server answers at that endpoint with a leaf of the CA clients trust, naming the node.
                assert http.get(f"https://{session['hostname']}:{session['handshakePort']}/health").status_code < 500
                stop = http.post(f"{first}/accounts/{account_id}/sessions/first/:stop?{API_VERSION}", headers=auth)
                assert stop.status_code in (200, 204), stop.text

                def pod_gone() -> bool:
                    names = [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=RENDER_PODS).items]
                    return render_pod.metadata.name not in names

                wait_for(pod_gone, 30, "the stopped session's render pod deleted", interval=0.2)
            # The replicas run the Kubernetes backend with the ServiceAccount's rights: at start it wrote the STS
            # public key Secret that render pods mount.
            sts_secret = core.read_namespaced_secret("openrr-sts-public", ns)
            assert sts_secret.data
        finally:
            for obj in objects:
                if obj["kind"].startswith("Cluster"):
                    delete = (
                        rbac.delete_cluster_role if obj["kind"] == "ClusterRole" else rbac.delete_cluster_role_binding
                    )
                    delete(obj["metadata"]["name"])


def _secret_value(secrets: list[dict[str, Any]], name: str, key: str) -> str:
    secret = next(s for s in secrets if s["metadata"]["name"] == name)
    return base64.b64decode(secret["data"][key]).decode()
