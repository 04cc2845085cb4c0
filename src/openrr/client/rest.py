"""A small synchronous client of ARR's STS and 2021-01-01 session API (what RenderingSession.ps1 called)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from openrr import __version__
from openrr.client.errors import ClientError

API_VERSION = "2021-01-01"
_MAX_429_RETRIES = 3
_MAX_RETRY_AFTER_S = 30.0


class ArrHttpError(ClientError):
    """The service answered with an error status; carries ARR's error code/message and the MS-CV."""

    def __init__(self, operation: str, status: int, code: str | None, message: str, ms_cv: str | None) -> None:
        super().__init__(message)
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        self.ms_cv = ms_cv
        self.hint: str | None = None

    def __str__(self) -> str:
        what = f"HTTP {self.status}" + (f" {self.code}" if self.code else "")
        text = f"{self.operation} failed: {what}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        # The script printed MS-CV on every failure: it is what ARR support (or our logs) correlate on.
        return text + (f"\nResponse's MS-CV is '{self.ms_cv}'" if self.ms_cv else "")


class ArrConnectionError(ClientError):
    """No HTTP answer at all: refused, DNS, TLS, timeout."""


def tls_context(ca_cert: str | None) -> ssl.SSLContext:
    """Trust exactly `ca_cert` when given (openrr's self-signed certificate), else the system store."""
    return ssl.create_default_context(cafile=ca_cert) if ca_cert else ssl.create_default_context()


def error_of(operation: str, response: httpx.Response) -> ArrHttpError:
    code: str | None = None
    message = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = str(body["error"].get("message") or "")
    if not message:
        # STS failures (and 401/403/404 of the data plane) may have no body; the reason is in WWW-Authenticate.
        message = response.headers.get("www-authenticate") or response.reason_phrase or "no details given"
    return ArrHttpError(operation, response.status_code, code, message, response.headers.get("ms-cv"))


class RestClient:
    def __init__(
        self,
        *,
        endpoint: str,
        sts_endpoint: str,
        account_id: str,
        account_key: str,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.sts_endpoint = sts_endpoint.rstrip("/")
        self.account_id = account_id
        self._account_key = account_key
        self._token: str | None = None
        self._http = httpx.Client(
            verify=verify,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": f"openrr-cli/{__version__}"},
        )

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport -------------------------------------------------------------------------------

    def _send(self, operation: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(_MAX_429_RETRIES + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.HTTPError as e:
                raise ArrConnectionError(describe_transport_error(operation, url, e)) from e
            if response.status_code == 429 and attempt < _MAX_429_RETRIES:
                # ARR's throttling asks clients to come back after Retry-After; polling must not die of it.
                time.sleep(_retry_after(response))
                continue
            if response.status_code >= 400:
                raise error_of(operation, response)
            return response
        raise AssertionError("unreachable")

    def token(self) -> str:
        """One STS token per run, like the script's global cache (tokens live 24 h)."""
        if self._token is None:
            url = f"{self.sts_endpoint}/accounts/{quote(self.account_id, safe='')}/token"
            auth = {"Authorization": f"Bearer {self.account_id}:{self._account_key}"}
            try:
                doc = _json(self._send("getting an access token", "GET", url, headers=auth))
            except ArrHttpError as e:
                if e.status in (400, 401, 403):
                    e.hint = "check the account ID and account key"
                raise
            token = doc.get("AccessToken")
            if not isinstance(token, str) or not token:
                raise ArrConnectionError(f"{url} answered without an AccessToken")
            self._token = token
        return self._token

    def _api(self, operation: str, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        if body is not None:
            return self._send(operation, method, url, headers=headers, json=body)
        return self._send(operation, method, url, headers=headers)

    def _sessions_url(self, session_id: str | None = None) -> str:
        base = f"{self.endpoint}/accounts/{quote(self.account_id, safe='')}/sessions"
        return base if session_id is None else f"{base}/{quote(session_id, safe='')}"

    def _with_version(self, url: str) -> str:
        return f"{url}?api-version={API_VERSION}"

    # --- session operations ----------------------------------------------------------------------

    def create_session(self, session_id: str, lease_minutes: int, size: str) -> dict[str, Any]:
        url = self._with_version(self._sessions_url(session_id))
        body = {"maxLeaseTimeMinutes": lease_minutes, "size": size}
        return _json(self._api(f"creating session '{session_id}'", "PUT", url, body))

    def get_session(self, session_id: str) -> dict[str, Any]:
        url = self._with_version(self._sessions_url(session_id))
        return _json(self._api(f"getting session '{session_id}'", "GET", url))

    def update_session(self, session_id: str, lease_minutes: int) -> dict[str, Any]:
        url = self._with_version(self._sessions_url(session_id))
        body = {"maxLeaseTimeMinutes": lease_minutes}
        return _json(self._api(f"updating session '{session_id}'", "PATCH", url, body))

    def stop_session(self, session_id: str) -> None:
        url = self._with_version(self._sessions_url(session_id) + "/:stop")
        self._api(f"stopping session '{session_id}'", "POST", url)

    def list_sessions(self) -> Iterator[dict[str, Any]]:
        """Every live session, following `@nextLink` (a full URL that already carries api-version)."""
        url: str | None = self._with_version(self._sessions_url())
        seen: set[str] = set()
        while url is not None:
            if url in seen:
                raise ArrConnectionError(f"the service returned the same @nextLink twice: {url}")
            seen.add(url)
            page = _json(self._api("listing sessions", "GET", url))
            items = page.get("sessions") or []
            yield from (item for item in items if isinstance(item, dict))
            link = page.get("@nextLink")
            url = link if isinstance(link, str) and link else None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError as e:
        raise ArrConnectionError(f"{response.url} answered {response.status_code} without JSON") from e
    if not isinstance(doc, dict):
        raise ArrConnectionError(f"{response.url} answered {response.status_code} with non-object JSON")
    return doc


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def describe_transport_error(operation: str, url: str, error: httpx.HTTPError) -> str:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"{operation} failed: the TLS certificate of {url} is not trusted ({cause.verify_message}); "
                "pass --ca-cert FILE or set OPENRR_CA_CERT (openrr serve writes tls/cert.pem in its data directory)"
            )
        cause = cause.__cause__ or cause.__context__
    if "CERTIFICATE_VERIFY_FAILED" in str(error):
        return f"{operation} failed: the TLS certificate of {url} is not trusted; pass --ca-cert FILE"
    return f"{operation} failed: cannot reach {url}: {error or type(error).__name__}"
