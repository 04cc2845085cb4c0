"""Host port pairs for render pods (Agones' dynamic port policy): P for the handshake, P + 1 for the inspector,
from a configured range, never a pair any existing render pod holds on any node."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any


def pod_host_ports(pod: Any) -> set[int]:
    """Every hostPort a pod (V1Pod) asks for."""
    return {
        p.host_port for c in (pod.spec.containers if pod.spec else None) or [] for p in c.ports or [] if p.host_port
    }


def handshake_port(pod: Any) -> int | None:
    """The pod's handshake host port (its container port named `handshake`)."""
    for c in pod.spec.containers or []:
        for p in c.ports or []:
            if p.name == "handshake":
                return int(p.host_port or p.container_port)
    return None


def free_pair(port_range: tuple[int, int], used: Iterable[int], rng: random.Random | None = None) -> int:
    """A random P (P and P + 1 both in the range and not in `used`). Every existing pod's ports count, on every
    node, terminating ones too: an endpoint of a pod on a NotReady node (which may still run there) is never handed
    out again while that pod exists. Random, not lowest-first: replicas that allocate at the same moment rarely
    pick the same pair (and when they do, the scheduler puts them on different nodes or leaves one Unschedulable,
    which the backend replaces with another pair).

    Raises RuntimeError if the range is full."""
    low, high = port_range
    taken = set(used)
    candidates = [p for p in range(low, high, 2) if p not in taken and p + 1 not in taken]
    if not candidates:
        raise RuntimeError(f"no free host port pair left in {low}-{high}: every pair is held by a render pod")
    return (rng or random).choice(candidates)
