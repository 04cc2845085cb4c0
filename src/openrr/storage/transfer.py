"""Copying a blob prefix down into a directory, and a directory up under a prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

from openrr.storage.container import Container
from openrr.storage.errors import StorageError

Progress = Callable[[float], None]


def safe_relative(name: str) -> PurePosixPath | None:
    """`name` as a path that stays inside a directory, or None (absolute, '..', or empty parts)."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(p in ("..", ".", "") for p in name.split("/")):
        return None
    return path


def download_prefix(container: Container, prefix: str, dest: Path, max_bytes: int, progress: Progress) -> list[str]:
    """Every blob under `prefix`, written to `dest` under its name less the prefix. Returns those names."""
    entries = [e for e in container.list(prefix) if not e.name.endswith("/")]
    total = sum(e.size for e in entries)
    if total > max_bytes:
        raise StorageError(
            "failed",
            f"the {len(entries)} blobs under '{prefix}' in {container.display} hold {total} bytes, "
            f"more than this service converts ({max_bytes} bytes).",
        )
    names: list[str] = []
    done = 0
    for entry in entries:
        relative = safe_relative(entry.name[len(prefix) :])
        if relative is None:
            continue  # cannot be a file in the input directory ('a/../b'); the model cannot refer to it either
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        container.download(entry.name, target)
        names.append(relative.as_posix())
        done += entry.size
        progress(done / total if total else 1.0)
    return names


def upload_tree(container: Container, prefix: str, src: Path, progress: Progress) -> list[str]:
    """Every file under `src`, written as blobs `prefix + relative path`. Returns the blob names."""
    # The result file last: once it is there, everything it describes is there too.
    files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.name.endswith(".result.json"), p))
    total = sum(p.stat().st_size for p in files)
    names: list[str] = []
    done = 0
    for path in files:
        name = prefix + path.relative_to(src).as_posix()
        container.upload(name, path)
        names.append(name)
        done += path.stat().st_size
        progress(done / total if total else 1.0)
    return names
