"""How the control plane starts the processes that handle tenants' data (render servers, conversion workers).

They run as an unprivileged user when the service runs as root, with a cleaned environment (no secret of the
control plane, nothing the operator's shell happened to export), and they die before the control plane when
memory runs short. What they may touch on disk is handed to them (open descriptors, a work directory of their own);
the data directory itself stays out of their reach.
"""

from __future__ import annotations

import os
import pwd
import resource
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CHILD_USER = "nobody"
# Variables a child may inherit: the locale, and what selects or tunes the GL driver (the operator's choice of
# llvmpipe or a GPU). Everything else (tokens, cloud credentials, OPENRR_* settings) stays with the control plane.
_INHERITED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED")
_INHERITED_PREFIXES = ("MESA_", "LIBGL_", "GALLIUM_", "LP_", "EGL_", "__GLX_", "__EGL_", "NVIDIA_", "CUDA_")
CHILD_OOM_SCORE_ADJ = 800
"""Render servers and workers are the first the kernel kills when memory runs short; the control plane is not."""


class ChildUserError(Exception):
    """The configured child user cannot be used (unknown, or cannot run this installation of openrr)."""


@dataclass(frozen=True)
class ChildIdentity:
    """Who children run as. `uid is None`: as the service's own user (the service is not root)."""

    uid: int | None
    gid: int | None
    name: str

    @property
    def demotes(self) -> bool:
        return self.uid is not None and self.uid != os.geteuid()


def child_identity(configured: str | None) -> ChildIdentity:
    """The identity children get: `configured` (a user name or uid) if the service is root, else the service's own.

    Root with nothing configured means DEFAULT_CHILD_USER. A non-root service cannot change user, so it runs children
    as itself (configuring another user there is an error, not a silent no-op).
    """
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() != 0:
        if configured and configured not in (me, str(os.geteuid())):
            raise ChildUserError(f"the child user '{configured}' needs the service to run as root; it runs as '{me}'")
        return ChildIdentity(None, None, me)
    name = configured or DEFAULT_CHILD_USER
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise ChildUserError(f"the child user '{name}' does not exist (set --child-user / OPENRR_CHILD_USER)") from None
    if entry.pw_uid == 0:
        # The operator said so explicitly: run children as root (documented as unsafe in docs/security.md).
        return ChildIdentity(None, None, entry.pw_name)
    return ChildIdentity(entry.pw_uid, entry.pw_gid, entry.pw_name)


def unreachable_for(identity: ChildIdentity, paths: list[Path]) -> Path | None:
    """The first of `paths` the child user could not reach (execute every directory above, read the file), if any.

    Checked at start: a root service whose interpreter lies under a private home directory (pyenv under /root)
    would otherwise fail every session start with a bare 'permission denied'.
    """
    if not identity.demotes:
        return None
    assert identity.uid is not None and identity.gid is not None
    for path in paths:
        current = Path(path.anchor)
        for part in path.resolve().parts[1:]:
            if not _may(identity, current, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                return current
            current = current / part
        if current.exists() and not _may(identity, current, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
            return current
    return None


def require_reachable(identity: ChildIdentity, role: str, paths: list[Path] | None = None) -> None:
    """Raise ChildUserError unless the child user can start the interpreter and openrr.

    Called at start, not at the first child: a root service whose interpreter lies under /root would otherwise fail
    every session or conversion with a bare 'permission denied' in a child's log.
    """
    blocked = unreachable_for(identity, interpreter_paths() if paths is None else paths)
    if blocked is not None:
        raise ChildUserError(
            f"{role} run as '{identity.name}', who cannot reach {blocked} (needed to start the interpreter and "
            "openrr). Install openrr where that user can read it, or choose another user with --child-user / "
            "OPENRR_CHILD_USER."
        )


def _may(identity: ChildIdentity, path: Path, user_bit: int, group_bit: int, other_bit: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == identity.uid:
        return bool(st.st_mode & user_bit)
    if st.st_gid == identity.gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def interpreter_paths() -> list[Path]:
    """What a child needs to read to start: the interpreter, its standard library and openrr's package."""
    import openrr

    stdlib = Path(os.__file__).parent
    return [Path(sys.executable), stdlib / "os.py", Path(openrr.__file__)]


def clean_env(identity: ChildIdentity, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a child: a fixed PATH, the locale and GL driver variables, a home of its own."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "USER": identity.name,
        "LOGNAME": identity.name,
    }
    for name, value in os.environ.items():
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES):
            env[name] = value
    env.update(extra or {})
    return env


def prepare_home(identity: ChildIdentity, path: Path) -> Path:
    """A private directory (0700) owned by the child user: its HOME, caches and whatever it is handed as files."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if identity.demotes:
        assert identity.uid is not None and identity.gid is not None
        os.chown(path, identity.uid, identity.gid)
    return path


def give(identity: ChildIdentity, path: Path) -> None:
    """Make a file the control plane wrote (0600) the child's own, so that it alone can read it."""
    if identity.demotes:
        assert identity.uid is not None and identity.gid is not None
        os.chown(path, identity.uid, identity.gid)


def popen_identity(identity: ChildIdentity) -> dict[str, Any]:
    """`subprocess.Popen` arguments that start the child as `identity`, with no supplementary groups.

    Popen switches user in C between fork and exec; a Python `preexec_fn` would not be safe in the threaded
    control plane.
    """
    if not identity.demotes:
        return {}
    return {"user": identity.uid, "group": identity.gid, "extra_groups": []}


def lower_standing(oom_score_adj: int = CHILD_OOM_SCORE_ADJ, memory_limit_bytes: int | None = None) -> None:
    """Called by a child first thing: it is the first the kernel kills when memory runs short, and it cannot grow
    past its memory limit (RLIMIT_DATA) (any process may lower its own standing; none may raise it back)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(oom_score_adj))
    except OSError:
        pass  # no /proc (not Linux): the limit below still holds
    if memory_limit_bytes:
        # RLIMIT_DATA (private writable memory: heap, anonymous mmaps, thread stacks), not RLIMIT_AS: address space
        # counts reservations that scale with the number of cores, not with memory used (glibc's 64 MiB arena per
        # thread, llvmpipe's one thread per core). Measured on 2 cores, 1080p H.264 stream, two models loaded: the
        # render server peaked at 3.1 GiB of address space for 295 MiB resident (490 MiB data); its render process
        # 1.2 GiB for 246 MiB (835 MiB data). A gzip bomb or a huge texture is data, and meets this limit.
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit_bytes, memory_limit_bytes))
