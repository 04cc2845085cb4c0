"""The contract between the control plane and a render server process: both sides import this module, and
nothing else of each other.

- argv: `RenderServerArgs` (one dataclass; `to_argv` on the control plane, `from_argv` in the server);
- the ports file the server writes once its sockets are bound (`ServerPorts`, `write_ports`, `read_ports`);
- the control secret (first line on stdin) and the header that carries it on control requests;
- exit codes and what each means;
- the control endpoints and their typed bodies (strict `from_json`: a wrong body is a ValueError naming the field).

Standard library only (and util/atomic.py, itself stdlib only): the control plane imports it without loading the
render stack (GL, aiortc, OpenCV).
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import os
import secrets
import signal
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Self, TypeVar

from openrr.util.atomic import write_atomic
from openrr.util.json_values import describe

RENDER_SERVER_COMMAND = "render-server"
"""The `openrr` sub-command that runs one render server."""


def server_command(python: str) -> list[str]:
    """argv up to the server's own arguments: `python -P -m openrr render-server`."""
    # -P: not the working directory (the server's home, writable by it) on sys.path.
    return [python, "-P", "-m", "openrr", RENDER_SERVER_COMMAND]


# --- argv ------------------------------------------------------------------------------------------------


def _help(text: str) -> dict[str, str]:
    """A field's --help text (its metadata)."""
    return {"help": text}


@dataclass(frozen=True)
class RenderServerArgs:
    """A render server's command line. Each field is the flag `--<field-name-with-dashes>`; None: not passed,
    the server's own default applies (defaults that live in the render stack stay there)."""

    host_id: str = field(metadata=_help("this server's id (names its log and home)"))
    ports_file: Path = field(metadata=_help("where the server writes its ports once bound (PORTS_FILE in its home)"))
    size: str = field(default="Standard", metadata=_help("Standard or Premium"))
    bind: str = field(default="127.0.0.1", metadata=_help("address to listen on"))
    session_id: str | None = field(
        default=None, metadata=_help("the session served from the start (else: warm, assigned later)")
    )
    account_id: str | None = field(default=None, metadata=_help("the account of --session-id"))
    certfile: Path | None = field(default=None, metadata=_help("TLS certificate chain (PEM)"))
    keyfile: Path | None = field(default=None, metadata=_help("TLS private key (PEM)"))
    sts_public_key: Path | None = field(default=None, metadata=_help("PEM public key that signs clients' STS tokens"))
    standard_primitive_limit: int | None = field(default=None, metadata=_help("a Standard session's primitive limit"))
    reconnect_grace_s: float = field(default=60.0, metadata=_help("how long a dropped controller's scene is kept"))
    fetch_allow: tuple[str, ...] = field(
        default=(),
        metadata=_help(
            "non-public host, host:port or CIDR entries models may be fetched from (comma-separated, repeatable)"
        ),
    )
    model_max_bytes: int = field(default=2 * 1024**3, metadata=_help("bytes fetched or decoded per model"))
    model_max_compression_ratio: float = field(
        default=200.0, metadata=_help("decoded bytes per transferred byte of a compressed download")
    )
    memory_limit: int | None = field(
        default=None, metadata=_help("bytes this server and its render process may each use")
    )
    oom_score_adj: int | None = field(
        default=None, metadata=_help("killed first when memory is short (default: a child's)")
    )
    files_fd: int | None = field(default=None, metadata=_help("inherited socket of the control plane's file broker"))
    texture_max_dimension: int | None = field(default=None, metadata=_help("texture width or height, pixels"))
    texture_max_pixels: int | None = field(default=None, metadata=_help("texture width x height"))
    handshake_timeout_s: float = field(default=10.0, metadata=_help("seconds to complete TLS and send a request"))
    keep_alive_timeout_s: float = field(default=10.0, metadata=_help("idle seconds of a kept-alive connection"))
    # Self-expiry: a control plane that was SIGKILLed and never came back (or a replica that died before recording
    # the server) leaves nobody to stop the server; connected clients do not count, as nobody enforces their lease.
    orphan_timeout_s: float | None = field(
        default=None,
        metadata=_help("exit once no request with the control secret came for this many seconds (default: never)"),
    )
    # Pod mode (hosting/kubernetes.py): the control plane allocates the ports (hostPort) and hands the secret in a
    # mounted Secret, as a pod has no stdin from the control plane.
    handshake_port: int | None = field(
        default=None, metadata=_help("listen on exactly this handshake port (else: a free one in ARR's range)")
    )
    inspector_port: int | None = field(default=None, metadata=_help("listen on exactly this inspector port"))
    secret_file: Path | None = field(
        default=None, metadata=_help("read the control secret from this file instead of stdin's first line")
    )

    def __post_init__(self) -> None:
        if (self.session_id is None) != (self.account_id is None):
            raise ValueError("--session-id and --account-id come together")
        if (self.handshake_port is None) != (self.inspector_port is None):
            raise ValueError("--handshake-port and --inspector-port come together")

    def to_argv(self) -> list[str]:
        """The flags, in field order; None and empty values are left out."""
        argv: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            argv += [_flag(f.name), text]
        return argv

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The flags, for `openrr render-server --help` and `from_argv`."""
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = _scalar(hints[f.name])
            required = f.default is dataclasses.MISSING
            help_text = f.metadata["help"]
            if kind is tuple:
                # Comma-separated and repeatable (the control plane passes one comma-separated value).
                parser.add_argument(_flag(f.name), action="append", default=[], help=help_text)
            else:
                default = None if required else f.default
                parser.add_argument(_flag(f.name), type=kind, required=required, default=default, help=help_text)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> Self:
        values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)}
        values["fetch_allow"] = tuple(e.strip() for arg in ns.fetch_allow for e in arg.split(",") if e.strip())
        return cls(**values)

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> Self:
        """Parse a render server's flags (argparse's usage error and exit status 2 on bad ones)."""
        parser = argparse.ArgumentParser(prog=f"openrr {RENDER_SERVER_COMMAND}")
        cls.add_arguments(parser)
        return cls.from_namespace(parser.parse_args(list(argv)))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar(hint: Any) -> Any:
    """str, int, float, Path or tuple: the type a flag's text converts to (`X | None` is X)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return tuple
    if args:
        return _scalar(args[0])
    return hint


