"""render/control.py, the contract between the control plane and a render server: argv, the ports file, the
control secret, exit codes and the typed control bodies. In process; nothing is started."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from openrr.render import control
from openrr.render.control import (
    AssignBody,
    HealthReport,
    IdentityReport,
    KeyIdsBody,
    RenderServerArgs,
    ServerPorts,
    StorageGrantsBody,
    exit_reason,
    from_control_plane,
    parse_body,
    read_ports,
    read_secret,
    send_secret,
    write_ports,
)

# Every field away from its default, so that a field to_argv forgot (or from_argv misreads) shows.
FULL = RenderServerArgs(
    host_id="0123456789abcdef",
    ports_file=Path("ports.json"),
    size="Premium",
    bind="::1",
    session_id="s-1",
    account_id="a-1",
    certfile=Path("tls-cert.pem"),
    keyfile=Path("tls-key.pem"),
    sts_public_key=Path("sts-public.pem"),
    standard_primitive_limit=1234,
    reconnect_grace_s=2.5,
    fetch_allow=("127.0.0.1:10000", "10.0.0.0/8"),
    model_max_bytes=99,
    model_max_compression_ratio=3.5,
    memory_limit=8 << 30,
    oom_score_adj=900,
    files_fd=7,
    texture_max_dimension=512,
    texture_max_pixels=4096,
    handshake_timeout_s=1.5,
    keep_alive_timeout_s=0.5,
    orphan_timeout_s=300.0,
    handshake_port=30000,
    inspector_port=30001,
    secret_file=Path("/var/run/openrr/pod/control-secret"),
)


def test_every_argv_field_differs_from_its_default_in_the_full_example() -> None:
    defaults = RenderServerArgs(host_id="h", ports_file=Path("p"))
    same = [f.name for f in dataclasses.fields(FULL) if getattr(FULL, f.name) == getattr(defaults, f.name)]
    assert same == []


def test_argv_round_trips() -> None:
    assert RenderServerArgs.from_argv(FULL.to_argv()) == FULL
    minimal = RenderServerArgs(host_id="h", ports_file=Path("ports.json"))
    assert minimal.to_argv() == [
        "--host-id", "h", "--ports-file", "ports.json", "--size", "Standard", "--bind", "127.0.0.1",
        "--reconnect-grace-s", "60.0", "--model-max-bytes", str(2 * 1024**3), "--model-max-compression-ratio",
        "200.0", "--handshake-timeout-s", "10.0", "--keep-alive-timeout-s", "10.0",
    ]  # fmt: skip
    assert RenderServerArgs.from_argv(minimal.to_argv()) == minimal


def test_argv_fetch_allow_is_comma_separated_and_repeatable() -> None:
    argv = ["--host-id", "h", "--ports-file", "p", "--fetch-allow", "a, b", "--fetch-allow", "c,"]
    assert RenderServerArgs.from_argv(argv).fetch_allow == ("a", "b", "c")


def test_argv_refuses_a_session_without_its_account_and_missing_required_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="--session-id and --account-id come together"):
        RenderServerArgs(host_id="h", ports_file=Path("p"), session_id="s")
    with pytest.raises(SystemExit) as e:
        RenderServerArgs.from_argv(["--host-id", "h"])
    assert e.value.code == control.EXIT_USAGE
    assert "--ports-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        RenderServerArgs.from_argv(["--host-id", "h", "--ports-file", "p", "--files-fd", "three"])
    with pytest.raises(ValueError, match="--handshake-port and --inspector-port come together"):
        RenderServerArgs(host_id="h", ports_file=Path("p"), handshake_port=30000)


def test_server_command_runs_the_render_server_subcommand_without_the_working_directory_on_sys_path() -> None:
    assert control.server_command("/py") == ["/py", "-P", "-m", "openrr", "render-server"]


def test_ports_file_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / control.PORTS_FILE
    assert read_ports(path) is None
    ports = ServerPorts(pid=42, host_id="h", handshake_port=50000, inspector_port=50001)
    write_ports(path, ports)
    assert read_ports(path) == ports
    assert sorted(p.name for p in tmp_path.iterdir()) == [control.PORTS_FILE]


def test_ports_file_is_written_by_its_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server reaches its home only as its working directory: every path it writes must stay relative."""
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    real_open = os.open

    def watched(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched)
    write_ports(Path(control.PORTS_FILE), ServerPorts(1, "h", 50000, 50001))
    monkeypatch.undo()
    assert opened and not any(os.path.isabs(p) for p in opened), opened
    assert read_ports(tmp_path / control.PORTS_FILE) == ServerPorts(1, "h", 50000, 50001)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"pid": 42, "hostId": "h", "handshakePo',  # half written (a writer that did not rename)
        b"[]",
        b'{"pid": 42, "hostId": "h", "handshakePort": "50000", "inspectorPort": 50001}',
        b'{"pid": 42, "hostId": "h", "handshakePort": 70000, "inspectorPort": 50001}',
        b'{"pid": 42, "hostId": "h", "inspectorPort": 50001}',
        b"\xff\xfe",
    ],
)
def test_ports_file_that_is_not_whole_reads_as_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / control.PORTS_FILE
    path.write_bytes(content)
    assert read_ports(path) is None


