"""The one redactor (openrr.protocol.redaction) alone: every secret parameter it knows is masked, in a URL's
query, in a connection string and in free text; parameters that carry nothing secret are kept."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from openrr.protocol.redaction import CREDENTIAL_PARAMETERS, SAS_PARAMETERS, SECRET_PARAMETERS, redact

SECRET = "s3cr3t%2BValue"
# Every field of an Azure Storage SAS (service, account and user-delegation SAS) and every credential name:
# spelled out here, not taken from the module, so that dropping one from the redactor fails this test.
EXPECTED_SECRET = {
    *("sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "sr", "si", "sig", "sdd", "ses"),
    *("skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid"),
    *("rscc", "rscd", "rsce", "rscl", "rsct", "tn", "spk", "srk", "epk", "erk"),
    *("signature", "accountkey", "account_key", "sharedaccesskey", "sharedaccesssignature", "key"),
    *("token", "access_token", "refresh_token", "id_token", "password", "secret", "client_secret"),
}
NOT_SECRET = ("restype", "comp", "prefix", "api-version", "skiptoken", "timeout", "marker", "maxresults", "include")


def test_the_lists_are_the_union_and_nothing_less() -> None:
    assert SECRET_PARAMETERS == SAS_PARAMETERS | CREDENTIAL_PARAMETERS
    assert EXPECTED_SECRET <= SECRET_PARAMETERS, EXPECTED_SECRET - SECRET_PARAMETERS


@pytest.mark.parametrize("name", sorted(EXPECTED_SECRET))
@pytest.mark.parametrize("spelling", [str.lower, str.upper])
def test_each_secret_parameter_is_masked_in_a_url(name: str, spelling: Callable[[str], str]) -> None:
    shown = spelling(name)
    text = f"GET https://acct.blob.core.windows.net/c/m.glb?restype=container&{shown}={SECRET}&comp=list failed"
    out = redact(text)
    assert SECRET not in out, out
    assert f"{shown}=<redacted>&comp=list" in out and "?restype=container&" in out, out


@pytest.mark.parametrize("name", sorted(EXPECTED_SECRET))
def test_each_secret_parameter_is_masked_in_free_text(name: str) -> None:
    for text in (f"{name}={SECRET}", f"'{name}={SECRET}'", f"a;{name}={SECRET};b", f"x {name}={SECRET} y"):
        out = redact(text)
        assert SECRET not in out and f"{name}=<redacted>" in out, out


@pytest.mark.parametrize("name", NOT_SECRET)
def test_other_parameters_are_kept(name: str) -> None:
    text = f"https://h/c?{name}=visible-1&sig={SECRET}"
    assert redact(text) == f"https://h/c?{name}=visible-1&sig=<redacted>"


def test_a_parameter_that_only_ends_like_a_secret_is_kept() -> None:
    # `\b`: "subkey" and "cost" are not "key" and "st".
    assert redact("subkey=1&cost=2&best=3") == "subkey=1&cost=2&best=3"


def test_a_connection_string_keeps_nothing_secret() -> None:
    text = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET};EndpointSuffix=core.windows.net"
    out = redact(text)
    assert SECRET not in out and "AccountName=acct" in out and "AccountKey=<redacted>" in out, out


def test_the_query_of_a_named_url_goes_whole() -> None:
    # What the model fetcher did: parameters nobody knows may still be secret in a URL the tenant gave.
    url = f"https://h/m.glb?custom-auth={SECRET}&v=2"
    out = redact(f"fetching {url} failed: 403", url)
    assert out == "fetching https://h/m.glb?<redacted> failed: 403"


def test_user_info_is_dropped() -> None:
    assert redact(f"http://user:{SECRET}@h:8080/x and ftp://{SECRET}@h/y") == "http://h:8080/x and ftp://h/y"