# --- the ports file --------------------------------------------------------------------------------------

PORTS_FILE = "ports.json"
"""Its name in the server's home."""
PORTS_FILE_MAX_BYTES = 4096


@dataclass(frozen=True)
class ServerPorts:
    pid: int
    host_id: str
    handshake_port: int
    inspector_port: int

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "hostId": self.host_id,
            "handshakePort": self.handshake_port,
            "inspectorPort": self.inspector_port,
        }

    @classmethod
    def from_json(cls, doc: object) -> Self:
        obj = _object(doc, "the ports file")
        return cls(_int(obj, "pid"), _str(obj, "hostId"), _port(obj, "handshakePort"), _port(obj, "inspectorPort"))


def write_ports(path: Path, ports: ServerPorts) -> None:
    """Write the ports file so that a reader sees all of it or none (temporary file beside it, then rename)."""
    # Not durable: the file means nothing after a reboot, and a start waits for it. `path` may be relative (the
    # server reaches its home only as its working directory), and stays so.
    write_atomic(path, json.dumps(ports.to_json()).encode(), mode=0o644, durable=False)


def read_ports(path: Path) -> ServerPorts | None:
    """The server's ports, or None while there are none (not written yet, or not a valid ports file).

    The file is written by the (unprivileged) server: a link in its place is not followed, nor a FIFO waited on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            return ServerPorts.from_json(json.loads(f.read(PORTS_FILE_MAX_BYTES)))
    except (OSError, ValueError):
        return None


# --- the control secret ----------------------------------------------------------------------------------

CONTROL_HEADER = "x-openrr-control"
"""Carries a render server's control secret: only the control plane that started the server knows it."""
SECRET_MAX_BYTES = 1024


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def send_secret(stdin: IO[bytes], secret: str) -> None:
    """Hand the secret to a just-started server: the first line on its stdin, which is then closed. It goes over
    stdin, never the environment (/proc/<pid>/environ is readable by the child user's other processes, and the
    environment is inherited by the render process)."""
    try:
        stdin.write(secret.encode() + b"\n")
        stdin.close()
    except OSError:
        pass  # it died at once: the first probe says so


