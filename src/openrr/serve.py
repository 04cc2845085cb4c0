"""`openrr serve`: first-start setup (certificate, default account), the banner, then uvicorn."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from openrr.app import build_app
from openrr.config import Settings
from openrr.services import Services, build_services
from openrr.tls import ensure_certificate

logger = logging.getLogger(__name__)


def _default_account(services: Services) -> tuple[str, str | None]:
    """The default account's id and key, creating it on first start.

    The store keeps only key hashes; the default account's keys are also written, readable by the owner only,
    to DATA_DIR/default-account.json so that each start can show how to connect.
    """
    path: Path = services.settings.data_dir / "default-account.json"
    if path.exists():
        doc = json.loads(path.read_text())
        if services.accounts.authenticate(doc["accountId"], doc["primaryKey"]):
            return doc["accountId"], doc["primaryKey"]
        if services.accounts.exists(doc["accountId"]):
            return doc["accountId"], None  # key rotated since: we no longer know it
    if services.accounts.list():
        return services.accounts.list()[0].account_id, None
    made = services.accounts.create()
    doc = {
        "accountId": made.account.account_id,
        "primaryKey": made.primary_key,
        "secondaryKey": made.secondary_key,
        "accountDomain": made.account.domain,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    return made.account.account_id, made.primary_key


def banner(settings: Settings, account_id: str, key: str | None) -> str:
    endpoint = settings.endpoint
    shown_key = key or "(rotated: run `openrr account rotate-key` to get a new one)"
    lines = [
        f"openrr is listening on {endpoint}",
        f"  account id   {account_id}",
        f"  account key  {shown_key}",
    ]
    if settings.tls:
        lines.append(f"  certificate  {settings.cert_path}")
    lines += [
        f"  data dir     {settings.data_dir}",
        "",
        "Point the official Azure SDK (azure-mixedreality-remoterendering) at it:",
    ]
    if settings.tls:
        lines.append(f"  export REQUESTS_CA_BUNDLE={settings.cert_path}")
    lines += [
        "  from azure.core.credentials import AzureKeyCredential",
        "  from azure.mixedreality.remoterendering import RemoteRenderingClient",
        "  client = RemoteRenderingClient(",
        f'      endpoint="{endpoint}",',
        f'      account_id="{account_id}",',
        '      account_domain="localhost",',
        f'      credential=AzureKeyCredential("{key or "<account key>"}"),',
        f'      authentication_endpoint_url="{endpoint}")',
        "",
        "Ctrl-C stops the service and its render servers.",
    ]
    return "\n".join(lines)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    return sock


def serve(settings: Settings, log_level: str = "info") -> int:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per health probe would drown everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.tls:
        names = [settings.host, settings.public_render_hostname, *settings.extra_hostnames]
        ensure_certificate(settings.cert_path, settings.key_path, names)
    try:
        # Bind before announcing anything, so a taken port is a clear error rather than a banner and a crash.
        sock = _bind(settings.host, settings.port)
    except OSError as e:
        print(f"openrr: cannot listen on {settings.host}:{settings.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    services = build_services(settings)
    account_id, key = _default_account(services)
    print(banner(settings, account_id, key), flush=True)
    config = uvicorn.Config(
        build_app(services),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.cert_path) if settings.tls else None,
        ssl_keyfile=str(settings.key_path) if settings.tls else None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal; both end up here as
    # KeyboardInterrupt so that a requested stop exits with status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        services.db.dispose()
    return 0
