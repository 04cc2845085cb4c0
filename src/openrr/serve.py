"""`openrr serve`: first-start setup (certificate, default account), the banner, then uvicorn."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from pathlib import Path

from openrr.app import build_app
from openrr.config import Settings
from openrr.services import Services, build_services
from openrr.store.secretbox import SecretUnreadable
from openrr.tls import AEAD_CIPHERS, ensure_tls
from openrr.util.atomic import write_atomic
from openrr.util.child_process import ChildUserError
from openrr.util.http_server import GuardedServer, guarded_config
from openrr.util.private_dir import ensure_private_dir, private_umask

logger = logging.getLogger(__name__)


def _default_account(services: Services) -> tuple[str, str | None]:
    """The default account's id, and its primary key if it was created just now (first start).

    The key is shown once, in the first start's banner, and stored nowhere but as a digest: a key printed at
    every start ends up in logs. DATA_DIR/default-account.json remembers which account is the default.
    """
    path: Path = services.settings.data_dir / "default-account.json"
    if path.exists():
        doc = json.loads(path.read_text())
        if "primaryKey" in doc or "secondaryKey" in doc:
            # Written by an earlier version, keys in plain text: keep the id only.
            _write_default_account(path, doc["accountId"], doc.get("accountDomain", "localhost"))
            logger.warning("removed the plain-text account keys from %s", path)
        if services.accounts.exists(doc["accountId"]):
            return doc["accountId"], None
    if services.accounts.list():
        return services.accounts.list()[0].account_id, None
    made = services.accounts.create()
    _write_default_account(path, made.account.account_id, made.account.domain)
    return made.account.account_id, made.primary_key


def _write_default_account(path: Path, account_id: str, domain: str) -> None:
    write_atomic(path, json.dumps({"accountId": account_id, "accountDomain": domain}, indent=2).encode())


def banner(settings: Settings, account_id: str, key: str | None) -> str:
    endpoint = settings.endpoint
    shown_key = key or "(shown once, at creation; `openrr account rotate-key ID` makes a new one)"
    lines = [
        f"openrr is listening on {endpoint}",
        f"  account id   {account_id}",
        f"  account key  {shown_key}",
    ]
    if settings.tls:
        lines.append(f"  certificate  {settings.cert_path}")
        if settings.tls_cert is not None:
            lines.append(f"  served cert  {settings.tls_cert} (render servers serve leaves of the local CA above)")
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
    # Everything under the data directory is the owner's alone (docs/security.md, "Secrets at rest").
    private_umask()
    tightened = ensure_private_dir(settings.data_dir)
    if tightened:
        shown = ", ".join(str(p) for p in tightened[:5]) + (", ..." if len(tightened) > 5 else "")
        logger.warning(
            "tightened %d entries under %s to owner-only modes (0700 directories, 0600 files): %s",
            len(tightened),
            settings.data_dir,
            shown,
        )
    if settings.tls:
        if (settings.tls_cert is None) != (settings.tls_key is None):
            print("openrr: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        # The local CA and the control plane's leaf exist even with the operator's own certificate: render
        # servers get their leaves from this CA.
        ensure_tls(settings.tls_dir, settings.tls_hostnames, settings.server_cert_path.parent)
    try:
        # Bind before announcing anything, so a taken port is a clear error rather than a banner and a crash.
        sock = _bind(settings.host, settings.port)
    except OSError as e:
        print(f"openrr: cannot listen on {settings.host}:{settings.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        services = build_services(settings)
    except (ChildUserError, SecretUnreadable) as e:
        # Render servers and workers could not run as the configured user, or this replica's secrets key is not
        # the one its database's credentials were sealed with: say so before anything starts.
        print(f"openrr: {e}", file=sys.stderr)
        return 2
    account_id, key = _default_account(services)
    print(banner(settings, account_id, key), flush=True)
    # Connection limits (handshake / first-request timeout, keep-alive, concurrency) and no Server header.
    config = guarded_config(
        build_app(services),
        keep_alive_s=settings.keep_alive_timeout_s,
        max_connections=settings.max_connections,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.served_cert_path) if settings.tls else None,
        ssl_keyfile=str(settings.served_key_path) if settings.tls else None,
        ssl_ciphers=AEAD_CIPHERS,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal; both end up here as
    # KeyboardInterrupt so that a requested stop exits with status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        GuardedServer(config, settings.handshake_timeout_s).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        services.db.dispose()
    return 0
