"""A render pod: its name, labels, annotations and spec (docs/kubernetes.md; the node agent in tests/k8s and the
manifests in deploy/ rely on these names). Pure: builds the objects, talks to nothing."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrr.config import KubeHostVolume
from openrr.hosting.backend import SessionKey
from openrr.hosting.server_limits import ServerLimits
from openrr.render.control import HEALTH_PATH, RenderServerArgs

NAME_PREFIX = "openrr-render-"
APP_LABEL = "app.kubernetes.io/name"
APP = "openrr-render"
SELECTOR = f"{APP_LABEL}={APP}"
SIZE_LABEL = "openrr.io/size"
STATE_LABEL = "openrr.io/state"
WARM, CLAIMED = "warm", "claimed"
ACCOUNT_LABEL = "openrr.io/account"
SESSION_LABEL = "openrr.io/session"
SESSION_ID_ANNOTATION = "openrr.io/session-id"
ACCOUNT_ID_ANNOTATION = "openrr.io/account-id"
CONTAINER = "render-server"

POD_SECRET_DIR = Path("/var/run/openrr/pod")
STS_DIR = Path("/var/run/openrr/sts")
SCRATCH_DIR = Path("/tmp/openrr")
CONTROL_SECRET_KEY = "control-secret"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
STS_KEY = "sts-public.pem"
OWN_VOLUMES = ("pod-secret", "sts", "scratch")
OWN_DIRS = (POD_SECRET_DIR, STS_DIR, SCRATCH_DIR)

_ALNUM = string.ascii_lowercase + string.digits


def new_pod_name() -> str:
    return NAME_PREFIX + "".join(secrets.choice(_ALNUM) for _ in range(10))


def session_hash(session_id: str) -> str:
    """The session label's value: session ids may be longer or hold characters a label value may not."""
    return hashlib.sha1(session_id.encode()).hexdigest()


def session_selector(key: SessionKey) -> str:
    return f"{SELECTOR},{SESSION_LABEL}={session_hash(key.session_id)},{ACCOUNT_LABEL}={key.account_id}"


def claim_metadata(key: SessionKey) -> dict[str, Any]:
    """Labels and annotations that give a pod to a session (at creation, or patched onto a warm one)."""
    return {
        "labels": {STATE_LABEL: CLAIMED, ACCOUNT_LABEL: key.account_id, SESSION_LABEL: session_hash(key.session_id)},
        "annotations": {SESSION_ID_ANNOTATION: key.session_id, ACCOUNT_ID_ANNOTATION: key.account_id},
    }


def claimed_key(metadata: Any) -> SessionKey | None:
    """The session a pod was given to (from its annotations; V1ObjectMeta), None for a warm one."""
    labels = metadata.labels or {}
    annotations = metadata.annotations or {}
    session_id, account_id = annotations.get(SESSION_ID_ANNOTATION), annotations.get(ACCOUNT_ID_ANNOTATION)
    if labels.get(STATE_LABEL) != CLAIMED or not session_id or not account_id:
        return None
    return SessionKey(account_id, session_id)


@dataclass(frozen=True)
class PodTemplate:
    """What every render pod shares (from Settings)."""

    image: str
    stop_grace_s: float
    sts_secret: str
    resources: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    limits: ServerLimits = field(default_factory=ServerLimits)
    extra_volumes: tuple[KubeHostVolume, ...] = ()
    """Node directories every pod mounts (settings.kube_extra_volumes)."""

    def __post_init__(self) -> None:
        check_extra_volumes(self.extra_volumes)


def check_extra_volumes(volumes: tuple[KubeHostVolume, ...]) -> None:
    """ValueError unless each extra volume has a name of its own, absolute paths, and a mount path that neither
    holds nor lies inside one of the pod's own (its Secret, the STS key, the scratch directory): an operator's
    volume must not shadow or read what the pod is given."""
    names = [v.name for v in volumes]
    for v in volumes:
        if v.name in OWN_VOLUMES or names.count(v.name) > 1:
            raise ValueError(f"kube_extra_volumes: the volume name {v.name!r} is taken")
        mount, host = Path(v.mount_path), Path(v.host_path)
        if not mount.is_absolute() or not host.is_absolute():
            raise ValueError(f"kube_extra_volumes: {v.name!r} needs absolute hostPath and mountPath")
        for own in OWN_DIRS:
            if mount == own or mount in own.parents or own in mount.parents:
                raise ValueError(f"kube_extra_volumes: {v.name!r} would mount over {own}")


