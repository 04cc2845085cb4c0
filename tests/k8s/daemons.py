"""The long-running processes of one state directory (etcd, the Kubernetes components, containerd, a kubelet):
each in its own session, logged to NAME.log, its pid in NAME.pid; stopped by recorded pid only."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil


class Daemons:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.pids: dict[str, int] = {}

    def spawn(self, name: str, argv: list[str]) -> None:
        with open(self.dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pids[name] = proc.pid
        (self.dir / f"{name}.pid").write_text(str(proc.pid))

    def alive(self, name: str) -> bool:
        """True while `name` runs; raises with its log's tail once it exited (no point waiting for it)."""
        try:
            if psutil.Process(self.pids[name]).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            pass
        raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, *names: str) -> None:
        """Stops `names` (all, newest first, if none given)."""
        chosen = list(names) or list(self.pids)[::-1]
        stop_pids(self.dir, [(n, self.pids.pop(n)) for n in chosen if n in self.pids])


def stop_pids(state_dir: Path, named: list[tuple[str, int]], grace_s: float = 10) -> None:
    """SIGTERM these processes (ones we started, by pid), SIGKILL after `grace_s`; removes their pid files."""
    procs: list[psutil.Process] = []
    for name, pid in named:
        try:
            p = psutil.Process(pid)
            p.send_signal(signal.SIGTERM)
            procs.append(p)
        except psutil.NoSuchProcess:
            pass
        (state_dir / f"{name}.pid").unlink(missing_ok=True)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)
