"""The layering of docs/architecture.md, held: who may import whom, no circles, and a control plane free of the render
stack. Read from the source with `ast` (every import, also those inside functions, so that a deferred import cannot
hide a circle), and by importing the control plane in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import openrr

PACKAGE = Path(openrr.__file__).parent

# Layer -> the layers it may import besides itself (third-party libraries are not checked here). A layer is a
# package (`render`) or a top-level module (`config`); `render.control` is a layer of its own: the stdlib-only
# contract with the render server, the one part of `render` that the control plane may use.
MAY_IMPORT: dict[str, set[str]] = {
    "util": set(),
    "protocol": {"util"},
    "tokens": {"util"},
    "tls": {"util"},
    "store": {"util"},
    "http": {"util"},
    "storage": {"util", "protocol"},
    "config": {"storage", "util"},
    "model": {"util"},
    "render.control": {"util"},
    "render": {"render.control", "model", "storage", "protocol", "tokens", "tls", "config", "util"},
    "hosting": {"render.control", "storage", "config", "tls", "util", "protocol"},
    "accounts": {"store", "http", "tokens", "storage", "protocol", "config", "util"},
    "sessions": {"accounts", "hosting", "store", "storage", "http", "protocol", "tokens", "config", "tls", "util"},
    "conversions": {
        "accounts", "hosting", "store", "storage", "http", "model", "protocol", "tokens", "config", "tls", "util",
    },
    "metrics": {"sessions", "conversions", "hosting", "store", "util"},
    "app": {"accounts", "sessions", "conversions", "hosting", "store", "storage", "http", "config", "tls", "util",
            "services", "openrr", "tokens", "protocol", "metrics"},
    "services": {"accounts", "sessions", "conversions", "hosting", "store", "storage", "http", "config", "tls",
                 "util", "tokens", "protocol", "metrics"},
    "serve": {"app", "services", "accounts", "sessions", "conversions", "hosting", "store", "storage", "http",
              "config", "tls", "util", "tokens", "protocol"},
    "client": {"protocol", "openrr"},
    "cli": {"*"},
    "web": set(),
    "openrr": set(),  # the package's __init__ (version)
    "__main__": {"cli"},
}  # fmt: skip


def layer_of(module: str) -> str:
    parts = module.split(".")[1:]  # drop "openrr"
    if not parts:
        return "openrr"
    if parts[:2] == ["render", "control"]:
        return "render.control"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every openrr module `path` imports, at module level or inside a function."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "openrr")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "openrr":
                # `from openrr.x import y` may name a module y: count it as importing openrr.x.y where one exists.
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if _is_module(sub) else target)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def test_every_layer_is_known() -> None:
    unknown = {layer_of(m) for m in import_graph()} - MAY_IMPORT.keys()
    assert not unknown, f"modules outside every layer (add them to docs/architecture.md and MAY_IMPORT): {unknown}"


def test_imports_run_downward_only() -> None:
    broken = []
    for module, targets in sorted(import_graph().items()):
        mine = layer_of(module)
        allowed = MAY_IMPORT[mine]
        for target in sorted(targets):
            theirs = layer_of(target)
            # `openrr` itself (its __init__) holds only the version: anyone may read it.
            if theirs not in (mine, "openrr") and "*" not in allowed and theirs not in allowed:
                broken.append(f"{module} imports {target} ({mine} may not use {theirs})")
    assert not broken, "\n".join(broken)


def test_no_package_imports_one_that_imports_it_back() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        for target in targets:
            a, b = layer_of(module), layer_of(target)
            if a != b and b != "openrr":
                edges[a].add(b)
    circles = [sorted(c) for c in strongly_connected(edges) if len(c) > 1]
    assert not circles, f"layers that import each other, directly or round a circle: {circles}"


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Kosaraju's two passes: a set of more than one layer is a circle of imports."""
    nodes = set(edges) | {b for targets in edges.values() for b in targets}
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str, graph: dict[str, set[str]], out: list[str]) -> None:
        stack = [(node, iter(sorted(graph.get(node, ()))))]
        seen.add(node)
        while stack:
            current, children = stack[-1]
            child = next((c for c in children if c not in seen), None)
            if child is None:
                stack.pop()
                out.append(current)
            else:
                seen.add(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))

    for node in sorted(nodes):
        if node not in seen:
            visit(node, edges, order)
    reverse: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            reverse[b].add(a)
    seen.clear()
    components = []
    for node in reversed(order):
        if node not in seen:
            members: list[str] = []
            visit(node, reverse, members)
            components.append(set(members))
    return components


RENDER_STACK = ("moderngl", "aiortc", "cv2", "av", "trimesh")


def test_the_control_plane_loads_no_render_library() -> None:
    code = (
        "import sys\n"
        "import openrr.app, openrr.services, openrr.serve, openrr.cli\n"
        "from openrr.cli import main\n"
        f"print(','.join(m for m in {RENDER_STACK!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"the control plane imported {out.stdout.strip()}"