def render_pod(template: PodTemplate, name: str, size: str, port: int, key: SessionKey | None) -> dict[str, Any]:
    """The pod of one render server on host ports `port` (handshake) and `port + 1` (inspector); claimed by `key`
    from the start, or warm (assigned later over /control/assign) if None."""
    args = RenderServerArgs(
        host_id=name,
        ports_file=Path(SCRATCH_DIR, "ports.json"),
        size=size,
        bind="$(NODE_IP)",
        session_id=key.session_id if key else None,
        account_id=key.account_id if key else None,
        certfile=Path(POD_SECRET_DIR, TLS_CERT_KEY),
        keyfile=Path(POD_SECRET_DIR, TLS_KEY_KEY),
        sts_public_key=Path(STS_DIR, STS_KEY),
        handshake_port=port,
        inspector_port=port + 1,
        secret_file=Path(POD_SECRET_DIR, CONTROL_SECRET_KEY),
        **template.limits.as_args(),
    )
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {APP_LABEL: APP, SIZE_LABEL: size, STATE_LABEL: WARM},
        "annotations": {},
    }
    if key is not None:
        claim = claim_metadata(key)
        metadata["labels"].update(claim["labels"])
        metadata["annotations"].update(claim["annotations"])
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": template.image,
        "command": ["openrr", "render-server"],
        # `--flag=value` tokens: the kubelet expands $(NODE_IP) inside them.
        "args": _joined(args.to_argv()),
        "env": [{"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
        "ports": [
            {"name": "handshake", "containerPort": port, "hostPort": port, "protocol": "TCP"},
            {"name": "inspector", "containerPort": port + 1, "hostPort": port + 1, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": HEALTH_PATH, "port": port, "scheme": "HTTPS"},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        "volumeMounts": [
            {"name": "pod-secret", "mountPath": str(POD_SECRET_DIR), "readOnly": True},
            {"name": "sts", "mountPath": str(STS_DIR), "readOnly": True},
            {"name": "scratch", "mountPath": str(SCRATCH_DIR)},
            *({"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in template.extra_volumes),
        ],
    }
    resources = template.resources.get(size)
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "restartPolicy": "Never",
            "hostNetwork": True,
            # hostNetwork pods resolve cluster names only with this policy.
            "dnsPolicy": "ClusterFirstWithHostNet",
            "terminationGracePeriodSeconds": max(1, round(template.stop_grace_s)),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [container],
            "volumes": [
                {"name": "pod-secret", "secret": {"secretName": name, "defaultMode": 0o440}},
                {"name": "sts", "secret": {"secretName": template.sts_secret}},
                {"name": "scratch", "emptyDir": {}},
                *({"name": v.name, "hostPath": {"path": v.host_path}} for v in template.extra_volumes),
            ],
        },
    }


def _joined(argv: list[str]) -> list[str]:
    """["--a", "1", "--b", "2"] -> ["--a=1", "--b=2"] (every flag of RenderServerArgs takes a value)."""
    return [f"{flag}={value}" for flag, value in zip(argv[::2], argv[1::2], strict=True)]


def pod_secret(name: str, uid: str, control_secret: str, cert_chain: bytes, key: bytes) -> dict[str, Any]:
    """The Secret a render pod mounts: its control secret and TLS leaf. Owned by the pod, so that the garbage
    collector deletes it with the pod."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "labels": {APP_LABEL: APP},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}],
        },
        "stringData": {
            CONTROL_SECRET_KEY: control_secret,
            TLS_CERT_KEY: cert_chain.decode(),
            TLS_KEY_KEY: key.decode(),
        },
    }
