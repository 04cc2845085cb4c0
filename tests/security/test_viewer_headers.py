"""The browser viewer's confinement (issue 9, finding 15): CSP, frame-ancestors, Referrer-Policy, nosniff, and
no account key taken from its URL. Real service over HTTPS, real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.browser import chromium
from tests.harness import Service

sync_api = pytest.importorskip("playwright.sync_api")


def test_viewer_responses_carry_the_security_headers(service: Service) -> None:
    """Finding 15: every response under /viewer (page, scripts, redirect, 404) has the CSP with
    frame-ancestors 'none', Referrer-Policy: no-referrer and nosniff, and no Server header.

    Before the fix none of the three headers was sent, so any site could frame the viewer."""
    with service.http() as http:
        responses = [
            http.get("/viewer/"),
            http.get("/viewer/index.html"),
            http.get("/viewer/viewer.js"),
            http.get("/viewer"),  # the redirect to /viewer/
            http.get("/viewer/missing.js"),
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 307, 404]
    for r in responses:
        csp = r.headers.get("content-security-policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ") if d}
        assert directives.get("default-src") == ["'self'"], (r.request.url, csp)
        assert directives.get("frame-ancestors") == ["'none'"], csp
        assert directives.get("connect-src") == ["'self'", "wss://127.0.0.1:*"], csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert r.headers.get("referrer-policy") == "no-referrer"
        assert r.headers.get("x-content-type-options") == "nosniff"
        assert "server" not in r.headers


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def test_viewer_refuses_a_key_in_its_url(browser: Any, service: Service) -> None:
    """Finding 15: a link with ?key= neither fills the key in nor connects; the key leaves the address bar and
    the page says why. The STS is never asked (the key is not used at all).

    Before the fix the viewer read the key from the query, fetched a token with it and connected."""
    sts_calls: list[str] = []
    page = browser.new_page()
    page.on("request", lambda req: sts_calls.append(req.url) if "/token" in req.url else None)
    query = {"account": service.account_id, "key": service.key, "session": "no-such-session"}
    try:
        page.goto(f"{service.endpoint}/viewer/?{urlencode(query)}")
        page.wait_for_function("() => window.openrrViewer?.lastError", timeout=10_000)
        assert page.evaluate("() => window.openrrViewer.lastError.code") == "Refused"
        assert page.locator("#key").input_value() == ""
        assert "key=" not in page.url and service.key not in page.url
        assert page.locator("#account").input_value() == service.account_id  # harmless settings still read
        assert not page.evaluate("() => window.openrrViewer.connected")
        assert sts_calls == []
    finally:
        page.close()


def test_csp_is_enforced_by_the_browser(browser: Any, service: Service) -> None:
    """Finding 15: Chromium applies the policy: a WebSocket to a host other than the render servers' and an
    inline script are blocked (security policy violations), while the render host is allowed. Loopback only.

    Before the fix there was no policy: nothing was blocked."""
    page = browser.new_page()
    try:
        page.goto(f"{service.endpoint}/viewer/?autoconnect=0")
        page.wait_for_function("() => window.openrrViewer !== undefined", timeout=10_000)
        page.evaluate(
            """() => {
              window.violations = [];
              document.addEventListener("securitypolicyviolation",
                (e) => window.violations.push(`${e.effectiveDirective} ${e.blockedURI}`));
              for (const url of ["wss://127.0.0.1:9/", "wss://127.0.0.2:9/"]) {
                try { new WebSocket(url); } catch (e) { window.violations.push(`threw ${url}`); }
              }
              const s = document.createElement("script");
              s.textContent = "window.inlineRan = true";
              document.body.appendChild(s);
            }"""
        )
        page.wait_for_function("() => window.violations.length >= 2", timeout=10_000)
        violations = sorted(page.evaluate("() => window.violations"))
        assert not page.evaluate("() => Boolean(window.inlineRan)")
        assert any(v.startswith("connect-src wss://127.0.0.2:9") or v == "threw wss://127.0.0.2:9/" for v in violations)
        assert any(v.startswith("script-src-elem inline") for v in violations), violations
        assert not any("127.0.0.1:9" in v for v in violations), violations
    finally:
        page.close()
