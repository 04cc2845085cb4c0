"""Self-expiry of render servers (render/orphan.py), with real processes: a live control plane keeps even its idle
warm server alive; once it is SIGKILLed and never restarts, its render servers stop themselves."""

from __future__ import annotations

import time
from pathlib import Path

from tests.harness import (
    Service,
    free_port,
    process_gone,
    render_process_pids,
    render_server_pids,
    wait_for,
    wait_status,
)

API = {"api-version": "2021-01-01"}

ORPHAN_TIMEOUT_S = 3.0
"""Short, so that the test is; the control plane's keep-alive comes every 5 reconcile passes (1 s here)."""
EXIT_SLACK_S = 5.0
"""After the timeout: the watch's period (a tenth of it), a graceful stop (1 s) and the render process's exit, on 2
CPUs shared with other tests."""


def _warm_pids(svc: Service) -> set[int]:
    return {int(h["pid"]) for h in svc.host_records() if h.get("session_id") is None}


def test_live_control_plane_keeps_warm_servers_and_dead_one_leaves_no_render_server(base_dir: Path) -> None:
    data = base_dir / "orphans"
    args = [
        "--warm-pool", "Standard=1",
        "--render-orphan-timeout-s", str(ORPHAN_TIMEOUT_S),
        "--reconcile-interval-s", "0.2",
    ]  # fmt: skip
    svc = Service(data, free_port(), args).start()
    try:
        (warm,) = wait_for(lambda: _warm_pids(svc) or None, 30, "a warm render server")
        # (a) A warm server hears from no session: only maintain's keep-alive reaches it. The test must prove it
        # stays alive for a span, so it waits that span: three orphan timeouts.
        time.sleep(3 * ORPHAN_TIMEOUT_S)
        assert not process_gone(warm), "the live control plane's warm server expired as an orphan"
        assert _warm_pids(svc) == {warm}

        # (b) A Ready session's server (and the refilled warm one) once the control plane is SIGKILLed.
        # Not harness.ready_session: its stop on leaving needs the control plane this test kills.
        with svc.api() as api:
            r = api.put(
                f"/accounts/{svc.account_id}/sessions/orphan",
                params=API,
                json={"maxLeaseTimeMinutes": 10, "size": "Standard"},
            )
            assert r.status_code == 201, r.text
            wait_status(api, svc.account_id, "orphan", "Ready")
        record = svc.host_record("orphan")
        server = int(record["pid"])
        wait_for(lambda: len(svc.render_server_pids()) == 2, 30, "the warm pool refilled")
        svc.kill9()
        killed = time.monotonic()
        wait_for(
            lambda: process_gone(server),
            ORPHAN_TIMEOUT_S + EXIT_SLACK_S,
            "the Ready session's render server to stop itself",
            interval=0.1,
        )
        # Not at once: it waited out the timeout (the kill9 itself stops nothing of it).
        assert time.monotonic() - killed >= ORPHAN_TIMEOUT_S - 1.0
    finally:
        if svc.proc is not None and svc.proc.poll() is None:
            svc.kill9()
    wait_for(lambda: not render_server_pids(data), ORPHAN_TIMEOUT_S + EXIT_SLACK_S, "every render server to stop")
    wait_for(lambda: not render_process_pids(data), 5, "every render process to exit")
    log = (data / "logs" / f"render-{record['host_id']}.log").read_text()
    assert "no request from the control plane" in log and "orphaned (exit code 75)" in log, log[-2000:]
