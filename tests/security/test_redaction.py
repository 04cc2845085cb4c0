"""Finding 5 (URL half): URLs are shown everywhere without user-info, query or fragment, through one redactor
(openrr.protocol.redaction): in Entity.describe (load answers, welcome, getScene), the inspector and messages."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from openrr.client.render_session import RenderSessionClient
from openrr.protocol.redaction import display_url, redact
from openrr.storage.errors import redact as storage_redact
from tests.harness import Service

PASSWORD = "hunter2-Secret"
SIG = "s3cr3tSig%2B"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://user:{PASSWORD}@acct.blob.core.windows.net/c/m.glb?sv=1&sig={SIG}#frag", None),
        (f"http://user:{PASSWORD}@[::1]:8080/a/b.glb?token={SIG}", "http://[::1]:8080/a/b.glb"),
        (f"HTTP://{PASSWORD}@Host.Example:443/x.obj", "http://host.example:443/x.obj"),
        ("/srv/models/a.glb", "/srv/models/a.glb"),
        (f"file:///srv/models/a.glb?sig={SIG}", "file:///srv/models/a.glb"),
    ],
)
def test_display_url_drops_user_info_query_and_fragment(url: str, shown: str | None) -> None:
    """Finding 5: Entity.describe kept user:password@ (it only cut at '?')."""
    out = display_url(url)
    assert PASSWORD not in out and SIG not in out and "#" not in out, out
    assert out == (shown or "https://acct.blob.core.windows.net/c/m.glb")


def test_redact_masks_secrets_in_free_text() -> None:
    """Finding 5: free text quoting a URL (library errors) keeps neither its password nor its signature."""
    text = f"GET https://u:{PASSWORD}@h/c?sv=1&sig={SIG}&se=2 failed; AccountKey={SIG}; token={SIG} key={SIG}"
    out = redact(text)
    assert PASSWORD not in out and SIG not in out, out
    # Every SAS field goes, not only the signature (tests/unit/test_redaction.py feeds it each one).
    assert "https://h/c?sv=<redacted>&sig=<redacted>&se=<redacted>" in out
    assert storage_redact is redact  # storage errors use the same redactor


def test_sources_show_no_password_or_query_anywhere(
    service: Service, session: dict[str, Any], model_url: dict[str, str]
) -> None:
    """Finding 5: a model loaded as http://user:password@host/...?sig= showed its password in the load answer,
    in welcome, in getScene and on the inspector. Now every one of them shows scheme://host:port/path."""
    plain = model_url["sphere"]
    secret_url = plain.replace("http://", f"http://reader:{PASSWORD}@") + f"?sv=1&sig={SIG}"

    async def scenario() -> list[Any]:
        client = await RenderSessionClient.connect(
            session["hostname"], session["handshakePort"], service.token(), ca=service.cert
        )
        async with client:
            loaded = await client.load_model(secret_url)
            scene = await client.command("getScene")
        watcher = await RenderSessionClient.connect(
            session["hostname"], session["handshakePort"], service.token(), role="watcher", ca=service.cert
        )
        async with watcher:
            welcome = watcher.welcome
        return [loaded, scene, welcome]

    shown = asyncio.run(scenario())
    with httpx.Client(verify=service.tls) as http:
        r = http.get(
            f"https://{session['hostname']}:{session['arrInspectorPort']}/api/status",
            headers={"Authorization": f"Bearer {service.token()}"},
        )
    assert r.status_code == 200, r.text
    shown.append(r.json()["models"])
    text = repr(shown)
    assert PASSWORD not in text and SIG not in text and "reader" not in text, text
    assert plain in text
