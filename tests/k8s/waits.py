"""Waiting on Kubernetes objects with a watch (woken by the change itself, not a polling loop)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from tests.k8s.informer import Obj


def watch_until(
    list_fn: Callable[..., Any], predicate: Callable[[Obj | None], bool], timeout: float, what: str, **selectors: str
) -> Obj | None:
    """The first state of the watched object (a dict as the API sends it; None once deleted) that satisfies
    `predicate`. `list_fn` is a list call (e.g. `core.list_namespaced_pod` with `namespace=` in `selectors`,
    narrowed by `field_selector="metadata.name=NAME"`); the current state is checked first."""
    deadline = time.monotonic() + timeout
    doc = json.loads(list_fn(_preload_content=False, **selectors).data)
    last: Obj | None = doc["items"][0] if doc["items"] else None
    if predicate(last):
        return last
    rv = doc["metadata"]["resourceVersion"]
    while (left := deadline - time.monotonic()) > 0:
        w = watch.Watch()  # type: ignore[no-untyped-call]
        stream = w.stream(  # type: ignore[no-untyped-call]
            list_fn, resource_version=rv, timeout_seconds=max(1, int(left)), deserialize=False, **selectors
        )
        try:
            for event in stream:
                obj = event["object"]
                if event["type"] == "BOOKMARK":
                    continue
                if event["type"] == "ERROR":
                    raise client.ApiException(status=obj.get("code"), reason=obj.get("message"))
                rv = obj["metadata"]["resourceVersion"]
                last = None if event["type"] == "DELETED" else obj
                if predicate(last):
                    return last
        finally:
            w.stop()  # type: ignore[no-untyped-call]
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {_summary(last)})")


def _summary(obj: Obj | None) -> str:
    """The object's status only: specs may carry what a log must not show."""
    if obj is None:
        return "deleted"
    return json.dumps({"name": obj["metadata"].get("name"), "status": obj.get("status")})[:2000]


def pod_named(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    """`watch_until` arguments for one pod."""
    return {"list_fn": core.list_namespaced_pod, "namespace": namespace, "field_selector": f"metadata.name={name}"}


def condition(obj: Obj | None, kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of the object's condition `kind`, None if absent."""
    for c in (obj or {}).get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None
