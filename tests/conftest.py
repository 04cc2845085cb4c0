from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Service, free_port, render_server_pids, wait_for


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("openrr")
    yield base
    # Every test's services are stopped by now: no render server of this run may be left.
    wait_for(lambda: not render_server_pids(base), 15, "every render server of the run to exit (no orphans)", 0.2)


@pytest.fixture(scope="session")
def service(base_dir: Path) -> Iterator[Service]:
    """One service shared by the tests that don't stop or kill it."""
    svc = Service(
        base_dir / "shared",
        free_port(),
        ["--capacity", "Standard=16,Premium=4", "--warm-pool", "Standard=1", "--rate-limit-per-s", "0"],
    ).start()
    yield svc
    assert svc.stop() == 0, svc.log()
    assert not svc.render_server_pids(), "render servers left after a clean shutdown"
