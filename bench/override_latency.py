"""Override -> frame latency on a sub-assembly of 1,000 parts, against camera -> frame latency in the same run.

Run from the repository root:  python bench/override_latency.py [--repetitions 20] [--parts 1000] [--others 250]

A real `openrr serve` (through tests.harness) starts a Standard session through the REST API; a generated glTF
assembly is loaded over HTTP from a local server (tests.models.serve_directory), as bench/latency.py does:

    <file> ── assembly ─┬─ sub ─┬─ group 0 ── --parts / 10 parts
                        │       ├─ ...
                        │       └─ group 9 ── ...
                        └─ others ── --others parts

Every part is a node of its own with an icosphere of 80 triangles (about 100k triangles in all by default), in one
of four lit, opaque metallic-roughness materials shared by the sub-assembly and the other parts (so a hidden part
cannot be skipped by skipping a material's batch), on a square grid over the same area as the other rendering
benchmarks' models; the camera looks at it from orbit step 0 (bench/render_common.py), 1280x720, the server's
default frame cap (60) unless --cap says otherwise.

Through the Python client (JPEG frames, decoded), from rest (a random wait of up to one frame interval before each
command, so commands land at any phase of the server's frame pacing), --repetitions times each, interleaved in a
shuffled order per repetition:

  setOverride {entityId: sub, hidden: true}          and back  {hidden: "inherit"}
  setOverride {entityId: sub, tint: [1, 0.2, 0, 0.6]} and back {tint: "inherit"}
  setOverride {entityId: sub, seeThrough: true}       and back {seeThrough: "inherit"}
  BASELINE: setCamera to the other of two nearby orbit steps (a frame whose only change is the camera)

and, between each override and its undoing, one more setCamera while the override is in place: what drawing that
picture costs (a see-through sub-assembly is drawn blended), apart from applying the override.

Each sample: time from sending the command until the first decoded frame whose command id is >= the command's
(the client's stamped-command machinery: `next_frame(after_command=...)`). Printed: p50/p90 per command and their
ratio to the baseline's; and, so that a fast answer cannot be a frame that does not show the change, the share of
pixels that differ (by more than 8/255 in a channel) between that frame and the one before the command.

Goal (issue 11): none given in numbers ("time until the frame shows it"); read against the camera baseline: an
override on 1,000 parts should cost about what one more frame costs. Every process it starts is stopped at the end,
also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trimesh

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.models import serve_directory  # noqa: E402

from bench.common import bench_workdir, load_average, pct, print_header  # noqa: E402
from bench.render_common import FOV_Y, HEIGHT, WIDTH, orbit, ready_session, render_service  # noqa: E402
from openrr.client.render_session import Frame, RenderSessionClient  # noqa: E402

PART_SUBDIVISIONS = 1  # an icosphere of 80 triangles, 42 vertices
GROUPS = 10
DEFAULT_CAP = 60.0  # the server's default frame cap (session.DEFAULT_FPS)
CHANGED = 8
"""Per channel, out of 255: more than JPEG's noise between two encodes of the same picture."""
PAINTS = [  # (name, linear base colour, metallic, roughness)
    ("steel", (0.56, 0.57, 0.58), 1.0, 0.35),
    ("paint-blue", (0.05, 0.15, 0.6), 0.0, 0.5),
    ("paint-white", (0.8, 0.8, 0.78), 0.0, 0.3),
    ("rubber", (0.03, 0.03, 0.03), 0.0, 0.9),
]
TINT = [1.0, 0.2, 0.0, 0.6]
COMMANDS = {
    # name: (fields of the command that changes the picture, fields of the one that changes it back)
    "hidden": ({"hidden": True}, {"hidden": "inherit"}),
    "tint": ({"tint": TINT}, {"tint": "inherit"}),
    "seeThrough": ({"seeThrough": True}, {"seeThrough": "inherit"}),
}
BASELINE = "camera"
ROWS = {
    BASELINE: "setCamera (baseline)",
    **{
        label: text
        for name in COMMANDS
        for label, text in (
            (f"{name} on", f"setOverride {name} on"),
            (f"{name} off", f"setOverride {name} off"),
            (f"camera, {name}", f"  setCamera, sub-assembly {name}"),
        )
    },
}


# --- the assembly ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assembly:
    path: Path
    parts: int
    triangles: int


