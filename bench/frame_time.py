"""Frame time of the renderer alone at 1280×720: issue 11's PBR + IBL + anti-aliasing against the shading before it
(the renderer of commit 8b09820~1, loaded from git into a temporary module), dense meshes lit per vertex (the
default, renderer.PER_PIXEL_BELOW) and forced per pixel, and a model split into 10,000 parts against the same model
as one mesh. Everything in one run, interleaved round by round (the machine is shared, so
each figure is the median over rounds), ratios against the baseline measured in the same run.

    .venv/bin/python -m bench.frame_time [--rounds 5] [--sizes 100k,1M]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import trimesh

from bench import render_common
from openrr.model.mesh import Material, MeshData, ModelData, Node
from openrr.render.camera import Camera
from openrr.render.lighting import Light
from openrr.render.renderer import PER_PIXEL_BELOW, Renderer

WIDTH, HEIGHT = 1280, 720
BASELINE_COMMIT = "8b09820~1"
SIZES = {"100k": 100_000, "1M": 1_000_000}  # render_common rounds to whole spheres of 5120 triangles
PARTS = 10_000
CAMERA = Camera(position=(0.0, 1.4, 2.0), target=(0.0, 0.0, 0.0), fov_y_deg=60.0)
GREY = Material(name="grey", base_color=(0.6, 0.6, 0.6, 1.0), metallic=0.0, roughness=0.5, double_sided=True)


@dataclass
class OldMesh:
    """What the baseline renderer reads (its MeshLike): base colour baked into the vertex colours."""

    positions: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    indices: np.ndarray | None
    uvs: np.ndarray | None = None
    texture: np.ndarray | None = None
    double_sided: bool = True
    unlit: bool = False


@dataclass
class OldModel:
    name: str
    meshes: list[OldMesh]
    bounds_min: np.ndarray
    bounds_max: np.ndarray


def sphere_grid(triangles: int) -> trimesh.Trimesh:
    """render_common's grid of icospheres (the render benchmarks' models) as a mesh."""
    with tempfile.TemporaryDirectory() as root:
        grid = render_common.sphere_grid(Path(root), "grid", triangles)
    return trimesh.Trimesh(grid.vertices, grid.indices, vertex_normals=grid.normals, process=False)


def new_model(tm: trimesh.Trimesh, parts: int = 1) -> ModelData:
    """The mesh as `parts` parts (nodes), each with its own vertices, or as one mesh of those same vertices."""
    faces = np.asarray(tm.faces)
    chunks = np.array_split(np.arange(len(faces)), parts)
    meshes = []
    for node, chunk in enumerate(chunks, start=1 if parts > 1 else 0):
        used, local = np.unique(faces[chunk], return_inverse=True)
        meshes.append(
            MeshData(
                positions=np.asarray(tm.vertices[used], dtype=np.float32),
                normals=np.asarray(tm.vertex_normals[used], dtype=np.float32),
                colors=np.ones((len(used), 4), dtype=np.float32),
                indices=local.reshape(-1, 3).astype(np.uint32),
                node=node,
            )
        )
    nodes = [Node("root", -1)] + [Node(f"part{i}", 0) for i in range(parts)] if parts > 1 else []
    lo, hi = np.asarray(tm.bounds, dtype=np.float32)
    return ModelData("grid", meshes, lo, hi, len(faces), 0, materials=[GREY], nodes=nodes)


def one_mesh_of(split: ModelData) -> ModelData:
    """The split model's very vertices as one mesh of the root node."""
    base = np.cumsum([0] + [len(m.positions) for m in split.meshes[:-1]])
    mesh = MeshData(
        positions=np.concatenate([m.positions for m in split.meshes]),
        normals=np.concatenate([m.normals for m in split.meshes]),
        colors=np.concatenate([m.colors for m in split.meshes]),
        indices=np.concatenate(
            [m.indices + b for m, b in zip(split.meshes, base, strict=True) if m.indices is not None]
        ),
    )
    return ModelData("grid", [mesh], split.bounds_min, split.bounds_max, split.triangles, 0, materials=[GREY])


def old_model(tm: trimesh.Trimesh) -> OldModel:
    n = len(tm.vertices)
    colors = np.tile(np.array([0.6, 0.6, 0.6, 1.0], dtype=np.float32), (n, 1))
    mesh = OldMesh(
        np.asarray(tm.vertices, np.float32), np.asarray(tm.vertex_normals, np.float32), colors, np.asarray(tm.faces)
    )
    lo, hi = np.asarray(tm.bounds, dtype=np.float32)
    return OldModel("grid", [mesh], lo, hi)


def load_baseline() -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BASELINE_COMMIT}:src/openrr/render/renderer.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_renderer.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_renderer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def frame_ms(renderer: Any, frames: int) -> tuple[float, float]:
    """Median wall time and mean process CPU time (llvmpipe's threads included) of render() + RGBA readback, the
    camera set before each frame as a session does. CPU time is the steadier figure on a shared machine."""
    into = np.empty((HEIGHT, WIDTH, 4), dtype=np.uint8)
    for _ in range(2):
        renderer.set_camera(CAMERA)
        renderer.render(into=into)
    times = []
    cpu_start = time.process_time()
    for _ in range(frames):
        renderer.set_camera(CAMERA)
        start = time.perf_counter()
        renderer.render(into=into)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), (time.process_time() - cpu_start) * 1000.0 / frames


