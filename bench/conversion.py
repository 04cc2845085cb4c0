"""Conversion throughput, and loading the converted .arrAsset against loading its source GLB.

Run from the repository root:  python bench/conversion.py [--triangles 1000000] [--rounds 5] [--no-session]

The model is a grid of icospheres saved as GLB with normals (bench/render_common.py `sphere_grid`), ~1M triangles.

(a) CONVERSION: `openrr.conversions.converter.convert` on the GLB, --rounds times; triangles per second from the
    median time (reading, merging, building the collision structure, writing .arrAsset + info + result).
(b) LOAD IN PROCESS: `openrr.render.model_loader.load_model` of the GLB (the baseline) and of the .arrAsset,
    interleaved, --rounds each; and load + `RayCaster.add`, which a session does for every model (the asset brings
    its collision structure, the GLB's triangles must be sorted).
(c) LOAD THROUGH A SESSION: a real `openrr serve` (through tests.harness), a Standard session created through the
    REST API, the Python client sends `loadModel` with the model's URL on a local HTTP server and waits for the
    reply (fetch, parse, GPU upload, ray-cast structure); GLB and .arrAsset interleaved, each unloaded after.

Ratios are baseline time / asset time ("× faster") of the same run. Goal (issue): asset load at least 2× faster.
Every process it starts is stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.local_files import load_model  # noqa: E402
from tests.models import serve_directory  # noqa: E402

from bench.common import bench_workdir, load_average, print_header  # noqa: E402
from bench.render_common import ready_session, render_service, sphere_grid  # noqa: E402
from openrr.client.render_session import RenderSessionClient  # noqa: E402
from openrr.conversions.converter import convert  # noqa: E402
from openrr.model.raycast import RayCaster  # noqa: E402

GOAL = 2.0


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ms(values: list[float]) -> str:
    low, high = min(values) * 1000, max(values) * 1000
    return f"median {statistics.median(values) * 1000:7.1f} ms  (min {low:7.1f}, max {high:7.1f})"


def load_and_add(source: str) -> None:
    RayCaster().add(1, load_model(source))


async def through_session(work: Path, glb: Path, asset: Path, rounds: int) -> tuple[list[float], list[float]]:
    glb_s: list[float] = []
    asset_s: list[float] = []
    with serve_directory(glb.parent) as base, render_service(work / "service") as svc, ready_session(svc) as doc:
        client = await RenderSessionClient.connect(doc["hostname"], doc["handshakePort"], svc.token(), ca=svc.cert)
        try:
            print(f"  session {doc['id']} Ready; renderer: {client.welcome['renderer']}", flush=True)
            for round_no in range(rounds + 1):  # round 0 warms up both paths (imports, page cache)
                row = []
                for path, times in ((glb, glb_s), (asset, asset_s)):
                    t0 = time.perf_counter()
                    loaded = await client.load_model(f"{base}/{path.name}")
                    elapsed = time.perf_counter() - t0
                    await client.unload_model(loaded["entityId"])
                    if round_no:
                        times.append(elapsed)
                    row.append(f"{path.suffix} {elapsed * 1000:7.1f} ms")
                print(f"    round {round_no}{' (warm-up)' if not round_no else ''}: {'  '.join(row)}", flush=True)
        finally:
            await client.close()
    return glb_s, asset_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triangles", type=int, default=1_000_000, help="model size (default 1000000)")
    parser.add_argument("--rounds", type=int, default=5, help="repetitions of each measurement (default 5)")
    parser.add_argument("--no-session", action="store_true", help="skip (c), the load through a real session")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (models, logs)")
    args = parser.parse_args()

    print_header("conversion")
    started = time.perf_counter()
    with bench_workdir("openrr-bench-conversion-", args.keep) as work:
        models = work / "models"
        models.mkdir()
        model = sphere_grid(models, "bench", args.triangles)
        glb = model.path
        asset = models / "spheres_bench.arrAsset"
        size = glb.stat().st_size / 1e6
        print(f"  model: {model.triangles:,} triangles, {len(model.vertices):,} vertices, GLB {size:.1f} MB")

        print("\n(a) conversion (GLB → .arrAsset)", flush=True)
        convert_s = []
        for round_no in range(1, args.rounds + 1):
            outcome = None

            def once() -> None:
                nonlocal outcome
                outcome = convert(models, glb.name, models, asset.name)

            convert_s.append(timed(once))
            assert outcome is not None and outcome.succeeded, outcome
            print(f"    round {round_no}: {convert_s[-1]:.2f} s", flush=True)
        throughput = model.triangles / statistics.median(convert_s)
        print(
            f"  {ms(convert_s)}  → {throughput / 1e6:.2f} M triangles/s; .arrAsset {asset.stat().st_size / 1e6:.1f} MB"
        )

        print("\n(b) load in process", flush=True)
        loads: dict[str, list[float]] = {"glb": [], "asset": [], "glb+ray": [], "asset+ray": []}
        load_model(str(glb)), load_model(str(asset))  # warm-up: imports and page cache for both
        for _ in range(args.rounds):
            loads["glb"].append(timed(lambda: load_model(str(glb))))
            loads["asset"].append(timed(lambda: load_model(str(asset))))
            loads["glb+ray"].append(timed(lambda: load_and_add(str(glb))))
            loads["asset+ray"].append(timed(lambda: load_and_add(str(asset))))
        for key, values in loads.items():
            print(f"  {key:<10} {ms(values)}")
        ratio_load = statistics.median(loads["glb"]) / statistics.median(loads["asset"])
        ratio_ray = statistics.median(loads["glb+ray"]) / statistics.median(loads["asset+ray"])

        ratio_session = None
        if not args.no_session:
            print("\n(c) loadModel through a real session (local HTTP server)", flush=True)
            glb_s, asset_s = asyncio.run(through_session(work, glb, asset, args.rounds))
            print(f"  glb        {ms(glb_s)}")
            print(f"  asset      {ms(asset_s)}")
            ratio_session = statistics.median(glb_s) / statistics.median(asset_s)

    print()
    print(f"results ({model.triangles:,} triangles; ratio = GLB median / .arrAsset median, same run)")
    print(f"  conversion throughput                     {throughput / 1e6:6.2f} M triangles/s")
    print(f"  load_model                                {ratio_load:6.2f}x faster")
    print(f"  load_model + RayCaster.add                {ratio_ray:6.2f}x faster")
    if ratio_session is not None:
        print(f"  loadModel through a session               {ratio_session:6.2f}x faster")
    print(f"goal (issue): asset load >= {GOAL:g}x faster than the source GLB")
    ok = ratio_load >= GOAL and (ratio_session is None or ratio_session >= GOAL)
    print(f"  load_model: {'MET' if ratio_load >= GOAL else 'NOT MET'}", end="")
    if ratio_session is not None:
        print(f"; through a session: {'MET' if ratio_session >= GOAL else 'NOT MET'}", end="")
    print(f"\n  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
