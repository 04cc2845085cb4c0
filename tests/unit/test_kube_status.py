"""hosting/kube_status.py: why a render pod can no longer serve, in the words a session's error shows. Pods and nodes
as the API client deserializes them; no cluster."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from openrr.hosting.kube_status import deleted_reason, gone_reason

NAME = "openrr-render-abcdefghij"


def _of(kind: str, doc: dict[str, Any]) -> Any:
    api = client.ApiClient()
    return api._ApiClient__deserialize(doc, kind)  # type: ignore[attr-defined]


def _node(ready: str = "True") -> Any:
    return _of(
        "V1Node", {"metadata": {"name": "node-b"}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}
    )


def _pod(phase: str = "Running", node: str | None = "node-b", **status: Any) -> Any:
    return _of(
        "V1Pod",
        {
            "metadata": {"name": NAME, **status.pop("meta", {})},
            "spec": {"nodeName": node, "containers": [{"name": "render-server"}]},
            "status": {"phase": phase, **status},
        },
    )


def _terminated(reason: str | None, code: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "render-server",
            "ready": False,
            "restartCount": 0,
            "image": "i",
            "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": reason}},
        }
    ]


def test_a_running_or_pending_pod_is_not_gone() -> None:
    assert gone_reason(_pod(), _node()) is None
    assert gone_reason(_pod("Pending", node=None), None) is None


def test_each_cause_is_named() -> None:
    assert gone_reason(_pod(), _node("Unknown")) == f"The node node-b running the render pod {NAME} is NotReady."
    assert gone_reason(_pod(), None) == f"The node node-b running the render pod {NAME} is gone."
    oom = _pod("Failed", containerStatuses=_terminated("OOMKilled", 137))
    assert gone_reason(oom, _node()) == f"The render pod {NAME} was OOM-killed."
    evicted = _pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert gone_reason(evicted, _node()) == f"The render pod {NAME} was evicted: The node was low on resource: memory."
    crashed = _pod("Failed", containerStatuses=_terminated("Error", 70))
    assert "exited with code 70: its render process (GL) died" in (gone_reason(crashed, _node()) or "")
    port = _pod("Failed", containerStatuses=_terminated("Error", 69))
    assert "port is taken" in (gone_reason(port, _node()) or "")
    deleting = _pod(meta={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    assert gone_reason(deleting, _node()) == f"The render pod {NAME} was deleted."


def test_a_pod_gone_from_the_api_is_deleted_unless_it_ended_first() -> None:
    assert deleted_reason(_pod()) == f"The render pod {NAME} was deleted."
    assert deleted_reason(_pod("Failed", containerStatuses=_terminated("OOMKilled", 137))).endswith("was OOM-killed.")
