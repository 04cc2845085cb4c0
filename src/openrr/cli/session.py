"""`openrr session create|get|list|extend|stop|inspect`: what ARR's Scripts/RenderingSession.ps1 did, and more.

Exit codes: 0 success (with --wait: the session is Ready), 1 the service said no (HTTP error, session in Error,
Expired or Stopped, wait timed out, unreachable), 2 missing or malformed settings, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import uuid
import webbrowser
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from openrr.cli.toolkit import (
    StatusLine,
    WaitTimeout,
    add_connection_flags,
    connection_from,
    poll_until_terminal,
    positive,
    print_fields,
    print_json,
    run_command,
    verify_for,
)
from openrr.client.arrconfig import (
    ConfigError,
    find_config,
    resolve_lease,
    resolve_size,
)
from openrr.client.rest import ArrConnectionError, ArrHttpError, RestClient

_T = TypeVar("_T")

TERMINAL = ("ready", "error", "expired", "stopped")
DEFAULT_TIMEOUT_S = 1200.0


def _size(text: str) -> str:
    if text.lower() not in ("standard", "premium"):
        raise argparse.ArgumentTypeError(f"unknown size {text!r} (standard or premium)")
    return text.lower()


def add_arguments(session: argparse.ArgumentParser) -> None:
    session.description = "Create, inspect, extend and stop rendering sessions through the ARR REST API."
    session.epilog = __doc__.split("\n\n", 1)[1].strip() if __doc__ else None
    actions = session.add_subparsers(dest="action", required=True)

    common = argparse.ArgumentParser(add_help=False)
    add_connection_flags(common)
    common.add_argument("--json", action="store_true", help="print the service's JSON instead of a summary")

    def with_id(p: argparse.ArgumentParser, helptext: str) -> None:
        p.add_argument("--id", dest="session_id", help=helptext)

    def with_lease(p: argparse.ArgumentParser) -> None:
        lease = p.add_mutually_exclusive_group()
        lease.add_argument(
            "--lease-time", metavar="HH:MM:SS", help="lease (renderingSessionSettings.maxLeaseTime), e.g. 4:00:00"
        )
        lease.add_argument("--lease-minutes", type=int, metavar="N", help="lease in minutes")

    def with_wait(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--wait", action="store_true", help=f"{what} poll until Ready, Error, Expired or Stopped")
        p.add_argument(
            "--poll-interval",
            type=positive,
            metavar="S",
            help="seconds between polls (default 2 standard, 10 premium)",
        )
        p.add_argument(
            "--timeout",
            type=positive,
            default=DEFAULT_TIMEOUT_S,
            metavar="S",
            help=f"give up waiting after S seconds (default {DEFAULT_TIMEOUT_S:.0f})",
        )

    create = actions.add_parser("create", parents=[common], help="start a session")
    with_id(create, "session ID (default Sample-Session-<guid>)")
    create.add_argument("--size", "--vm-size", type=_size, help="standard or premium (renderingSessionSettings.vmSize)")
    with_lease(create)
    with_wait(create, "after creating,")

    get = actions.add_parser("get", parents=[common], help="show a session's properties")
    with_id(get, "session ID (asked for on a terminal when left out)")
    with_wait(get, "")

    actions.add_parser("list", parents=[common], help="list the account's live sessions")

    extend = actions.add_parser("extend", parents=[common], help="set a new, larger lease (absolute, not added)")
    with_id(extend, "session ID (asked for on a terminal when left out)")
    with_lease(extend)

    stop = actions.add_parser("stop", parents=[common], help="stop a session")
    with_id(stop, "session ID (asked for on a terminal when left out)")

    inspect = actions.add_parser(
        "inspect",
        parents=[common],
        help="print the URL of a Ready session's inspector page, with a fresh access token",
        description="The inspector answers only with an access token of the session's account. The URL carries it "
        "in its fragment (#access_token=...), which browsers never send to a server: treat the URL as a secret "
        "for the token's lifetime.",
    )
    with_id(inspect, "session ID (asked for on a terminal when left out)")
    inspect.add_argument("--open", action="store_true", help="also open it in a web browser")


def run(args: argparse.Namespace) -> int:
    return run_command("openrr session", lambda: _run(args), (ArrHttpError, ArrConnectionError))


def _run(args: argparse.Namespace) -> int:
    config = find_config(args.config)
    problems: list[str] = []
    connection = None
    try:
        connection = connection_from(args, config)
    except ConfigError as e:
        problems += e.problems
    # Report every missing setting in one go, as the script's Verify* functions did.
    size = lease = None
    if args.action == "create":
        size = _collect(problems, lambda: resolve_size(args.size, config))
    if args.action in ("create", "extend"):
        lease = _collect(problems, lambda: resolve_lease(args.lease_time, args.lease_minutes, config))
    if problems or connection is None:
        raise ConfigError(problems)

    session_id = ""
    if args.action == "create":
        session_id = args.session_id or f"Sample-Session-{uuid.uuid4()}"
    elif args.action != "list":
        session_id = args.session_id or _ask_session_id()

    verify = verify_for(connection)

    with RestClient(
        endpoint=connection.endpoint,
        sts_endpoint=connection.sts_endpoint,
        account_id=connection.account_id,
        account_key=connection.account_key,
        verify=verify,
    ) as client:
        if args.action == "create":
            assert size is not None and lease is not None
            return _create(client, args, session_id, size, lease)
        if args.action == "get":
            return _get(client, args, session_id)
        if args.action == "list":
            return _list(client, args)
        if args.action == "extend":
            assert lease is not None
            return _extend(client, args, session_id, lease)
        if args.action == "stop":
            return _stop(client, args, session_id)
        if args.action == "inspect":
            return _inspect(client, args, session_id)
    return 2


def _inspect(client: RestClient, args: argparse.Namespace, session_id: str) -> int:
    doc = client.get_session(session_id)
    port = doc.get("arrInspectorPort")
    if doc.get("status") != "Ready" or not port:
        print(f"session {session_id} is {doc.get('status')}, not Ready: it has no inspector", file=sys.stderr)
        return 1
    host = str(doc.get("hostname"))
    host = f"[{host}]" if ":" in host else host
    url = f"https://{host}:{port}/#" + urlencode({"access_token": client.token()})
    if args.json:
        print_json({"sessionId": session_id, "inspectorUrl": url})
    else:
        print(url)
    if args.open:
        webbrowser.open(url)
    return 0


def _collect(problems: list[str], resolve: Callable[[], _T]) -> _T | None:
    try:
        return resolve()
    except ConfigError as e:
        problems += e.problems
        return None


def _ask_session_id() -> str:
    # The script prompted ("Please enter Session Id"); without a terminal there is no one to ask.
    if sys.stdin.isatty():
        answer = input("Please enter Session Id: ").strip()
        if answer:
            return answer
    raise ConfigError(["no session ID given - pass --id SESSION_ID"])


# --- actions -------------------------------------------------------------------------------------


def _create(client: RestClient, args: argparse.Namespace, session_id: str, size: str, lease: int) -> int:
    doc = client.create_session(session_id, lease, size)
    if not args.wait:
        if args.json:
            print_json(doc)
        else:
            print(f"Created session '{session_id}'. Follow it with: openrr session get --id {session_id} --wait")
            _print_session(doc)
        return 0
    print(f"Provisioning a VM for rendering session '{session_id}' ...", file=sys.stderr)
    interval = args.poll_interval or _default_interval(size)
    return _wait_and_report(client, args, session_id, interval)


def _get(client: RestClient, args: argparse.Namespace, session_id: str) -> int:
    if args.wait:
        return _wait_and_report(client, args, session_id, args.poll_interval)
    doc = client.get_session(session_id)
    if args.json:
        print_json(doc)
    else:
        print("Session Status:")
        _print_session(doc)
    return 0


def _list(client: RestClient, args: argparse.Namespace) -> int:
    sessions = list(client.list_sessions())
    if args.json:
        print_json({"sessions": sessions})
        return 0
    print(f"Currently there are {len(sessions)} sessions:")
    for doc in sessions:
        _print_session(doc)
        print()
    return 0


def _extend(client: RestClient, args: argparse.Namespace, session_id: str, lease: int) -> int:
    doc = client.update_session(session_id, lease)
    if args.json:
        print_json(doc)
    else:
        print("Successfully updated session. Session properties:")
        _print_session(doc)
    return 0


def _stop(client: RestClient, args: argparse.Namespace, session_id: str) -> int:
    client.stop_session(session_id)
    # Stop answers 204 with no body; show the session's state after it (Stopped) instead of nothing.
    doc = client.get_session(session_id)
    if args.json:
        print_json(doc)
    else:
        print(f"Stopped session '{session_id}'.")
        _print_session(doc)
    return 0


# --- waiting -------------------------------------------------------------------------------------


def _default_interval(size: str) -> float:
    # RenderingSession.ps1 polled every 2 s for standard VMs and every 10 s otherwise.
    return 2.0 if size.lower() == "standard" else 10.0


def poll_interval(chosen: float | None) -> Callable[[dict[str, Any]], float]:
    """--poll-interval, or else the script's pause for the session's size."""
    return lambda doc: chosen or _default_interval(str(doc.get("size", "")))


def _wait_and_report(client: RestClient, args: argparse.Namespace, session_id: str, interval: float | None) -> int:
    display = StatusLine(sys.stderr, f"Session '{session_id}'")
    try:
        doc, waited = poll_until_terminal(
            lambda: client.get_session(session_id), TERMINAL, display, poll_interval(interval), args.timeout
        )
    except WaitTimeout as e:
        print(
            f"openrr session: timed out after {e.waited_s:.0f} s: session '{session_id}' is still "
            f"{e.last.get('status')}. It keeps starting; stop it with: openrr session stop --id {session_id}",
            file=sys.stderr,
        )
        if args.json:
            print_json(e.last)
        return 1

    status = str(doc.get("status", "")).lower()
    messages = {
        "ready": "Session is ready.",
        "error": "The attempt to create a new session resulted in an error.",
        "expired": "The session expired: its lease ran out. Check the lease time (maxLeaseTime).",
        "stopped": "The session was stopped.",
    }
    message = f"{messages[status]} Time elapsed: {waited:.0f} s"
    if args.json:
        if status != "ready":
            print(f"openrr session: {message}", file=sys.stderr)
        print_json(doc)
    else:
        print(message)
        _print_session(doc)
    return 0 if status == "ready" else 1


# --- output --------------------------------------------------------------------------------------

# (label as RenderingSession.ps1 printed it, JSON property); absent properties are left out, as there.
_FIELDS = (
    ("sessionId", "id"),
    ("elapsedTimeMinutes", "elapsedTimeMinutes"),
    ("sessionHostname", "hostname"),
    ("arrInspectorPort", "arrInspectorPort"),
    ("handshakePort", "handshakePort"),
    ("sessionMaxLeaseTimeMinutes", "maxLeaseTimeMinutes"),
    ("sessionSize", "size"),
    ("sessionStatus", "status"),
    ("error", "error"),
)
_WIDTH = max(len(label) for label, _ in _FIELDS) + 1


def _print_session(doc: dict[str, Any]) -> None:
    print_fields(((label, doc[key]) for label, key in _FIELDS if doc.get(key) is not None), _WIDTH)
