"""The control plane's share of a conversion whose containers are file:// directories.

Workers run as an unprivileged user that cannot reach the accounts' files (they lie in the data directory or
under a local storage root, owned by the service). So the control plane does local-container I/O itself: it
copies a file:// input into the job's work directory before the worker starts, hands the directory over to the
worker's user, and stores what the worker left in `output/` in a file:// output container once it has reported.
An account reaches only its own directory under each local storage root, `<root>/<accountId>/…`.
"""

from __future__ import annotations

import os
from pathlib import Path

from openrr.protocol.storage_uri import parse_container_uri
from openrr.storage.account_area import AccountArea
from openrr.storage.local import LocalContainer
from openrr.storage.transfer import Progress, download_prefix, upload_tree
from openrr.util.child_process import ChildIdentity

INPUT, OUTPUT = "input", "output"


def account_roots(roots: list[Path], account_id: str) -> list[Path]:
    """The directories under which this account's file:// containers may lie."""
    return AccountArea(roots, account_id).dirs


def is_local(uri: str) -> bool:
    return parse_container_uri(uri).is_local


def make_work_dir(path: Path) -> None:
    """The job's work directory, private to this process until `hand_over` gives it to the worker's user."""
    path.mkdir(mode=0o700, parents=True)
    os.chmod(path, 0o700)  # whatever the umask
    for name in (INPUT, OUTPUT):
        (path / name).mkdir(mode=0o700)


def stage_input(
    uri: str, roots: list[Path], prefix: str, work_dir: Path, max_bytes: int, progress: Progress
) -> list[str]:
    """Copy the input prefix of a file:// container into `work_dir/input`; the names copied (StorageError)."""
    container = LocalContainer(parse_container_uri(uri).local_path, roots)
    try:
        return download_prefix(container, prefix, work_dir / INPUT, max_bytes, progress)
    finally:
        container.close()


def store_outputs(uri: str, roots: list[Path], prefix: str, work_dir: Path, progress: Progress) -> list[str]:
    """Store the worker's `output/` in a file:// container (result file last); the blob names (StorageError).

    The worker wrote that tree and may have left links in it: nothing is followed (transfer.upload_tree).
    """
    container = LocalContainer(parse_container_uri(uri).local_path, roots)
    try:
        return upload_tree(container, prefix, work_dir / OUTPUT, progress, beneath=True)
    finally:
        container.close()


def hand_over(identity: ChildIdentity, work_dir: Path) -> None:
    """Make the work directory and everything staged in it the worker user's own (before the worker starts, so
    nothing else can be changing it)."""
    if not identity.demotes:
        return
    assert identity.uid is not None and identity.gid is not None
    os.chown(work_dir, identity.uid, identity.gid, follow_symlinks=False)
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(work_dir, follow_symlinks=False):
        for name in dirnames + filenames:
            os.chown(name, identity.uid, identity.gid, dir_fd=dirfd, follow_symlinks=False)
