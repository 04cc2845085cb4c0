"""The official Azure SDK, unmodified, drives a real openrr over HTTPS through a session's whole life."""

from __future__ import annotations

import uuid

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mixedreality.remoterendering import RenderingSessionSize, RenderingSessionStatus

from tests.harness import Service, wait_for


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_full_lifecycle(service: Service) -> None:
    client = service.sdk()
    sid = _id("sdk-life")
    poller = client.begin_rendering_session(session_id=sid, size=RenderingSessionSize.STANDARD, lease_time_minutes=15)
    session = poller.result(timeout=30)
    assert poller.done()
    assert session.status == RenderingSessionStatus.READY
    assert session.id == sid and session.size == "Standard" and session.lease_time_minutes == 15
    assert session.hostname == "127.0.0.1"
    assert 49152 <= session.handshake_port <= 65534 and 49152 <= session.arr_inspector_port <= 65534
    assert session.teraflops == pytest.approx(8.1)
    assert session.elapsed_time_minutes == 0
    assert session.created_on is not None

    # Ready means the render server really answers: ask it ourselves.
    health = httpx.get(
        f"https://{session.hostname}:{session.handshake_port}/health", verify=service.tls, timeout=5
    ).json()
    assert health == {"status": "ok"}
    status = httpx.get(
        f"https://{session.hostname}:{session.arr_inspector_port}/api/status",
        headers={"Authorization": f"Bearer {service.token()}"},
        verify=service.tls,
        timeout=5,
    ).json()
    assert status["sessionId"] == sid and status["accountId"] == service.account_id
    inspector = httpx.get(f"https://{session.hostname}:{session.arr_inspector_port}/", verify=service.tls)
    assert inspector.status_code == 200 and "openrr" in inspector.text

    got = client.get_rendering_session(session_id=sid)
    assert got.status == RenderingSessionStatus.READY and got.handshake_port == session.handshake_port

    extended = client.update_rendering_session(session_id=sid, lease_time_minutes=30)
    assert extended.lease_time_minutes == 30
    assert client.get_rendering_session(session_id=sid).lease_time_minutes == 30

    listed = {s.id: s for s in client.list_rendering_sessions()}
    assert sid in listed and listed[sid].status == RenderingSessionStatus.READY

    assert client.stop_rendering_session(session_id=sid) is None
    stopped = client.get_rendering_session(session_id=sid)
    assert stopped.status == RenderingSessionStatus.STOPPED
    assert stopped.hostname is None and stopped.handshake_port is None  # ARR dropped them once stopped
    assert stopped.teraflops == pytest.approx(8.1)
    assert sid not in {s.id for s in client.list_rendering_sessions()}

    # The render server process is gone, not just forgotten.
    def refused() -> bool:
        try:
            httpx.get(f"https://127.0.0.1:{session.handshake_port}/health", verify=service.tls, timeout=2)
        except httpx.ConnectError:
            return True
        return False

    wait_for(refused, 15, "the stopped session's render server to go away")


def test_lowercase_size_is_echoed_canonically(service: Service) -> None:
    client = service.sdk()
    sid = _id("sdk-lower")
    session = client.begin_rendering_session(session_id=sid, size="premium", lease_time_minutes=5).result(30)
    assert session.size == "Premium" and session.status == RenderingSessionStatus.READY
    client.stop_rendering_session(session_id=sid)


def test_error_mappings(service: Service) -> None:
    client = service.sdk()
    with pytest.raises(ResourceNotFoundError):
        client.get_rendering_session(session_id="no-such-session")
    with pytest.raises(ResourceNotFoundError):
        client.stop_rendering_session(session_id="no-such-session")
    with pytest.raises(ResourceNotFoundError):
        client.update_rendering_session(session_id="no-such-session", lease_time_minutes=20)

    sid = _id("sdk-conflict")
    first = client.begin_rendering_session(session_id=sid, size="Standard", lease_time_minutes=5)
    # An identical retry is answered 200 with the same session (idempotent PUT) ...
    again = client.begin_rendering_session(session_id=sid, size="Standard", lease_time_minutes=5)
    assert again.result(30).id == sid
    # ... different settings under the same id are a conflict.
    with pytest.raises(ResourceExistsError):
        client.begin_rendering_session(session_id=sid, size="Premium", lease_time_minutes=5)
    first.result(30)

    with pytest.raises(HttpResponseError) as shorter:
        client.update_rendering_session(session_id=sid, lease_time_minutes=4)
    assert shorter.value.status_code == 422 and shorter.value.error.code == "UnprocessableEntity"

    with pytest.raises(HttpResponseError) as negative:
        client.begin_rendering_session(session_id=_id("neg"), size="Standard", lease_time_minutes=-4)
    assert negative.value.status_code == 400
    assert negative.value.error.message == "The maxLeaseTimeMinutes value cannot be negative."
    client.stop_rendering_session(session_id=sid)


def test_sdk_token_exchange_and_other_account_isolation(service: Service) -> None:
    from tests.harness import create_account

    other = create_account(service.data_dir)
    mine = service.sdk()
    theirs = service.sdk(account_id=other["accountId"], key=other["secondaryKey"])
    sid = _id("sdk-iso")
    mine.begin_rendering_session(session_id=sid, size="Standard", lease_time_minutes=5).result(30)
    # The other account sees nothing of it, under the same id.
    with pytest.raises(ResourceNotFoundError):
        theirs.get_rendering_session(session_id=sid)
    assert sid not in {s.id for s in theirs.list_rendering_sessions()}
    with pytest.raises(ResourceNotFoundError):
        theirs.stop_rendering_session(session_id=sid)
    assert mine.get_rendering_session(session_id=sid).status == RenderingSessionStatus.READY
    mine.stop_rendering_session(session_id=sid)