def test_ports_file_is_not_followed_through_a_link_nor_waited_on_as_a_fifo(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    write_ports(real, ServerPorts(1, "h", 50000, 50001))
    link = tmp_path / control.PORTS_FILE
    link.symlink_to(real)
    assert read_ports(link) is None
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert read_ports(fifo) is None


def test_ports_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^handshakePort: expected an integer, got the string '1'$"):
        ServerPorts.from_json({"pid": 1, "hostId": "h", "handshakePort": "1", "inspectorPort": 2})
    with pytest.raises(ValueError, match=r"^pid: expected an integer, got the boolean true$"):
        ServerPorts.from_json({"pid": True, "hostId": "h", "handshakePort": 1, "inspectorPort": 2})
    with pytest.raises(ValueError, match=r"^inspectorPort: 0 is not a port$"):
        ServerPorts.from_json({"pid": 1, "hostId": "h", "handshakePort": 1, "inspectorPort": 0})


@pytest.mark.parametrize(
    "body",
    [
        AssignBody("s-1", "a-1"),
        StorageGrantsBody("a-1", ({"blobEndpoint": "https://x", "sas": "sig=1"},)),
        StorageGrantsBody("a-1", ()),
        KeyIdsBody("a-1", ("k1", "k2")),
    ],
)
def test_control_bodies_round_trip_through_json(body: AssignBody | StorageGrantsBody | KeyIdsBody) -> None:
    kind: Any = type(body)
    assert parse_body(kind, json.dumps(body.to_json()).encode()) == body


@pytest.mark.parametrize(
    ("kind", "doc", "message"),
    [
        (AssignBody, {"accountId": "a"}, "sessionId: missing"),
        (AssignBody, {"sessionId": 3, "accountId": "a"}, "sessionId: expected a non-empty string, got 3"),
        (AssignBody, {"sessionId": "s", "accountId": None}, "accountId: expected a non-empty string, got null"),
        (
            AssignBody,
            {"sessionId": "", "accountId": "a"},
            "sessionId: expected a non-empty string, got the string ''",
        ),
        (AssignBody, ["s", "a"], "the body: expected a JSON object, got an array"),
        (StorageGrantsBody, {"accountId": "a"}, "grants: missing"),
        (StorageGrantsBody, {"accountId": "a", "grants": {}}, "grants: expected an array, got an object"),
        (
            StorageGrantsBody,
            {"accountId": "a", "grants": [{}, "x"]},
            "grants[1]: expected a JSON object, got the string 'x'",
        ),
        (StorageGrantsBody, {"grants": []}, "accountId: missing"),
        (KeyIdsBody, {"accountId": "a", "keyIds": ["k", 7]}, "keyIds[1]: expected a string, got 7"),
        (KeyIdsBody, {"accountId": "a", "keyIds": "k"}, "keyIds: expected an array, got the string 'k'"),
    ],
)
def test_control_bodies_refuse_wrong_types_and_missing_fields_by_name(kind: Any, doc: object, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_body(kind, json.dumps(doc).encode())
    assert str(e.value) == message


@pytest.mark.parametrize("session_id", [None, "s-1"])
def test_health_reports_round_trip_before_and_after_assignment(session_id: str | None) -> None:
    who = IdentityReport("h1", "Standard", session_id, session_id and "a-1", 4242, 1.5)
    report = HealthReport("llvmpipe (LLVM 15)", who)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["status"] == "ok" and doc["sessionId"] == session_id
    assert HealthReport.from_json(doc) == report
    assert IdentityReport.from_json(json.loads(json.dumps(who.to_json()))) == who


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"status": "ok"}, "renderer: missing"),  # what /health says to anyone without the control secret
        ({"status": "starting", "renderer": "x"}, "status: expected 'ok', got the string 'starting'"),
        (
            {"status": "ok", "renderer": "x", "hostId": "h", "size": "Standard", "sessionId": 5},
            "sessionId: expected a non-empty string, got 5",
        ),
        (
            {"status": "ok", "renderer": "x", "hostId": "h", "size": "S", "sessionId": None, "accountId": None,
             "pid": 1, "uptimeS": "1"},
            "uptimeS: expected a number, got the string '1'",
        ),
        ([], "the health document: expected a JSON object, got an array"),
    ],
)  # fmt: skip
def test_a_health_report_that_is_not_one_says_which_field(doc: object, message: str) -> None:
    with pytest.raises(ValueError) as e:
        HealthReport.from_json(doc)
    assert str(e.value) == message


