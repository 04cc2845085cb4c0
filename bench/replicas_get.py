"""GET session throughput with two `openrr serve` replicas on one PostgreSQL, against one replica, in the same run.

Run from the repository root:  python bench/replicas_get.py [--duration 5] [--connections 32] [--rounds 3]

A throwaway PostgreSQL (tests/postgres.py) and two replicas (HTTPS, local backend, separate data directories,
shared CA directory and secrets key, --rate-limit-per-s 0, no warm pool) serve one Ready session. Each round loads

* one replica:  one `wrk` (one thread, --connections kept-alive HTTPS connections) against replica A alone;
* two replicas: two `wrk` at once, --connections / 2 each, one per replica (a round-robin balancer's split);

with GET /accounts/{id}/sessions/{sid}?api-version=2021-01-01 and an STS bearer token. Figures are medians over
rounds (interleaved, so drift on a shared machine hits both alike). Everything shares this machine's cores: the
replicas, PostgreSQL and wrk; the ratio says what a second replica buys here, not on a machine of its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import Service, free_port, wait_for  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402

from bench.api_throughput import API, Run, Target, check_target, load, median_run  # noqa: E402
from bench.common import print_header, stop_service  # noqa: E402


class Replica(Service):
    """A Service whose certificate is the shared CA's (--ca-dir)."""

    ca: Path = Path()

    @property
    def cert(self) -> str:
        return str(self.ca / "cert.pem")


@contextmanager
def replicas(work: Path, url: str) -> Iterator[tuple[Replica, Replica]]:
    os.environ["OPENRR_SECRETS_KEY"] = Fernet.generate_key().decode()
    ca = work / "ca"
    common = ["--database-url", url, "--ca-dir", str(ca), "--rate-limit-per-s", "0", "--warm-pool", "Standard=0",
              "--capacity", "Standard=2", "--log-level", "warning"]  # fmt: skip
    a = Replica(work / "a", free_port(), [*common, "--replica-id", "replica-a"])
    b = Replica(work / "b", free_port(), [*common, "--replica-id", "replica-b"])
    a.ca = b.ca = ca
    try:
        a.start()
        b.account_id, b.key = a.account_id, a.key
        b.start()
        yield a, b
    finally:
        for r in (b, a):
            stop_service(r, r.data_dir)
        os.environ.pop("OPENRR_SECRETS_KEY", None)


def target(svc: Replica, sid: str, token: str) -> Target:
    assert svc.proc is not None
    return Target(
        f"GET session on {svc.port}",
        f"{svc.endpoint}/accounts/{svc.account_id}/sessions/{sid}?api-version={API['api-version']}",
        {"Authorization": f"Bearer {token}"},
        psutil.Process(svc.proc.pid),
        '"Ready"',
    )


def together(targets: list[Target], work: Path, connections: int, duration_s: float) -> list[Run]:
    """Load every target at once (one wrk each); their runs."""
    runs: list[Run | None] = [None] * len(targets)

    def one(i: int) -> None:
        runs[i] = load(targets[i], work, connections, duration_s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in runs), "a wrk run failed"
    return [r for r in runs if r is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_header("replicas_get")
    work = Path(tempfile.mkdtemp(prefix="openrr-bench-replicas-"))
    # Its own directory: postgres_server hands it to the `postgres` user, who cannot enter `work` (0700, root's).
    pg_base = Path(tempfile.mkdtemp(prefix="openrr-bench-pg-"))
    try:
        with postgres_server(pg_base) as url, replicas(work, url) as (a, b):
            api = a.api()
            sid = "bench-get"
            api.put(
                f"/accounts/{a.account_id}/sessions/{sid}",
                params=API,
                json={"maxLeaseTimeMinutes": 30, "size": "Standard"},
            ).raise_for_status()
            wait_for(
                lambda: api.get(f"/accounts/{a.account_id}/sessions/{sid}", params=API).json()["status"] == "Ready",
                60,
                "the session to be Ready",
            )
            token = a.token()
            ta, tb = target(a, sid, token), target(b, sid, token)
            check_target(ta, a)
            check_target(tb, b)
            one: list[Run] = []
            two: list[float] = []
            for _ in range(args.rounds):
                one.append(load(ta, work, args.connections, args.duration))
                pair = together([ta, tb], work, args.connections // 2, args.duration)
                two.append(sum(r.rps for r in pair))
            api.post(f"/accounts/{a.account_id}/sessions/{sid}/:stop", params=API)
        single = median_run(one)
        both = statistics.median(two)
        print(f"GET session, PostgreSQL, {args.connections} connections, {args.rounds} rounds of {args.duration:g} s:")
        print(
            f"  one replica   {single.rps:8.0f} req/s  (p50 {single.p50 * 1000:.1f} ms; per round: "
            f"{', '.join(f'{r.rps:.0f}' for r in one)})"
        )
        print(f"  two replicas  {both:8.0f} req/s  (sum of both; per round: {', '.join(f'{x:.0f}' for x in two)})")
        print(f"  ratio two/one: {both / single.rps:.2f}x  on {psutil.cpu_count()} shared cores")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_base, ignore_errors=True)


if __name__ == "__main__":
    main()
