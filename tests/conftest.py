from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.azurite import Azurite, azurite, azurite_available
from tests.harness import Service, free_port, ready_session, render_process_pids, render_server_pids, wait_for
from tests.k8s.fixtures import kube_cluster, kube_namespace, node_agent
from tests.models import serve_directory, write_models

__all__ = ["kube_cluster", "kube_namespace", "node_agent"]  # fixtures of tests/k8s/fixtures.py, used by name

UNIT_DIR = Path(__file__).parent / "unit"
PROCESS_FIXTURES = {"base_dir", "service", "api", "made", "session", "blob", *__all__}
"""The fixtures below that start the service, render servers or Azurite: no test in tests/unit/ may use them."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test outside tests/unit/ is end to end (it may start the service, render servers, workers, Azurite,
    PostgreSQL or Chromium): marked `e2e`, so that `pytest -m "not e2e"` runs the fast layer alone. By place, not
    by hand, so that a new process-level test cannot slip into the quick loop unmarked. A test in tests/unit/ runs
    in process (at most a short-lived interpreter or tool; one that runs a tool such as assimp marks itself e2e)."""
    for item in items:
        if not item.path.is_relative_to(UNIT_DIR):
            item.add_marker(pytest.mark.e2e)
        elif used := PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} is in tests/unit/ but uses {sorted(used)}: move it out of unit/")


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("openrr")
    yield base
    # Every test's services are stopped by now: no render server of this run may be left.
    wait_for(lambda: not render_server_pids(base), 15, "every render server of the run to exit (no orphans)", 0.2)
    wait_for(lambda: not render_process_pids(base), 5, "every render process of the run to exit (no orphans)", 0.2)


@pytest.fixture(scope="session")
def service(base_dir: Path) -> Iterator[Service]:
    """One service shared by the tests that don't stop or kill it."""
    svc = Service(
        base_dir / "shared",
        free_port(),
        # Test models and Azurite are served on loopback ports, refused unless allowed (tests/security/test_ssrf.py).
        [
            *("--capacity", "Standard=16,Premium=4", "--warm-pool", "Standard=1", "--rate-limit-per-s", "0"),
            *("--fetch-allow", "127.0.0.1"),
        ],
    ).start()
    yield svc
    assert svc.stop() == 0, svc.log()
    assert not svc.render_server_pids(), "render servers left after a clean shutdown"


@pytest.fixture
def api(service: Service) -> Iterator[httpx.Client]:
    """An HTTPS client of the shared service with an STS token of its default account."""
    with service.api() as client:
        yield client


@pytest.fixture
def made(service: Service, api: httpx.Client) -> Iterator[list[str]]:
    """Ids of sessions a test creates in the default account: stopped afterwards whatever happened."""
    ids: list[str] = []
    yield ids
    for sid in ids:
        r = api.post(f"/accounts/{service.account_id}/sessions/{sid}/:stop", params={"api-version": "2021-01-01"})
        assert r.status_code in (204, 404), r.text


@pytest.fixture(scope="session")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs of the test models (tests/models.py) on a real local HTTP server."""
    paths = write_models(tmp_path_factory.mktemp("models"))
    with serve_directory(next(iter(paths.values())).parent) as base:
        yield {name: f"{base}/{path.name}" for name, path in paths.items()}


@pytest.fixture
def session(service: Service) -> Iterator[dict[str, Any]]:
    """A Ready session of the shared service (its 2021 API document), stopped afterwards."""
    with ready_session(service, "render") as doc:
        yield doc


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite (the Azure Storage emulator) on loopback, one per test module. Skipped only on a developer machine
    without it (`npm install`); CI always has it."""
    if azurite_available() is not None and not os.environ.get("CI"):
        pytest.skip(str(azurite_available()))
    with azurite(tmp_path_factory.mktemp("azurite")) as az:
        yield az
