"""hosting/kube_pod.py and kube_ports.py: the render pod as the contract describes it (docs/kubernetes.md; the node
agent and deploy/ rely on it) and the choice of host ports. Pure; no cluster."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from pydantic import TypeAdapter, ValidationError

from openrr.config import KubeHostVolume
from openrr.hosting.backend import SessionKey
from openrr.hosting.kube_pod import (
    PodTemplate,
    claim_metadata,
    claimed_key,
    new_pod_name,
    pod_secret,
    render_pod,
    session_hash,
)
from openrr.hosting.kube_ports import free_pair, handshake_port, pod_host_ports
from openrr.render.control import RenderServerArgs

TEMPLATE = PodTemplate(
    image="openrr/render-server:1",
    stop_grace_s=5,
    sts_secret="openrr-sts-public",
    resources={"Premium": {"limits": {"nvidia.com/gpu": "1"}}},
)
KEY = SessionKey("acct-1", "session/with odd:chars")


def _as_pod(body: dict[str, Any]) -> Any:
    """The dict as the API client would hand it back (V1Pod)."""
    api = client.ApiClient()
    return api._ApiClient__deserialize(api.sanitize_for_serialization(body), "V1Pod")  # type: ignore[attr-defined,no-untyped-call]


def test_pod_names_are_the_prefix_and_ten_lowercase_alphanumerics() -> None:
    names = {new_pod_name() for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.startswith("openrr-render-") and len(name) == len("openrr-render-") + 10
        assert name[len("openrr-render-") :].isalnum() and name.islower()


def test_a_claimed_pod_carries_its_session_in_labels_and_annotations_and_the_render_server_flags() -> None:
    body = render_pod(TEMPLATE, "openrr-render-abcdefghij", "Premium", 30000, KEY)
    meta, spec = body["metadata"], body["spec"]
    assert meta["labels"] == {
        "app.kubernetes.io/name": "openrr-render",
        "openrr.io/size": "Premium",
        "openrr.io/state": "claimed",
        "openrr.io/account": "acct-1",
        "openrr.io/session": session_hash(KEY.session_id),
    }
    assert meta["annotations"] == {"openrr.io/session-id": KEY.session_id, "openrr.io/account-id": "acct-1"}
    assert spec["restartPolicy"] == "Never" and spec["hostNetwork"] is True
    assert spec["terminationGracePeriodSeconds"] == 5
    (c,) = spec["containers"]
    assert c["name"] == "render-server" and c["image"] == "openrr/render-server:1"
    assert c["command"] == ["openrr", "render-server"]
    assert c["ports"] == [
        {"name": "handshake", "containerPort": 30000, "hostPort": 30000, "protocol": "TCP"},
        {"name": "inspector", "containerPort": 30001, "hostPort": 30001, "protocol": "TCP"},
    ]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": 30000, "scheme": "HTTPS"}
    assert c["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert c["env"] == [{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]
    # The args are the render server's own flags (render/control.py), as --flag=value.
    argv = [t for a in c["args"] for t in a.split("=", 1)]
    args = RenderServerArgs.from_argv(argv)
    assert args.bind == "$(NODE_IP)" and (args.handshake_port, args.inspector_port) == (30000, 30001)
    assert args.secret_file == Path("/var/run/openrr/pod/control-secret")
    assert (args.certfile, args.keyfile) == (Path("/var/run/openrr/pod/tls.crt"), Path("/var/run/openrr/pod/tls.key"))
    assert args.sts_public_key == Path("/var/run/openrr/sts/sts-public.pem")
    assert args.ports_file == Path("/tmp/openrr/ports.json")
    assert (args.session_id, args.account_id, args.size) == (KEY.session_id, "acct-1", "Premium")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["pod-secret"]["secret"]["secretName"] == "openrr-render-abcdefghij"
    assert volumes["sts"]["secret"]["secretName"] == "openrr-sts-public"
    assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
    # Valid for the API client's own model (field names and types).
    assert _as_pod(body).spec.containers[0].ports[0].host_port == 30000


def test_a_warm_pod_has_no_session_until_claimed() -> None:
    body = render_pod(TEMPLATE, "openrr-render-abcdefghij", "Standard", 30002, None)
    assert body["metadata"]["labels"]["openrr.io/state"] == "warm"
    assert "openrr.io/session" not in body["metadata"]["labels"]
    assert "resources" not in body["spec"]["containers"][0]  # no resources configured for Standard
    assert not any(a.startswith("--session-id") for a in body["spec"]["containers"][0]["args"])
    pod = _as_pod(body)
    assert claimed_key(pod.metadata) is None
    pod.metadata.labels.update(claim_metadata(KEY)["labels"])
    pod.metadata.annotations.update(claim_metadata(KEY)["annotations"])
    assert claimed_key(pod.metadata) == KEY


def test_session_label_values_are_valid_label_values_whatever_the_session_id() -> None:
    value = session_hash("x" * 300)
    assert len(value) <= 63 and value.isalnum()


def test_the_pod_secret_is_owned_by_the_pod_and_is_the_only_place_of_its_secrets() -> None:
    secret = pod_secret("openrr-render-abcdefghij", "uid-1", "s3cret", b"CHAIN", b"KEY")
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "openrr-render-abcdefghij", "uid": "uid-1"}
    ]
    assert secret["stringData"] == {"control-secret": "s3cret", "tls.crt": "CHAIN", "tls.key": "KEY"}
    pod = render_pod(TEMPLATE, "openrr-render-abcdefghij", "Standard", 30000, KEY)
    assert "s3cret" not in str(pod)


def _pod_with_ports(*ports: int) -> Any:
    return SimpleNamespace(
        spec=SimpleNamespace(
            containers=[
                SimpleNamespace(
                    ports=[
                        SimpleNamespace(name=n, host_port=p, container_port=p)
                        for n, p in zip(("handshake", "inspector"), ports, strict=False)
                    ]
                )
            ]
        )
    )


def test_free_pairs_avoid_every_port_any_render_pod_holds() -> None:
    pods = [_pod_with_ports(30000, 30001), _pod_with_ports(30004, 30005)]
    used = set().union(*(pod_host_ports(p) for p in pods))
    assert handshake_port(pods[1]) == 30004
    picks = {free_pair((30000, 30007), used, random.Random(i)) for i in range(50)}
    assert picks == {30002, 30006}
    # A pair is both ports: a pod holding only P + 1 of a pair (another range) blocks it too.
    assert free_pair((30000, 30003), {30003}, random.Random(0)) == 30000


def test_a_full_range_says_so() -> None:
    with pytest.raises(RuntimeError, match="no free host port pair left in 30000-30003"):
        free_pair((30000, 30003), {30000, 30002})


def _settings_volumes(doc: str) -> tuple[KubeHostVolume, ...]:
    """kube_extra_volumes as an operator writes it (OPENRR_KUBE_EXTRA_VOLUMES, the pod spec's spelling)."""
    return tuple(TypeAdapter(list[KubeHostVolume]).validate_json(doc))


def test_extra_volumes_mount_node_directories_read_only_unless_said() -> None:
    volumes = _settings_volumes(
        '[{"name": "host-usr", "hostPath": "/usr", "mountPath": "/usr"},'
        ' {"name": "cache", "hostPath": "/var/cache/openrr", "mountPath": "/cache", "readOnly": false}]'
    )
    template = PodTemplate(image="i", stop_grace_s=1, sts_secret="s", extra_volumes=volumes)
    pod = _as_pod(render_pod(template, new_pod_name(), "Standard", 30000, None))
    by_name = {v.name: v for v in pod.spec.volumes}
    assert by_name["host-usr"].host_path.path == "/usr" and by_name["cache"].host_path.path == "/var/cache/openrr"
    mounts = {m.name: m for m in pod.spec.containers[0].volume_mounts}
    assert (mounts["host-usr"].mount_path, mounts["host-usr"].read_only) == ("/usr", True)
    assert (mounts["cache"].mount_path, mounts["cache"].read_only) == ("/cache", False)
    # The pod's own volumes are all still there.
    assert {"pod-secret", "sts", "scratch"} <= set(by_name)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ('[{"name": "pod-secret", "hostPath": "/x", "mountPath": "/x"}]', "taken"),
        ('[{"name": "a", "hostPath": "/x", "mountPath": "/x"}, {"name": "a", "hostPath": "/y", "mountPath": "/y"}]',
         "taken"),
        ('[{"name": "a", "hostPath": "x", "mountPath": "/x"}]', "absolute"),
        ('[{"name": "a", "hostPath": "/x", "mountPath": "/var/run/openrr/pod"}]', "over"),
        ('[{"name": "a", "hostPath": "/x", "mountPath": "/var/run"}]', "over"),
        ('[{"name": "a", "hostPath": "/x", "mountPath": "/tmp/openrr/models"}]', "over"),
    ],
)  # fmt: skip
def test_extra_volumes_may_not_shadow_the_pods_own(doc: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        PodTemplate(image="i", stop_grace_s=1, sts_secret="s", extra_volumes=_settings_volumes(doc))


def test_extra_volumes_take_no_other_kind_of_source() -> None:
    with pytest.raises(ValidationError):
        _settings_volumes('[{"name": "a", "secret": {"secretName": "x"}, "hostPath": "/x", "mountPath": "/x"}]')
