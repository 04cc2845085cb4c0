"""hosting/kube_cache.py's handling of watch events, fed exactly as the kubernetes client yields them: each line
the API server sends goes through the client's own `Watch.unmarshal_event` (a model for ADDED/MODIFIED/DELETED, the
raw dict for BOOKMARK and ERROR). No cluster: the handling of one event talks to nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from openrr.hosting.kube_cache import WatchCache, WatchExpired

NAME = "openrr-render-abcdefghij"


def _event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """One watch event as `Watch.stream` yields it for CoreV1Api.list_namespaced_pod."""
    w = watch.Watch()  # type: ignore[no-untyped-call]
    return_type = w.get_return_type(client.CoreV1Api().list_namespaced_pod)  # type: ignore[no-untyped-call]
    event: dict[str, Any] = w.unmarshal_event(json.dumps({"type": kind, "object": obj}), return_type)  # type: ignore[no-untyped-call]
    return event


def _pod(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": NAME, "namespace": "openrr", "resourceVersion": version},
        "spec": {"containers": [{"name": "render-server"}]},
    }


# What kube-apiserver sends for a bookmark: an object of the watched kind with only its resourceVersion.
BOOKMARK = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "1207", "creationTimestamp": None}}


def _cache(changes: list[Any]) -> WatchCache:
    """Not started: events are handed to it directly (its list function is never called)."""
    return WatchCache("render pods", client.CoreV1Api().list_namespaced_pod, on_change=changes.append)


def test_a_bookmark_moves_the_resource_version_and_changes_nothing() -> None:
    changes: list[Any] = []
    cache = _cache(changes)
    cache.handle(_event("ADDED", _pod("1200")))
    bookmark = _event("BOOKMARK", BOOKMARK)
    assert isinstance(bookmark["object"], dict)  # the shape that broke the cache: no .metadata
    cache.handle(bookmark)
    assert cache.version == "1207"
    assert [p.metadata.resource_version for p in cache.items()] == ["1200"]
    assert len(changes) == 1  # the ADDED only
    cache.handle(_event("MODIFIED", _pod("1210")))
    pod = cache.get(NAME)
    assert cache.version == "1210" and pod is not None and pod.metadata.resource_version == "1210"


def test_deleted_removes_the_pod() -> None:
    cache = _cache([])
    cache.handle(_event("ADDED", _pod("5")))
    cache.handle(_event("DELETED", _pod("6")))
    assert cache.get(NAME) is None and cache.version == "6"


def test_410_gone_asks_for_a_fresh_list_and_other_errors_raise() -> None:
    cache = _cache([])
    gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
            "message": "too old resource version: 1200 (1300)"}  # fmt: skip
    with pytest.raises(WatchExpired, match="too old"):
        cache.handle(_event("ERROR", gone))
    broken = {**gone, "reason": "InternalError", "code": 500, "message": "etcd unavailable"}
    with pytest.raises(ApiException) as raised:
        cache.handle(_event("ERROR", broken))
    assert raised.value.status == 500
    assert cache.version is None and cache.items() == []