def antialiasing_error(tm: trimesh.Trimesh) -> dict[str, float]:
    """RMS error (0-255 levels) of each anti-aliasing mode's frame against 9× supersampling (the scene at 3× the
    width and height, averaged over 3×3 blocks): the quality side of quality per millisecond."""
    model = new_model(tm)
    with Renderer(3 * WIDTH, 3 * HEIGHT) as big:
        big.set_antialiasing("none")
        big.add_model(1, model)
        big.set_camera(CAMERA)
        reference = big.render()[0].astype(np.float64).reshape(HEIGHT, 3, WIDTH, 3, 3).mean(axis=(1, 3))
    errors = {}
    with Renderer(WIDTH, HEIGHT) as renderer:
        renderer.add_model(1, model)
        renderer.set_camera(CAMERA)
        for mode in ("none", "fxaa", "msaa"):
            renderer.set_antialiasing(mode)
            frame = renderer.render()[0].astype(np.float64)
            errors[mode] = float(np.sqrt(np.mean((frame - reference) ** 2)))
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="100k,1M")
    parser.add_argument("--no-parts", action="store_true", help="skip the 10,000-part comparison")
    parser.add_argument("--quality", action="store_true", help="only the anti-aliasing error against supersampling")
    args = parser.parse_args(argv)
    if args.quality:
        for mode, error in antialiasing_error(sphere_grid(SIZES["100k"])).items():
            print(f"100k, AA {mode:4s}: RMS error against 9x supersampling {error:.2f} levels")
        return
    baseline = load_baseline()
    old = baseline.Renderer(WIDTH, HEIGHT)
    forced = Renderer(WIDTH, HEIGHT, per_pixel_below=10**12)
    new = Renderer(WIDTH, HEIGHT)
    shadings = {"per-vertex": new, "per-pixel": forced}
    kind = "software" if new.software else "hardware"
    print(
        f"{new.gl_renderer} ({kind}), {WIDTH}x{HEIGHT}, default AA {new.antialiasing}; baseline: {BASELINE_COMMIT}; "
        f"per-vertex light from {PER_PIXEL_BELOW} triangles per batch"
    )

    configs: dict[str, Callable[[], tuple[float, float]]] = {}
    ids: dict[Any, list[int]] = {old: [], new: [], forced: []}

    def show_only(renderer: Any, model_id: int) -> None:
        for other in ids[renderer]:
            renderer.set_override(other, hidden=other != model_id)

    for model_id, size in enumerate(args.sizes.split(","), start=1):
        tm = sphere_grid(SIZES[size])
        frames = 20 if size == "100k" else 6
        for renderer in ids:
            ids[renderer].append(model_id)
        with old.ctx:
            old.add_model(model_id, old_model(tm))
        for renderer in shadings.values():
            with renderer.ctx:
                renderer.add_model(model_id, new_model(tm))

        def run_old(model_id: int = model_id, frames: int = frames) -> tuple[float, float]:
            with old.ctx:  # two GL contexts in one process: make this one current
                show_only(old, model_id)
                return frame_ms(old, frames)

        configs[f"{size} baseline"] = run_old
        for shading, lights, aa in itertools.product(shadings, (0, 1), ("none", "fxaa")):

            def run_new(
                model_id: int = model_id,
                aa: str = aa,
                lights: int = lights,
                frames: int = frames,
                shading: str = shading,
            ) -> tuple[float, float]:
                renderer = shadings[shading]
                with renderer.ctx:
                    show_only(renderer, model_id)
                    renderer.set_antialiasing(aa)
                    renderer.set_lights([Light("directional", intensity=2.0, direction=(-0.3, -1.0, -0.5))] * lights)
                    return frame_ms(renderer, frames)

            configs[f"{size} {shading} PBR+IBL{' +1 light' if lights else ''}, AA {aa}"] = run_new

    if not args.no_parts:
        split = new_model(sphere_grid(SIZES["1M"]), PARTS)
        ids[new].extend((101, 102))
        with new.ctx:
            new.add_model(101, one_mesh_of(split))
            new.add_model(102, split)
        default_aa = new.antialiasing

        def run_parts(model_id: int, moved: bool = False) -> tuple[float, float]:
            with new.ctx:
                show_only(new, model_id)
                new.set_antialiasing(default_aa)
                new.set_lights([])
                if model_id == 102:
                    delta = np.identity(4)
                    delta[1, 3] = 0.001 if moved else 0.0
                    new.set_node_matrices(102, [1], delta[None])
                return frame_ms(new, 6)

        configs["1M one mesh"] = lambda: run_parts(101)
        configs[f"1M in {PARTS} parts, unchanged"] = lambda: run_parts(102)
        configs[f"1M in {PARTS} parts, one part moved (node-state shaders)"] = lambda: run_parts(102, moved=True)

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, run in configs.items():
            results[name].append(run())
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    wall = {name: statistics.median(v[0] for v in values) for name, values in results.items()}
    cpu = {name: statistics.median(v[1] for v in values) for name, values in results.items()}
    print(f"{'':62s} {'wall ms':>8s} {'cpu ms':>8s}   ratios (wall, cpu)")
    for name in configs:
        size = name.split()[0]
        base = f"{size} baseline"
        ratio = ""
        if base in wall and "parts" not in name and "one mesh" not in name:
            ratio = f"{wall[name] / wall[base]:5.2f}x {cpu[name] / cpu[base]:5.2f}x  vs baseline"
        if "parts" in name:
            ratio = f"{wall[name] / wall['1M one mesh']:5.2f}x {cpu[name] / cpu['1M one mesh']:5.2f}x  vs one mesh"
        print(f"{name:62s} {wall[name]:8.1f} {cpu[name]:8.1f}   {ratio}")
    last: list[Any] = [new, forced, old]
    for renderer in last:
        renderer.ctx.__enter__()  # each frees its objects in its own context, which then goes away with them
        renderer.release()


if __name__ == "__main__":
    main()
