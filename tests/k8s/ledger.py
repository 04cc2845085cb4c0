"""A ledger of every render pod a run saw (a watch from its start), to count duplicates after the fact: a pod given
to two sessions, a session given two pods, a (node, host port) given to two pods. Used by the replica tests and
bench/k8s_burst.py."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from openrr.hosting.kube_pod import SELECTOR, SESSION_ID_ANNOTATION
from tests.k8s.informer import Informer, Obj


def _host_port(pod: Obj, name: str) -> int | None:
    for c in pod["spec"].get("containers", []):
        for p in c.get("ports") or []:
            if p.get("name") == name:
                return int(p["hostPort"])
    return None


@dataclass
class PodLedger:
    """Every version of every render pod the run saw (a watch), to count duplicates after the fact."""

    core: Any
    namespace: str
    sessions_of_pod: dict[str, set[str]] = field(default_factory=dict)
    pods_of_session: dict[str, set[str]] = field(default_factory=dict)
    endpoints: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    """(node, handshake host port) -> pods bound there."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _informer: Informer | None = None

    def start(self) -> PodLedger:
        self._informer = Informer(
            self.core.list_namespaced_pod,
            on_event=self._seen,
            namespace=self.namespace,
            label_selector=SELECTOR,
        ).start()
        return self

    def stop(self) -> None:
        if self._informer is not None:
            self._informer.stop()

    def _seen(self, kind: str, pod: Obj) -> None:
        # By name: a pod the backend recreates under its name on other ports (a port clash) is the same placement.
        name = pod["metadata"]["name"]
        session = (pod["metadata"].get("annotations") or {}).get(SESSION_ID_ANNOTATION)
        node, port = pod["spec"].get("nodeName"), _host_port(pod, "handshake")
        with self._lock:
            if session:
                self.sessions_of_pod.setdefault(name, set()).add(session)
                self.pods_of_session.setdefault(session, set()).add(name)
            if node and port is not None:
                self.endpoints.setdefault((node, port), set()).add(name)

    def duplicates(self) -> dict[str, list[str]]:
        """What would be a duplicate: a pod given to two sessions, a session given two pods, a (node, port) given to
        two pods. Empty lists when there is none."""
        with self._lock:
            return {
                "pods with two sessions": [f"{p}: {sorted(s)}" for p, s in self.sessions_of_pod.items() if len(s) > 1],
                "sessions with two pods": [f"{s}: {sorted(p)}" for s, p in self.pods_of_session.items() if len(p) > 1],
                "(node, port) handed out twice": [
                    f"{n}:{port}: {sorted(p)}" for (n, port), p in self.endpoints.items() if len(p) > 1
                ],
            }
