"""Self-expiry of orphaned render servers: render/orphan.py's watch, and --orphan-timeout-s from the control
plane's setting to both backends' argv. In process; nothing is started (tests/test_orphan_expiry.py runs it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from openrr.config import Settings
from openrr.hosting.backend import SessionKey
from openrr.hosting.factory import server_limits
from openrr.hosting.kube_pod import PodTemplate, render_pod
from openrr.render.control import RenderServerArgs
from openrr.render.orphan import OrphanWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_watch_is_due_only_after_a_full_timeout_without_the_control_plane() -> None:
    clock = Clock()
    watch = OrphanWatch(10.0, clock)
    clock.now += 9.9
    assert not watch.due()
    watch.heard()  # a request with the control secret restarts the count
    clock.now += 9.9
    assert not watch.due()
    clock.now += 0.1
    assert watch.due() and watch.silent_s() == pytest.approx(10.0)


def test_the_watch_stops_the_server_once_and_says_it_is_orphaned(caplog: pytest.LogCaptureFixture) -> None:
    stops: list[float] = []

    async def run() -> float:
        watch = OrphanWatch(0.2)
        # Heard for a while first: the stop must come a full timeout after the last request, not after the start.
        for _ in range(3):
            await asyncio.sleep(0.1)
            watch.heard()
        heard_last = asyncio.get_running_loop().time()
        await watch.watch(lambda: stops.append(asyncio.get_running_loop().time()))
        assert watch.orphaned
        return stops[0] - heard_last

    with caplog.at_level("WARNING", logger="openrr.render"):
        after = asyncio.run(run())
    assert len(stops) == 1
    # Not before the timeout; within a tenth of it more (the watch's period), plus scheduling slack on 2 shared CPUs.
    assert 0.2 <= after < 0.2 + 0.02 + 0.3
    assert "no request from the control plane" in caplog.text


def _pod_args(settings: Settings) -> RenderServerArgs:
    template = PodTemplate(image="i", stop_grace_s=5, sts_secret="s", limits=server_limits(settings))
    (container,) = render_pod(template, "openrr-render-abcdefghij", "Standard", 30000, SessionKey("a", "s"))["spec"][
        "containers"
    ]
    return RenderServerArgs.from_argv([t for a in container["args"] for t in a.split("=", 1)])


def test_the_setting_reaches_local_and_pod_servers_as_the_flag(tmp_path: Path) -> None:
    default = Settings(data_dir=tmp_path)
    assert default.render_orphan_timeout_s == 300.0
    assert server_limits(default).orphan_timeout_s == 300.0
    assert _pod_args(default).orphan_timeout_s == 300.0
    # The local backend builds RenderServerArgs from the same limits (hosting/local.py's **limits.as_args()).
    local = RenderServerArgs(host_id="h", ports_file=Path("p"), **server_limits(default).as_args())
    assert "--orphan-timeout-s" in local.to_argv()
    # 0: never (the flag is left out; the server's default is never).
    never = Settings(data_dir=tmp_path, render_orphan_timeout_s=0)
    assert server_limits(never).orphan_timeout_s is None
    assert _pod_args(never).orphan_timeout_s is None
    with pytest.raises(ValueError, match="render_orphan_timeout_s"):
        Settings(data_dir=tmp_path, render_orphan_timeout_s=-1)


def test_the_timeout_must_outlast_the_keep_alive(tmp_path: Path) -> None:
    """Warm servers are reached at maintenance only (every 5 reconcile passes): two of its periods at least."""
    Settings(data_dir=tmp_path, render_orphan_timeout_s=3, reconcile_interval_s=0.2)
    with pytest.raises(ValueError, match="must be at least 10 s"):
        Settings(data_dir=tmp_path, render_orphan_timeout_s=9)
    # A shared (Kubernetes) pool is kept alive by the maintenance lease's holder; another takes it over after the
    # session lease.
    with pytest.raises(ValueError, match="must be at least 20 s"):
        Settings(data_dir=tmp_path, render_orphan_timeout_s=15, hosting="kubernetes")
