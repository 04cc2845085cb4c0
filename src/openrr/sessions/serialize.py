"""Session JSON for the 2021-01-01 API: ARR's names, null fields omitted."""

from __future__ import annotations

from typing import Any

from openrr.sessions.model import SessionView
from openrr.sessions.state import SessionStatus


def session_json(v: SessionView) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": v.id,
        "creationTime": v.creation_time.isoformat(timespec="microseconds"),
        "elapsedTimeMinutes": v.elapsed_minutes,
        "maxLeaseTimeMinutes": v.max_lease_minutes,
        "size": v.size.value,
        "status": v.status.value,
    }
    if v.hostname is not None:
        doc["hostname"] = v.hostname
        doc["handshakePort"] = v.handshake_port
        doc["arrInspectorPort"] = v.inspector_port
    if v.teraflops is not None:
        doc["teraflops"] = v.teraflops
    # Only an Error carries `error`: the official SDK's poller raises on any non-null error.
    if v.status is SessionStatus.ERROR and v.error_code:
        doc["error"] = {"code": v.error_code, "message": v.error_message or ""}
    return doc