def write_assembly(path: Path, sub_parts: int, other_parts: int) -> Assembly:
    """A .gltf (buffer embedded) of `sub_parts` parts under `sub` (in GROUPS groups) and `other_parts` under
    `others`, each a node with a small icosphere, on a square grid over [-1, 1] in x and z."""
    sphere = trimesh.creation.icosphere(subdivisions=PART_SUBDIVISIONS, radius=1.0)
    positions = np.asarray(sphere.vertices, dtype=np.float32)
    normals = positions.copy()  # a unit sphere's normals are its positions
    indices = np.asarray(sphere.faces, dtype=np.uint16).reshape(-1)
    blob = positions.tobytes() + normals.tobytes() + indices.tobytes()
    count = sub_parts + other_parts
    side = math.ceil(math.sqrt(count))
    spacing = 2.0 / side
    scale = 0.4 * spacing

    nodes: list[dict[str, Any]] = [
        {"name": "assembly", "children": [1, 2]},
        {"name": "sub", "children": []},
        {"name": "others", "children": []},
    ]
    groups = []
    for g in range(GROUPS):
        groups.append(len(nodes))
        nodes[1]["children"].append(len(nodes))
        nodes.append({"name": f"group {g}", "children": []})
    for i in range(count):
        parent = groups[i * GROUPS // sub_parts] if i < sub_parts else 2
        nodes[parent]["children"].append(len(nodes))
        centre = [-1.0 + spacing * (i % side + 0.5), 0.0, -1.0 + spacing * (i // side + 0.5)]
        nodes.append(
            {"name": f"part {i}", "mesh": i % len(PAINTS), "translation": centre, "scale": [scale, scale, scale]}
        )
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": [
            {"name": name, "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": k}]}
            for k, (name, *_) in enumerate(PAINTS)
        ],
        "materials": [
            {"name": name, "pbrMetallicRoughness": {"baseColorFactor": [*colour, 1.0], "metallicFactor": metallic,
                                                    "roughnessFactor": roughness}}
            for name, colour, metallic, roughness in PAINTS
        ],
        "buffers": [
            {"byteLength": len(blob), "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": positions.nbytes, "target": 34962},
            {"buffer": 0, "byteOffset": positions.nbytes, "byteLength": normals.nbytes, "target": 34962},
            {"buffer": 0, "byteOffset": 2 * positions.nbytes, "byteLength": indices.nbytes, "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(positions), "type": "VEC3",
             "min": positions.min(axis=0).tolist(), "max": positions.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(normals), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": len(indices), "type": "SCALAR"},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    return Assembly(path, count, count * len(sphere.faces))


async def find_entity(client: RenderSessionClient, root: int, path: Sequence[str]) -> dict[str, Any]:
    """The entity at `path` (names) below the model's root, found through getChildren as a user would."""
    entity_id = root
    for name in path:
        children = (await client.get_children(entity_id, limit=1000))["children"]
        match = [c for c in children if c["name"] == name]
        if not match:
            raise RuntimeError(f"no child {name!r} under entity {entity_id}: {[c['name'] for c in children]}")
        entity_id = match[0]["entityId"]
    return await client.get_entity(entity_id)


# --- measurement -------------------------------------------------------------------------------------------------


@dataclass
class Samples:
    ms: list[float] = field(default_factory=list)
    changed: list[float] = field(default_factory=list)
    """Share of pixels that differ from the frame before the command."""


def changed_share(before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8]) -> float:
    differs = np.any(np.abs(before.astype(np.int16) - after.astype(np.int16)) > CHANGED, axis=-1)
    return float(differs.mean())


class Bench:
    def __init__(self, client: RenderSessionClient, sub: int, cap: float) -> None:
        self.client = client
        self.sub = sub
        self.cap = cap
        self.step = 0
        self.last: Frame | None = None
        self.samples: dict[str, Samples] = {}

    async def timed(self, label: str, send: Any) -> None:
        """From rest: a random phase of the frame interval, then the command, then its first frame."""
        await asyncio.sleep(random.uniform(0.0, 1.0 / self.cap))
        t0 = time.perf_counter()
        command_id: int = await send()
        frame = await self.client.next_frame(after_command=command_id, timeout=60)
        ms = (frame.received_at - t0) * 1000
        record = self.samples.setdefault(label, Samples())
        record.ms.append(ms)
        if self.last is not None:
            record.changed.append(changed_share(self.last.image, frame.image))
        self.last = frame

    async def camera(self) -> int:
        self.step ^= 1  # two nearby orbit steps (3 degrees apart): the whole model moves a little
        position, target = orbit(self.step)
        return await self.client.set_camera(position=position, target=target, fov_y=FOV_Y)

    async def repetition(self) -> None:
        order = [BASELINE, *COMMANDS]
        random.shuffle(order)
        for name in order:
            if name == BASELINE:
                await self.timed(BASELINE, self.camera)
                continue
            on, off = COMMANDS[name]
            await self.timed(f"{name} on", lambda on=on: self.client.set_override(self.sub, **_python(on)))
            # what a frame with the override in place costs to draw, apart from applying it
            await self.timed(f"camera, {name}", self.camera)
            await self.timed(f"{name} off", lambda off=off: self.client.set_override(self.sub, **_python(off)))


def _python(fields: dict[str, Any]) -> dict[str, Any]:
    """The protocol's camelCase field names as the client's keyword arguments."""
    return {("see_through" if key == "seeThrough" else key): value for key, value in fields.items()}


async def run(args: argparse.Namespace, work: Path) -> tuple[Bench, Assembly, dict[str, Any]]:
    models = work / "models"
    models.mkdir()
    assembly = write_assembly(models / "assembly.gltf", args.parts, args.others)
    with serve_directory(models) as base_url, render_service(work / "service") as svc, ready_session(svc) as doc:
        client = await RenderSessionClient.connect(doc["hostname"], doc["handshakePort"], svc.token(), ca=svc.cert)
        try:
            t0 = time.perf_counter()
            loaded = await client.load_model(f"{base_url}/{assembly.path.name}")
            load_s = time.perf_counter() - t0
            sub = await find_entity(client, loaded["entityId"], ["assembly", "sub"])
            print(f"  session {doc['id']} Ready; renderer: {client.welcome['renderer']}; model: {assembly.parts:,}"
                  f" parts, {loaded['triangles']:,} triangles, loaded in {load_s:.2f} s; sub-assembly: entity"
                  f" {sub['entityId']} {'/'.join(sub['path'])!r}, {sub['childCount']} groups", flush=True)  # fmt: skip
            await client.set_stream(WIDTH, HEIGHT, fps=args.cap)
            bench = Bench(client, sub["entityId"], args.cap)
            for _ in range(3):  # warm-up: shaders built, the stream running; not counted
                await bench.repetition()
            bench.samples.clear()
            bench.last = None
            for i in range(args.repetitions):
                await bench.repetition()
                if (i + 1) % 5 == 0:
                    print(f"  {i + 1}/{args.repetitions} repetitions", flush=True)
            stats = await client.stats()
        finally:
            await client.close()
    return bench, assembly, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=20, help="samples per command (default 20)")
    parser.add_argument("--parts", type=int, default=1000, help="parts in the sub-assembly (default 1000)")
    parser.add_argument("--others", type=int, default=250, help="other parts (default 250)")
    parser.add_argument("--cap", type=float, default=DEFAULT_CAP, help=f"frame cap (default {DEFAULT_CAP:.0f})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, model)")
    args = parser.parse_args()
    if args.parts < GROUPS:
        parser.error(f"--parts must be at least {GROUPS}")

    print_header("override_latency")
    print(f"  {WIDTH}x{HEIGHT}, frame cap {args.cap:g}, WebSocket + JPEG over loopback TLS, Python client;"
          f" {args.repetitions} repetitions, each command from rest")  # fmt: skip
    started = time.perf_counter()
    with bench_workdir("openrr-bench-override-", args.keep) as work:
        bench, assembly, stats = asyncio.run(run(args, work))

    base = bench.samples[BASELINE]
    print()
    print(
        f"command -> first decoded frame stamped with it, ms (n = {args.repetitions} each); ratio: p50 and p90"
        f" against setCamera's of the same run; changed: median share of pixels that differ from the frame before"
    )
    print(f"  {'command':<36} {'p50':>7} {'p90':>7} {'p50 x':>6} {'p90 x':>6} {'changed':>8}")
    for label, name in ROWS.items():
        s = bench.samples[label]
        print(
            f"  {name:<36} {pct(s.ms, 50):7.1f} {pct(s.ms, 90):7.1f} {pct(s.ms, 50) / pct(base.ms, 50):5.2f}x"
            f" {pct(s.ms, 90) / pct(base.ms, 90):5.2f}x {pct(s.changed, 50):8.1%}"
        )
    print(f"  setOverride: on the sub-assembly of {args.parts:,} parts; 'setCamera, sub-assembly X': a camera change"
          " while X is in place (what drawing that picture costs, apart from applying the override)")  # fmt: skip
    lat = stats.get("latencyMs") or {}
    print(f"  server (last frame): render {stats.get('renderTimeMs')} ms, encode {stats.get('encodeTimeMs')} ms,"
          f" command->frame sent p50 {lat.get('p50')} p90 {lat.get('p90')} ms")  # fmt: skip
    overrides = [s for label, s in bench.samples.items() if label.endswith((" on", " off"))]
    worst = max(pct(s.ms, 50) / pct(base.ms, 50) for s in overrides)
    blank = [label for label, s in bench.samples.items() if pct(s.changed, 50) == 0.0]
    print()
    print(
        f"reading: the slowest override's p50 is {worst:.2f}x a camera change's"
        f" ({assembly.parts:,} parts, {assembly.triangles:,} triangles; sub-assembly of {args.parts:,})"
    )
    if blank:
        print(f"  WARNING: frames for {', '.join(blank)} did not change the picture")
    print(f"  total run time {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 1 if blank else 0


if __name__ == "__main__":
    sys.exit(main())
