"""A one-line live status display: redrawn in place on a terminal, plain log lines anywhere else."""

from __future__ import annotations

from typing import TextIO

# Without a terminal, repeat an unchanged status this often so a log shows the wait is still alive.
HEARTBEAT_S = 30.0


class StatusLine:
    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self._last_status: str | None = None
        self._last_line_at = 0.0
        self._drawn = False

    def update(self, status: str, elapsed_s: float) -> None:
        text = f"{self.label}: {status} ({elapsed_s:.0f} s)"
        if self.tty:
            # \r back to column 0, ESC[K clears what a longer previous line left behind.
            self.stream.write(f"\r{text}\x1b[K")
            self._drawn = True
        elif status != self._last_status or elapsed_s - self._last_line_at >= HEARTBEAT_S:
            self.stream.write(text + "\n")
            self._last_line_at = elapsed_s
        self._last_status = status
        self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line so later output starts on a fresh one."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
