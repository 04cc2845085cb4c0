"""What the client commands (`openrr session`, `openrr convert`) share: how they end (exit codes), the live status
line, polling until a terminal state, printing documents as JSON or as aligned fields, and upload progress.

Exit codes, as the users' scripts check them: 0 success, 1 the service or storage said no (or could not be reached),
2 missing or malformed settings, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from openrr.client.arrconfig import (
    ENV_ACCOUNT_ID,
    ENV_ACCOUNT_KEY,
    ENV_CA_CERT,
    ENV_ENDPOINT,
    ENV_STS_ENDPOINT,
    ArrConfig,
    ConfigError,
    Connection,
    resolve_connection,
)
from openrr.client.rest import tls_context

# Without a terminal, repeat an unchanged status this often so a log shows the wait is still alive.
HEARTBEAT_S = 30.0


def run_command(prog: str, body: Callable[[], int], failures: tuple[type[Exception], ...]) -> int:
    """`body`'s status; 2 for bad settings (every problem on a line of its own), 1 for one of `failures` (the
    service or storage said no, or could not be reached), 130 when interrupted."""
    try:
        return body()
    except ConfigError as e:
        for problem in e.problems:
            print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    except failures as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def positive(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_connection_flags(p: argparse.ArgumentParser, default: Any = None) -> None:
    """Where the service is and who the account is: the flags of every client command (arrconfig.json's
    accountSettings and remoteRenderingDomain). `default` is argparse.SUPPRESS where they are given twice."""
    conn = p.add_argument_group("connection", "flags override environment variables, which override the config file")
    conn.add_argument(
        "--config", type=Path, metavar="FILE", default=default,
        help="ARR-style arrconfig.json (default: ./arrconfig.json if present)",
    )  # fmt: skip
    conn.add_argument(
        "--account-id", default=default, help=f"account ID (env {ENV_ACCOUNT_ID}; accountSettings.arrAccountId)"
    )
    conn.add_argument(
        "--account-key", default=default, help=f"account key (env {ENV_ACCOUNT_KEY}; accountSettings.arrAccountKey)"
    )
    conn.add_argument(
        "--endpoint", "--remote-rendering-domain", dest="endpoint", default=default,
        help=f"rendering domain: region name, host[:port] or URL "
        f"(env {ENV_ENDPOINT}; renderingSessionSettings.remoteRenderingDomain)",
    )  # fmt: skip
    conn.add_argument(
        "--sts-endpoint", "--account-domain", dest="sts_endpoint", default=default,
        help=f"account domain (STS); defaults to the rendering domain "
        f"(env {ENV_STS_ENDPOINT}; accountSettings.arrAccountDomain)",
    )  # fmt: skip
    conn.add_argument(
        "--ca-cert", metavar="FILE", default=default,
        help=f"CA certificate to trust (env {ENV_CA_CERT}, then REQUESTS_CA_BUNDLE)",
    )  # fmt: skip


def connection_from(args: argparse.Namespace, config: ArrConfig | None) -> Connection:
    """The connection flags over the environment over the file (ConfigError lists every missing setting)."""
    return resolve_connection(
        account_id=getattr(args, "account_id", None),
        account_key=getattr(args, "account_key", None),
        endpoint=getattr(args, "endpoint", None),
        sts_endpoint=getattr(args, "sts_endpoint", None),
        ca_cert=getattr(args, "ca_cert", None),
        env=os.environ,
        config=config,
    )


def verify_for(connection: Connection) -> ssl.SSLContext:
    """The TLS context that trusts the connection's CA; an unreadable one is a settings problem (exit 2)."""
    try:
        return tls_context(connection.ca_cert)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError([f"cannot load CA certificate {connection.ca_cert}: {e}"]) from e


class StatusLine:
    """A one-line live status display: redrawn in place on a terminal, plain log lines anywhere else."""

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


class WaitTimeout(Exception):
    """The wait ran out before a terminal state; `last` is the last document polled."""

    def __init__(self, last: dict[str, Any], waited_s: float) -> None:
        super().__init__(f"still {last.get('status')} after {waited_s:.0f} s")
        self.last = last
        self.waited_s = waited_s


def status_of(doc: dict[str, Any]) -> str:
    return str(doc.get("status", "?"))


def poll_until_terminal(
    fetch: Callable[[], dict[str, Any]],
    terminal: Iterable[str],
    display: StatusLine,
    interval: Callable[[dict[str, Any]], float],
    timeout: float | None,
    describe: Callable[[dict[str, Any]], str] = status_of,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, Any], float]:
    """Poll until the status (lower-cased) is in `terminal`; the last document and the seconds waited.

    `interval` gives the pause after a document (it may depend on it, e.g. on the session's size); no pause runs
    past `timeout`, and the poll at the timeout is the last (WaitTimeout). `describe` is what the status line shows.
    """
    ends = {t.lower() for t in terminal}
    start = clock()
    try:
        while True:
            doc = fetch()
            waited = clock() - start
            display.update(describe(doc), waited)
            if status_of(doc).lower() in ends:
                return doc, waited
            remaining = None if timeout is None else timeout - waited
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(doc, waited)
            pause = interval(doc)
            sleep(pause if remaining is None else min(pause, remaining))
    finally:
        display.finish()


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def print_fields(rows: Iterable[tuple[str, Any]], width: int) -> None:
    """`    label:   value` lines, as ARR's scripts printed a document; error objects as `code: message`."""
    for label, value in rows:
        if isinstance(value, dict) and "code" in value:
            value = f"{value.get('code')}: {value.get('message', '')}"
        print(f"    {label + ':':<{width}} {value}")


def human_bytes(n: float) -> str:
    """1536 -> "1.5 KB"."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class UploadProgress:
    """Upload progress: one line redrawn in place on a terminal; elsewhere one line per file, so logs stay short."""

    def __init__(self, stream: TextIO, label: str = "Uploading") -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self.files = 0
        self.total = 0
        self._drawn = False

    def start(self, files: int, total: int) -> None:
        self.files, self.total = files, total
        if not self.tty:
            self.stream.write(f"{self.label} {files} file{'s' if files != 1 else ''} ({human_bytes(total)})\n")
            self.stream.flush()

    def update(self, index: int, name: str, done: int) -> None:
        if not self.tty:
            return
        percent = 100.0 * done / self.total if self.total else 100.0
        self.stream.write(
            f"\r{self.label} {index}/{self.files}: {percent:3.0f}% of {human_bytes(self.total)} ({name})\x1b[K"
        )
        self.stream.flush()
        self._drawn = True

    def file_done(self, index: int, name: str, size: int, done: int) -> None:
        if self.tty:
            self.update(index, name, done)
            return
        self.stream.write(f"  [{index}/{self.files}] {name} ({human_bytes(size)})\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
