"""`openrr serve`: its flags, and the run, announced to the admin commands while it lasts (cli/running.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from openrr.cli import running
from openrr.cli.settings import add_data_dir, settings_from, size_bytes_map, size_map


def add_arguments(serve: argparse.ArgumentParser) -> None:
    add_data_dir(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8443)")
    serve.add_argument("--render-hostname", help="host name clients use to reach render servers")
    serve.add_argument("--no-tls", action="store_true", help="plain HTTP (the official SDK refuses it)")
    serve.add_argument(
        "--tls-cert",
        type=Path,
        help="your own certificate chain (PEM) for the service; render servers keep leaves of the local CA",
    )
    serve.add_argument("--tls-key", type=Path, help="the private key (PEM) of --tls-cert")
    serve.add_argument("--warm-pool", type=size_map, help="warm render servers per size, e.g. Standard=1")
    serve.add_argument("--capacity", type=size_map, help="most live sessions per size, e.g. Standard=4")
    serve.add_argument("--rate-limit-per-s", type=float, help="requests per second per account (0: off)")
    serve.add_argument("--rate-limit-burst", type=int, help="burst size of the per-account limit")
    serve.add_argument("--reconcile-interval-s", type=float, help=argparse.SUPPRESS)
    serve.add_argument("--stop-grace-s", type=float, help="seconds between SIGTERM and SIGKILL")
    serve.add_argument(
        "--standard-primitive-limit", type=int, help="primitives a Standard session renders (ARR's 20 million)"
    )
    serve.add_argument("--conversion-workers", type=int, help="conversions run at once (0: none in this process)")
    serve.add_argument(
        "--local-storage-root",
        type=Path,
        action="append",
        help="directory under which file:// containers may lie, each account's in <root>/<accountId>/ "
        "(repeatable; default DATA_DIR/containers)",
    )
    serve.add_argument(
        "--local-models",
        choices=["on", "off"],
        help="whether sessions may load models by local path or file:// URL, from their account's area under the "
        "local storage roots (default on; env OPENRR_LOCAL_MODELS)",
    )
    serve.add_argument("--texture-max-dimension", type=int, help="texture width or height in pixels (default 16384)")
    serve.add_argument("--texture-max-pixels", type=int, help="texture width x height (default 67108864)")
    serve.add_argument(
        "--model-max-bytes", type=int, help="bytes fetched or decoded for one model, decompressed (default 2 GiB)"
    )
    serve.add_argument(
        "--model-max-compression-ratio", type=float, help="decoded per transferred byte of a compressed download (200)"
    )
    serve.add_argument(
        "--render-memory-limit",
        type=size_bytes_map,
        help="memory (RLIMIT_DATA) of one render server per size, e.g. Standard=8G,Premium=16G",
    )
    serve.add_argument(
        "--fetch-allow",
        action="append",
        metavar="HOST[:PORT]|CIDR,...",
        help="non-public addresses render servers and conversions may fetch from, e.g. 127.0.0.1:10000 for Azurite "
        "(repeatable or comma-separated; env OPENRR_FETCH_ALLOW; default: public addresses only)",
    )
    serve.add_argument(
        "--child-user",
        help="user render servers and conversion workers run as when the service runs as root (default nobody; "
        "env OPENRR_CHILD_USER)",
    )
    serve.add_argument("--conversion-lease-s", type=float, help=argparse.SUPPRESS)
    serve.add_argument(
        "--public-url", help="base URL clients reach the service at, for links in responses (default: the endpoint)"
    )
    serve.add_argument(
        "--handshake-timeout-s", type=float, help="drop connections without TLS or a request after this (default 10)"
    )
    serve.add_argument("--keep-alive-timeout-s", type=float, help="idle seconds a kept-alive connection stays open")
    serve.add_argument(
        "--render-orphan-timeout-s",
        type=float,
        help="a render server that hears nothing from a control plane for this long stops itself (default 300; 0: "
        "never)",
    )
    serve.add_argument("--max-connections", type=int, help="connections served at once; past it: 503 (default 1000)")
    # Replicas on one database (docs/kubernetes.md): the same --database-url, CA directory and secrets key.
    serve.add_argument("--replica-id", help="this replica's name in session records (default: host-pid-random)")
    serve.add_argument(
        "--session-lease-s",
        type=float,
        help="seconds after which another replica takes over the sessions of one that stopped renewing (default 10)",
    )
    serve.add_argument("--ca-dir", type=Path, help="the local CA's directory, shared by replicas (DATA_DIR/tls)")
    serve.add_argument(
        "--hosting",
        choices=["local", "kubernetes"],
        help="where render servers run: child processes (local, default) or one pod per session (kubernetes; "
        "env OPENRR_HOSTING, OPENRR_KUBE_*; docs/kubernetes.md)",
    )
    serve.add_argument(
        "--kubeconfig", type=Path, help="the cluster for --hosting kubernetes (default: the in-cluster service account)"
    )
    serve.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    # Imported here, not above: the service (FastAPI, uvicorn, SQLAlchemy) is for this command alone (start-up time
    # of the others).
    from openrr.serve import serve

    settings = settings_from(args)
    # Two services on one data directory would fight over its render servers' files and its port records: refuse
    # before touching anything of it.
    data_dir = settings.data_dir.resolve()
    for other in running.running():
        if other.store.data_dir == data_dir:
            print(f"openrr serve: {other} already uses data directory {data_dir}; stop it first", file=sys.stderr)
            return 2
    with running.announce(settings):
        return serve(settings, args.log_level)
