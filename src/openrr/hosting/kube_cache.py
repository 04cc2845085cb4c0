"""A watch-backed cache of one kind of object (render pods, nodes): list, then watch from the list's
resourceVersion in a thread; relist when the watch expires (410 Gone) or breaks. Reads never call the API server.

Events come as the client's `Watch.stream` yields them: `object` is a model (V1Pod) for ADDED/MODIFIED/DELETED, but
a plain dict for BOOKMARK (only its metadata.resourceVersion is meaningful) and for ERROR (a Status): the type is
read first, always.

The client library's informers are not in the official Python client (only `watch.Watch`), hence this small one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger(__name__)
WATCH_TIMEOUT_S = 50
"""Server-side end of one watch request; the next continues from the last resourceVersion seen."""
RETRY_S = 0.5


class WatchExpired(Exception):
    """The resourceVersion the watch continues from is too old (410 Gone): list again, at once."""


class WatchCache:
    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        on_delete: Callable[[Any], None] | None = None,
        on_change: Callable[[Any], None] | None = None,
        **list_kwargs: Any,
    ) -> None:
        """`list_fn`: e.g. CoreV1Api().list_namespaced_pod; `list_kwargs` its arguments (namespace,
        label_selector). `on_delete(obj)`: the last state of each object that goes; `on_change(obj)`: each object
        listed, added or modified (both called in the watch thread: keep them short)."""
        self.name = name
        self._list = list_fn
        self._kwargs = list_kwargs
        self._on_delete = on_delete
        self._on_change = on_change
        self._items: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._synced = False
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self.version: str | None = None
        """The resourceVersion the next watch continues from (the last list's, event's or bookmark's)."""
        self.watch_timeout_s = WATCH_TIMEOUT_S
        self._thread = threading.Thread(target=self._run, name=f"openrr-watch-{name}", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start watching; return once the first list is in (RuntimeError if not within `timeout`)."""
        self._thread.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._synced, timeout):
                raise RuntimeError(f"could not list {self.name} from the Kubernetes API server within {timeout:.0f} s")

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]

    def get(self, name: str) -> Any | None:
        with self._cond:
            return self._items.get(name)

    def items(self) -> list[Any]:
        with self._cond:
            return list(self._items.values())

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most `timeout`) until `predicate()`, re-checked on each change the watch brings."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def put(self, obj: Any) -> None:
        """An object this process just wrote (the API's answer): seen at once, not only when its event arrives.
        An older version never replaces a newer one."""
        self._apply("MODIFIED", obj)

    def _apply(self, kind: str, obj: Any) -> None:
        name = obj.metadata.name
        with self._cond:
            current = self._items.get(name)
            if kind == "DELETED":
                self._items.pop(name, None)
            elif current is None or _newer(obj, current):
                self._items[name] = obj
            self._cond.notify_all()
        if kind == "DELETED":
            if self._on_delete is not None:
                self._on_delete(obj)
        elif self._on_change is not None:
            self._on_change(obj)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception as e:
                if self._stop.is_set():
                    return
                if _expired(e):  # routine: the next list is the fresh state, no pause
                    logger.info("watch of %s expired (%s); listing again", self.name, e)
                    continue
                logger.warning("watch of %s broke (%s); listing again", self.name, e)
                time.sleep(RETRY_S)

    def _list_and_watch(self) -> None:
        listed = self._list(**self._kwargs)
        fresh = {o.metadata.name: o for o in listed.items}
        with self._cond:
            gone = [o for n, o in self._items.items() if n not in fresh]
            self._items = fresh
            self._synced = True
            self._cond.notify_all()
        for obj in gone:  # deleted while no watch ran
            if self._on_delete is not None:
                self._on_delete(obj)
        for obj in fresh.values():
            if self._on_change is not None:
                self._on_change(obj)
        self.version = listed.metadata.resource_version
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self._list,
                    resource_version=self.version,
                    timeout_seconds=self.watch_timeout_s,
                    allow_watch_bookmarks=True,
                    **self._kwargs,
                ):
                    self.handle(event)
                    if self._stop.is_set():
                        return
            finally:
                self._watch.stop()  # type: ignore[no-untyped-call]

    def handle(self, event: dict[str, Any]) -> None:
        """One event of the watch stream: apply it and remember its resourceVersion. BOOKMARK: the version only.
        ERROR: WatchExpired for 410 Gone (the caller lists again), else ApiException."""
        kind, obj = event["type"], event["object"]
        if kind == "BOOKMARK":
            self.version = _raw_version(obj) or self.version
            return
        if kind == "ERROR":
            status: dict[str, Any] = obj  # a Status, left a dict by the client
            if status.get("code") == 410:
                raise WatchExpired(status.get("message") or "Gone")
            raise ApiException(
                status=status.get("code") or 500, reason=f"{status.get('reason')}: {status.get('message')}"
            )
        self.version = obj.metadata.resource_version
        self._apply(kind, obj)


def _newer(a: Any, b: Any) -> bool:
    """Whether object `a` is a later version than `b` (resourceVersions of one object only ever grow; they are
    opaque strings, but etcd's are integers: compare as such when they are)."""
    va, vb = a.metadata.resource_version or "", b.metadata.resource_version or ""
    if va.isdigit() and vb.isdigit():
        return int(va) >= int(vb)
    return True


def _raw_version(obj: dict[str, Any]) -> str | None:
    """metadata.resourceVersion of an object the client left a dict (a BOOKMARK's)."""
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None


def _expired(e: Exception) -> bool:
    """410 Gone: from an ERROR event this cache read, or raised by the client itself (which reads ERROR events before
    yielding them and, the watch having a timeout, does not retry)."""
    return isinstance(e, WatchExpired) or (isinstance(e, ApiException) and e.status == 410)
