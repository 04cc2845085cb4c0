"""Render pods as a test sees them: those of a namespace, the one of a session, and a frame streamed from a
session's pod (hostname:handshakePort) with the Python client."""

from __future__ import annotations

import asyncio
from typing import Any

from openrr.client.render_session import RenderSessionClient
from openrr.hosting.kube_pod import SELECTOR, SESSION_ID_ANNOTATION
from tests.harness import Service


def render_pods(core: Any, ns: str) -> list[Any]:
    return list(core.list_namespaced_pod(ns, label_selector=SELECTOR).items)


def pod_of(core: Any, ns: str, sid: str) -> Any:
    """The session's render pod; None if it has none, or more than one."""
    pods = [p for p in render_pods(core, ns) if (p.metadata.annotations or {}).get(SESSION_ID_ANNOTATION) == sid]
    return pods[0] if len(pods) == 1 else None


def frame(svc: Service, doc: dict[str, Any]) -> tuple[int, int]:
    """(height, width) of the first frame the session `doc` (a session document: hostname, handshakePort) streams."""

    async def scenario() -> tuple[int, int]:
        async with await RenderSessionClient.connect(
            doc["hostname"], doc["handshakePort"], svc.token(), ca=svc.cert
        ) as c:
            got = await c.next_frame()
            return got.image.shape[0], got.image.shape[1]

    return asyncio.run(scenario())
