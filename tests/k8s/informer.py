"""List + watch of one kind of Kubernetes object as plain dicts, in a thread: the cache a kubelet or a controller
keeps. Hand-written over `kubernetes.watch.Watch` rather than the client's own `kubernetes.informer` because that
one is new (client 37), hands out model objects, and has no way to wait for a change; this one keeps the API's own
JSON (camelCase, as the API documents it) and notifies a `threading.Condition` on every event."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name); namespace "" for cluster-scoped objects."""

WATCH_S = 300
"""A watch request's server-side timeout; it is reopened from the last resourceVersion (a relist only on 410)."""


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Informer:
    """`objects` mirrors the API; `on_event(type, obj)` runs in the watch thread (keep it short)."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        on_event: Callable[[str, Obj], None] | None = None,
        changed: threading.Condition | None = None,
        **selectors: str,
    ) -> None:
        self._list_fn = list_fn
        self._on_event = on_event
        self._selectors = selectors
        self.changed = changed or threading.Condition()
        self.objects: dict[Key, Obj] = {}
        self._watch: watch.Watch | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"informer-{list_fn.__name__}", daemon=True)
        self._rv = ""
        self._stopped = threading.Event()
        self.error: BaseException | None = None
        """The last error the watch thread met (it reconnects); for a test's failure message."""

    def start(self) -> Informer:
        self._relist()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]  # shuts the socket down: the blocked read returns at once
        self._thread.join(10)

    def get(self, namespace: str, name: str) -> Obj | None:
        with self.changed:
            return self.objects.get((namespace, name))

    def _relist(self) -> None:
        resp = self._list_fn(_preload_content=False, **self._selectors)
        doc = json.loads(resp.data)
        items = {key_of(o): o for o in doc["items"]}
        with self.changed:
            gone = [o for k, o in self.objects.items() if k not in items]
            self.objects = items
            self._rv = doc["metadata"]["resourceVersion"]
            self.changed.notify_all()
        for o in gone:
            self._emit("DELETED", o)
        for o in items.values():
            self._emit("ADDED", o)

    def _run(self) -> None:
        while not self._stopping:
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self._list_fn, resource_version=self._rv, timeout_seconds=WATCH_S, deserialize=False,
                    **self._selectors,
                ):  # fmt: skip
                    self._apply(event["type"], event["object"])
                continue  # the server ended the watch (WATCH_S): reopen it where it stopped
            except client.ApiException as e:
                if self._stopping:
                    return
                if e.status == 410:  # too old: start over from a fresh list
                    self._relist()
                    continue
                self.error = e
            except Exception as e:  # the connection dropped (apiserver restarting, overloaded): reconnect
                if self._stopping:
                    return
                self.error = e
            # A lost watch may have missed events: wait a moment (reconnect backoff), then list afresh.
            self._stopped.wait(0.5)
            if not self._stopping:
                try:
                    self._relist()
                except Exception as e:
                    self.error = e

    def _apply(self, kind: str, obj: Obj) -> None:
        if kind == "BOOKMARK":
            self._rv = obj["metadata"]["resourceVersion"]
            return
        with self.changed:
            if kind == "DELETED":
                self.objects.pop(key_of(obj), None)
            else:
                self.objects[key_of(obj)] = obj
            self._rv = obj["metadata"]["resourceVersion"]
            self.changed.notify_all()
        self._emit(kind, obj)

    def _emit(self, kind: str, obj: Obj) -> None:
        if self._on_event is not None:
            self._on_event(kind, obj)
