"""Why a render pod can no longer serve its session, in words for the session's error (HostGone's message); read
from the pod (V1Pod) and its node (V1Node) as the watch caches hold them."""

from __future__ import annotations

from typing import Any

from openrr.render.control import exit_reason


def node_ready(node: Any) -> bool:
    for c in (node.status.conditions if node.status else None) or []:
        if c.type == "Ready":
            return bool(c.status == "True")
    return False


def gone_reason(pod: Any, node: Any | None) -> str | None:
    """Why the pod is gone for good, or None while it may still serve (pending, starting, running).

    `node`: the pod's node from the cache (None if the pod is unbound, or its node is gone)."""
    name = pod.metadata.name
    node_name = pod.spec.node_name if pod.spec else None
    if node_name:
        if node is None:
            return f"The node {node_name} running the render pod {name} is gone."
        if not node_ready(node):
            return f"The node {node_name} running the render pod {name} is NotReady."
    status = pod.status
    phase = status.phase if status else None
    if phase in ("Failed", "Succeeded"):
        return ended_reason(pod)
    if pod.metadata.deletion_timestamp is not None:
        return f"The render pod {name} was deleted."
    return None


def ended_reason(pod: Any) -> str:
    """A pod that Failed or Succeeded: evicted, OOM-killed, or its exit code."""
    name = pod.metadata.name
    status = pod.status
    if status and status.reason == "Evicted":
        return f"The render pod {name} was evicted: {(status.message or 'no reason given').rstrip('.')}."
    for cs in (status.container_statuses if status else None) or []:
        terminated = cs.state.terminated if cs.state else None
        if terminated is None:
            continue
        if terminated.reason == "OOMKilled":
            return f"The render pod {name} was OOM-killed."
        return f"The render server in pod {name} {exit_reason(int(terminated.exit_code))}."
    return f"The render pod {name} ended ({status.phase if status else 'unknown'})."


def deleted_reason(pod: Any) -> str:
    """The last state of a pod that is gone from the API: what ended it, if it ended before it was deleted."""
    phase = pod.status.phase if pod.status else None
    if phase in ("Failed", "Succeeded"):
        return ended_reason(pod)
    return f"The render pod {pod.metadata.name} was deleted."
