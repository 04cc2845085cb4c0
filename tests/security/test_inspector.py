"""Finding 5: the inspector port answered anyone with the account id, session id, pid, log tail and model sources.
Now its page is public (it holds nothing) but /api/status wants an STS token of the session's account."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.harness import Service, create_account


def test_inspector_status_needs_a_token_of_the_sessions_account(service: Service, session: dict[str, Any]) -> None:
    """Before: GET /api/status answered 200 with the tenant's identity and log to anyone who reached the port."""
    base = f"https://{session['hostname']}:{session['arrInspectorPort']}"
    status = f"{base}/api/status"
    r = httpx.get(status, verify=service.tls, timeout=5)
    assert r.status_code == 401 and service.account_id not in r.text and session["id"] not in r.text
    r = httpx.get(status, headers={"Authorization": "Bearer not-a-token"}, verify=service.tls, timeout=5)
    assert r.status_code == 401
    other = create_account(service.data_dir)
    foreign = service.token(other["accountId"], other["primaryKey"])
    r = httpx.get(status, headers={"Authorization": f"Bearer {foreign}"}, verify=service.tls, timeout=5)
    assert r.status_code == 403 and session["id"] not in r.text
    # A token in the query string (which lands in logs) is not taken.
    r = httpx.get(status, params={"access_token": service.token()}, verify=service.tls, timeout=5)
    assert r.status_code == 401
    r = httpx.get(status, headers={"Authorization": f"Bearer {service.token()}"}, verify=service.tls, timeout=5)
    assert r.status_code == 200 and r.json()["sessionId"] == session["id"]

    page = httpx.get(f"{base}/", verify=service.tls, timeout=5)
    assert page.status_code == 200 and session["id"] not in page.text and service.account_id not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "access_token" in page.text and "location.hash" in page.text  # the page reads its token from #...


def test_session_inspect_prints_the_url_with_a_token_in_its_fragment(service: Service, session: dict[str, Any]) -> None:
    """`openrr session inspect --id ID` gives a URL whose fragment carries a fresh token of the account, and that
    token opens the inspector's status (the fragment never reaches a server)."""
    env = {
        **os.environ,
        "OPENRR_ACCOUNT_ID": service.account_id,
        "OPENRR_ACCOUNT_KEY": service.key,
        "OPENRR_ENDPOINT": service.endpoint,
        "OPENRR_CA_CERT": service.cert,
    }
    done = subprocess.run(
        [sys.executable, "-m", "openrr", "session", "inspect", "--id", session["id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    url = urlsplit(done.stdout.strip())
    assert url.port == session["arrInspectorPort"] and not url.query
    token = parse_qs(url.fragment)["access_token"][0]
    status = f"https://{url.hostname}:{url.port}/api/status"
    r = httpx.get(status, headers={"Authorization": f"Bearer {token}"}, verify=service.tls, timeout=5)
    assert r.status_code == 200 and r.json()["accountId"] == service.account_id