def read_secret(fd: int = 0) -> str:
    """The server's side of `send_secret` ('' if none came). `fd` is then pointed at /dev/null, so that no later
    reader blocks on the pipe."""
    data = b""
    while not data.endswith(b"\n") and len(data) < SECRET_MAX_BYTES:
        chunk = os.read(fd, SECRET_MAX_BYTES)
        if not chunk:
            break
        data += chunk
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, fd)
    os.close(null)
    return data.decode(errors="replace").strip()


def read_secret_file(path: Path) -> str:
    """The control secret from a file (pod mode: a mounted Secret), '' if there is none."""
    try:
        with open(path, "rb") as f:
            return f.read(SECRET_MAX_BYTES).decode(errors="replace").strip()
    except OSError:
        return ""


def control_headers(secret: str) -> dict[str, str]:
    return {CONTROL_HEADER: secret}


def from_control_plane(header_value: str | None, secret: str) -> bool:
    """Whether a request's CONTROL_HEADER value is the secret (compared in constant time)."""
    return hmac.compare_digest((header_value or "").encode(), secret.encode())


# --- exit codes ------------------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_USAGE = 2
"""Bad flags (argparse's status) or no control secret (on stdin or in --secret-file)."""
EXIT_PORT_IN_USE = 69
"""--handshake-port or --inspector-port is taken on this address (EX_UNAVAILABLE)."""
EXIT_RENDER_PROCESS_FAILED = 70
"""Its render process (GL) died (EX_SOFTWARE): the server exits rather than answer /health with no picture."""
EXIT_ORPHANED = 75
"""No request with the control secret came for --orphan-timeout-s (EX_TEMPFAIL): no control plane looks after the
server any more, so it stopped itself."""


def exit_reason(returncode: int) -> str:
    """Why a render server ended, for the session's error: 'exited with code 70: ...', 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    if returncode == EXIT_RENDER_PROCESS_FAILED:
        return f"exited with code {returncode}: its render process (GL) died; the render server's log says more"
    if returncode == EXIT_ORPHANED:
        return (
            f"exited with code {returncode}: no control plane reached it within its orphan timeout, so it stopped "
            "itself"
        )
    if returncode == EXIT_PORT_IN_USE:
        return f"exited with code {returncode}: its handshake or inspector port is taken on its node"
    if returncode == EXIT_USAGE:
        return f"exited with code {returncode}: it was started wrongly; the render server's log says more"
    return f"exited with code {returncode}"


# --- control endpoints and their bodies ------------------------------------------------------------------

HEALTH_PATH = "/health"
"""Anyone may GET it ({"status": "ok"}); with the control secret it also names the session, account and pid."""


@dataclass(frozen=True)
class IdentityReport:
    """What a render server says of itself to the control plane: the answer to /control/assign, and part of
    /health's answer to a request with the control secret. The session and account are None until assigned."""

    host_id: str
    size: str
    session_id: str | None
    account_id: str | None
    pid: int
    uptime_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "hostId": self.host_id,
            "size": self.size,
            "sessionId": self.session_id,
            "accountId": self.account_id,
            "pid": self.pid,
            "uptimeS": round(self.uptime_s, 3),
        }

    @classmethod
    def from_json(cls, doc: object) -> Self:
        obj = _object(doc, "the identity")
        return cls(
            _str(obj, "hostId"),
            _str(obj, "size"),
            _optional_str(obj, "sessionId"),
            _optional_str(obj, "accountId"),
            _int(obj, "pid"),
            _number(obj, "uptimeS"),
        )