def test_a_body_that_is_not_json_says_so() -> None:
    with pytest.raises(ValueError, match=r"^the body is not JSON: "):
        parse_body(AssignBody, b"{sessionId")


def test_the_secret_goes_over_a_pipe_and_the_pipe_is_then_dev_null() -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as stdin:
            send_secret(stdin, "s3cret")
        assert read_secret(read_end) == "s3cret"
        # The reader's end now reads /dev/null: nothing blocks on it, nothing more comes.
        assert os.read(read_end, 10) == b""
    finally:
        os.close(read_end)


def test_the_secret_file_of_pod_mode_is_read_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "control-secret"
    path.write_bytes(b"s3cret\n")
    assert control.read_secret_file(path) == "s3cret"
    # A missing file (a Secret not mounted) reads as no secret: the server then exits with EXIT_USAGE.
    assert control.read_secret_file(tmp_path / "missing") == ""


def test_only_the_secret_passes_as_the_control_plane() -> None:
    assert from_control_plane("s3cret", "s3cret")
    assert not from_control_plane("s3cre", "s3cret")
    assert not from_control_plane(None, "s3cret")
    assert control.control_headers("s3cret") == {control.CONTROL_HEADER: "s3cret"}


def test_exit_reasons_say_what_the_control_plane_needs() -> None:
    assert exit_reason(-signal.SIGKILL) == "was killed by SIGKILL"
    assert "render process (GL) died" in exit_reason(control.EXIT_RENDER_PROCESS_FAILED)
    assert exit_reason(1) == "exited with code 1"
    assert "port is taken" in exit_reason(control.EXIT_PORT_IN_USE)
    assert "no control plane reached it within its orphan timeout" in exit_reason(control.EXIT_ORPHANED)


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


def test_the_contract_imports_only_the_standard_library() -> None:
    """The control plane imports it: it must never pull in the render stack, nor anything of openrr but util/
    modules that are standard library only themselves (the one atomic write)."""
    imported = _imports_of(Path(control.__file__))
    util = {name for name in imported if name.startswith("openrr.util.")}
    for name in util:
        imported |= _imports_of(Path(importlib.import_module(name).__file__ or ""))
    roots = {name.split(".")[0] for name in imported - util}
    assert roots - {"__future__"} <= set(sys.stdlib_module_names), roots - set(sys.stdlib_module_names)