@dataclass(frozen=True)
class HealthReport:
    """/health's answer to the control plane: the server is up, its GL renderer, and whom it serves."""

    renderer: str
    identity: IdentityReport

    def to_json(self) -> dict[str, Any]:
        return {"status": "ok", "renderer": self.renderer, **self.identity.to_json()}

    @classmethod
    def from_json(cls, doc: object) -> Self:
        obj = _object(doc, "the health document")
        if obj.get("status") != "ok":
            raise ValueError(f"status: expected 'ok', got {describe(obj.get('status'))}")
        return cls(_string(_get(obj, "renderer"), "renderer"), IdentityReport.from_json(obj))


@dataclass(frozen=True)
class AssignBody:
    """Give a warm server its session (409 if it already serves another)."""

    path: ClassVar[str] = "/control/assign"
    session_id: str
    account_id: str

    def to_json(self) -> dict[str, Any]:
        return {"sessionId": self.session_id, "accountId": self.account_id}

    @classmethod
    def from_json(cls, doc: object) -> Self:
        obj = _object(doc, "the body")
        return cls(_str(obj, "sessionId"), _str(obj, "accountId"))


@dataclass(frozen=True)
class StorageGrantsBody:
    """Read tokens for the linked storage of the session's account (storage/session_access.py's BlobGrant JSON,
    which the server parses itself)."""

    path: ClassVar[str] = "/control/storage"
    account_id: str
    grants: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"accountId": self.account_id, "grants": list(self.grants)}

    @classmethod
    def from_json(cls, doc: object) -> Self:
        obj = _object(doc, "the body")
        return cls(_str(obj, "accountId"), _array(obj, "grants", _object))


@dataclass(frozen=True)
class KeyIdsBody:
    """The ids of the account's current keys: tokens of any other key are refused."""

    path: ClassVar[str] = "/control/tokens"
    account_id: str
    key_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"accountId": self.account_id, "keyIds": list(self.key_ids)}

    @classmethod
    def from_json(cls, doc: object) -> Self:
        obj = _object(doc, "the body")
        return cls(_str(obj, "accountId"), _array(obj, "keyIds", _string))


ControlBody = AssignBody | StorageGrantsBody | KeyIdsBody
B = TypeVar("B", AssignBody, StorageGrantsBody, KeyIdsBody)
T = TypeVar("T")


def parse_body(kind: type[B], raw: bytes) -> B:
    """A control request's body as `kind`; ValueError with a message for the caller if it is not one."""
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"the body is not JSON: {e}") from None
    return kind.from_json(doc)


def _object(doc: object, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: expected a JSON object, got {describe(doc)}")
    return doc


def _get(obj: dict[str, Any], name: str) -> object:
    if name not in obj:
        raise ValueError(f"{name}: missing")
    return obj[name]


def _str(obj: dict[str, Any], name: str) -> str:
    return _string(_get(obj, name), name, empty=False)


def _int(obj: dict[str, Any], name: str) -> int:
    value = _get(obj, name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got {describe(value)}")
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    value = _get(obj, name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {describe(value)}")
    return float(value)


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = _get(obj, name)
    return None if value is None else _string(value, name, empty=False)


def _port(obj: dict[str, Any], name: str) -> int:
    value = _int(obj, name)
    if not 0 < value < 65536:
        raise ValueError(f"{name}: {value} is not a port")
    return value


def _array(obj: dict[str, Any], name: str, item: Callable[[object, str], T]) -> tuple[T, ...]:
    """`obj[name]`, a JSON array, each element checked by `item` (which is told where it is: `name[i]`)."""
    value = _get(obj, name)
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected an array, got {describe(value)}")
    return tuple(item(element, f"{name}[{i}]") for i, element in enumerate(value))


def _string(value: object, what: str, empty: bool = True) -> str:
    if not isinstance(value, str) or not (empty or value):
        raise ValueError(f"{what}: expected a {'' if empty else 'non-empty '}string, got {describe(value)}")
    return value
