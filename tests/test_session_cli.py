"""`openrr session ...` run as a user runs it: a subprocess talking HTTPS to a real `openrr serve`."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openrr.cli.session import TERMINAL, poll_interval
from openrr.cli.toolkit import StatusLine, WaitTimeout, poll_until_terminal
from openrr.client.arrconfig import ConfigError, is_filled, resolve_lease, to_domain
from tests.harness import Service, running_service, session_doc

# ARR's Scripts/arrconfig.json as shipped: every value a "<...>" placeholder.
ARR_TEMPLATE: dict[str, dict[str, str]] = {
    "accountSettings": {
        "arrAccountId": "<fill in the account ID from the Azure Portal>",
        "arrAccountKey": "<fill in the account key from the Azure Portal>",
        "arrAccountDomain": "<select from available regions: australiaeast, eastus, eastus2, japaneast, "
        "northeurope, southcentralus, southeastasia, uksouth, westeurope, westus2 or specify the full url>",
    },
    "renderingSessionSettings": {
        "remoteRenderingDomain": "<select from available regions: australiaeast, eastus, eastus2, japaneast, "
        "northeurope, southcentralus, southeastasia, uksouth, westeurope, westus2 or specify the full url>",
        "vmSize": "<standard or premium>",
        "maxLeaseTime": "<hh:mm:ss>",
    },
    "assetConversionSettings": {
        "resourceGroup": "<resource group which contains the storage account you created>",
        "storageAccountName": "<name of the storage account you created>",
        "blobInputContainerName": "<input container inside the storage container>",
        "blobOutputContainerName": "<output container inside the storage container>",
        "localAssetDirectoryPath": "<fill in a path to a local directory containing your asset>",
        "inputFolderPath": "<optional: base folderpath in the input container for asset upload>",
        "inputAssetPath": "<the path to the asset under inputcontainer/inputfolderpath>",
        "outputFolderPath": "<optional: base folderpath in the output container>",
        "outputAssetFileName": "<optional: filename for the converted asset>",
    },
}


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _host_port(service: Service) -> str:
    return service.endpoint.removeprefix("https://")


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # Nothing from the test runner's environment may leak in (the SDK tests set REQUESTS_CA_BUNDLE).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENRR_") and k != "REQUESTS_CA_BUNDLE"}
    env.update(extra or {})
    return env


def cli(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openrr", "session", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(env),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def write_arrconfig(path: Path, **values: str) -> Path:
    """ARR's template with the given `section.key`-less names filled in (arrAccountId=..., vmSize=...)."""
    doc = json.loads(json.dumps(ARR_TEMPLATE))
    for key, value in values.items():
        section = next(s for s in doc.values() if key in s)
        section[key] = value
    path.write_text(json.dumps(doc, indent=4))
    return path


@pytest.fixture
def arrconfig(service: Service, tmp_path: Path) -> Path:
    return write_arrconfig(
        tmp_path / "arrconfig.json",
        arrAccountId=service.account_id,
        arrAccountKey=service.key,
        arrAccountDomain=_host_port(service),  # bare host:port: ToDomain makes it https://
        remoteRenderingDomain=service.endpoint,  # a full URL is taken as it is
        vmSize="standard",
        maxLeaseTime="4:0:0",
    )


@pytest.fixture
def env_settings(service: Service) -> dict[str, str]:
    return {
        "OPENRR_ACCOUNT_ID": service.account_id,
        "OPENRR_ACCOUNT_KEY": service.key,
        "OPENRR_ENDPOINT": _host_port(service),
        "OPENRR_CA_CERT": service.cert,
    }


@pytest.fixture
def created(service: Service) -> Iterator[list[str]]:
    """Session ids a test made: all stopped afterwards, whatever the test did."""
    ids: list[str] = []
    yield ids
    with service.api() as api:
        for sid in ids:
            api.post(f"/accounts/{service.account_id}/sessions/{sid}/:stop", params={"api-version": "2021-01-01"})


def _field(stdout: str, label: str) -> str:
    m = re.search(rf"^\s+{label}:\s+(.*)$", stdout, re.MULTILINE)
    assert m, f"no {label} in:\n{stdout}"
    return m.group(1).strip()


def _ids_listed(service: Service) -> set[str]:
    with service.api() as api:
        r = api.get(f"/accounts/{service.account_id}/sessions", params={"api-version": "2021-01-01"})
        return {s["id"] for s in r.json()["sessions"]}


# --- the lifecycle, driven by an ARR arrconfig.json ----------------------------------------------


def test_lifecycle_with_arrconfig(service: Service, arrconfig: Path, tmp_path: Path, created: list[str]) -> None:
    sid = _id("cli-cfg")
    created.append(sid)
    conn: list[str | Path] = ["--config", arrconfig, "--ca-cert", service.cert]

    r = cli("create", *conn, "--id", sid, "--wait", "--poll-interval", "0.2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Session is ready." in r.stdout
    assert _field(r.stdout, "sessionId") == sid
    assert _field(r.stdout, "sessionStatus") == "Ready"
    assert _field(r.stdout, "sessionMaxLeaseTimeMinutes") == "240"  # "4:0:0" from the file
    assert _field(r.stdout, "sessionSize") == "Standard"
    # Not a terminal: the status display falls back to plain lines.
    assert f"Session '{sid}': Ready" in r.stderr and "\r" not in r.stderr
    with service.api() as api:
        doc = session_doc(api, service.account_id, sid)
    assert doc["status"] == "Ready" and doc["maxLeaseTimeMinutes"] == 240
    assert _field(r.stdout, "handshakePort") == str(doc["handshakePort"])
    assert _field(r.stdout, "sessionHostname") == doc["hostname"]

    r = cli("get", *conn, "--id", sid, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _field(r.stdout, "sessionStatus") == "Ready"
    assert _field(r.stdout, "arrInspectorPort") == str(doc["arrInspectorPort"])
    r = cli("get", *conn, "--id", sid, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == doc

    # Without --config the CLI reads ./arrconfig.json, as the script read the file next to it.
    r = cli("list", "--ca-cert", service.cert, cwd=arrconfig.parent)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"sessionId:\s+{sid}$", r.stdout, re.MULTILINE)
    assert r.stdout.startswith("Currently there are ")
    r = cli("list", *conn, "--json", cwd=tmp_path)
    assert sid in {s["id"] for s in json.loads(r.stdout)["sessions"]}

    r = cli("extend", *conn, "--id", sid, "--lease-minutes", "300", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _field(r.stdout, "sessionMaxLeaseTimeMinutes") == "300"
    r = cli("extend", *conn, "--id", sid, "--lease-time", "6:00:00", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["maxLeaseTimeMinutes"] == 360
    with service.api() as api:
        assert session_doc(api, service.account_id, sid)["maxLeaseTimeMinutes"] == 360
    # A shorter lease is ARR's 422: code, message and MS-CV reach the user.
    r = cli("extend", *conn, "--id", sid, "--lease-minutes", "10", cwd=tmp_path)
    assert r.returncode == 1
    assert "HTTP 422 UnprocessableEntity" in r.stderr and "MS-CV is '" in r.stderr

    r = cli("stop", *conn, "--id", sid, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _field(r.stdout, "sessionStatus") == "Stopped"
    r = cli("get", *conn, "--id", sid, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _field(r.stdout, "sessionStatus") == "Stopped"
    assert "sessionHostname" not in r.stdout  # ARR drops hostname and ports once stopped
    assert sid not in _ids_listed(service)
    # Waiting on a session that can no longer become Ready ends at once, and not with success.
    r = cli("get", *conn, "--id", sid, "--wait", cwd=tmp_path)
    assert r.returncode == 1
    assert "The session was stopped." in r.stdout


# --- flags and environment -----------------------------------------------------------------------


def test_lifecycle_with_env_and_flags(
    service: Service, env_settings: dict[str, str], tmp_path: Path, created: list[str]
) -> None:
    sid = _id("cli-env")
    created.append(sid)
    r = cli(
        "create", "--id", sid, "--size", "PREMIUM", "--lease-minutes", "10", "--wait", "--poll-interval", "0.2",
        "--json", cwd=tmp_path, env=env_settings,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["id"] == sid and doc["status"] == "Ready"
    assert doc["size"] == "Premium" and doc["maxLeaseTimeMinutes"] == 10

    # Flags alone, no environment and no file; separate account domain given as a full URL.
    flags = [
        "--account-id", service.account_id, "--account-key", service.key, "--ca-cert", service.cert,
        "--endpoint", _host_port(service), "--sts-endpoint", service.endpoint,
    ]  # fmt: skip
    r = cli("stop", *flags, "--id", sid, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "Stopped"
    with service.api() as api:
        assert session_doc(api, service.account_id, sid)["status"] == "Stopped"


def test_precedence_flags_over_env_over_file(service: Service, env_settings: dict[str, str], tmp_path: Path) -> None:
    dead = "127.0.0.1:1"  # nothing listens there: using it would fail loudly
    config = write_arrconfig(
        tmp_path / "arrconfig.json",
        arrAccountId=service.account_id,
        arrAccountKey="wrong-key-from-the-file",
        arrAccountDomain=dead,
        remoteRenderingDomain=dead,
    )
    # The environment beats the file.
    r = cli("list", "--config", config, cwd=tmp_path, env={**env_settings, "OPENRR_STS_ENDPOINT": service.endpoint})
    assert r.returncode == 0, r.stderr
    # Flags beat the environment.
    bad_env = {**env_settings, "OPENRR_ACCOUNT_KEY": "wrong-key-from-env", "OPENRR_STS_ENDPOINT": dead}
    r = cli(
        "list", "--config", config, "--account-key", service.key, "--sts-endpoint", _host_port(service),
        cwd=tmp_path, env=bad_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    # And without the flag, the environment's wrong key is what gets used.
    r = cli("list", "--config", config, cwd=tmp_path, env={**bad_env, "OPENRR_STS_ENDPOINT": service.endpoint})
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    # A placeholder in the environment counts as not set: the file's value is used (here: wrong key).
    r = cli(
        "list", "--config", config, "--sts-endpoint", service.endpoint, "--endpoint", service.endpoint,
        cwd=tmp_path, env={**env_settings, "OPENRR_ACCOUNT_KEY": "<fill in>"},
    )  # fmt: skip
    # The STS answers a bare 401, as ARR's did (issue 9: no reason to probe with); the CLI says what to check.
    assert r.returncode == 1 and "HTTP 401" in r.stderr and "check the account ID and account key" in r.stderr


def test_default_session_id_like_the_script(
    service: Service, env_settings: dict[str, str], tmp_path: Path, created: list[str]
) -> None:
    r = cli("create", "--size", "standard", "--lease-time", "0:30:00", cwd=tmp_path, env=env_settings)
    assert r.returncode == 0, r.stderr
    sid = _field(r.stdout, "sessionId")
    created.append(sid)
    assert re.fullmatch(r"Sample-Session-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", sid)
    assert _field(r.stdout, "sessionStatus") in ("Starting", "Ready")  # without --wait: as the PUT answered
    r = cli("get", "--id", sid, "--wait", "--poll-interval", "0.2", cwd=tmp_path, env=env_settings)
    assert r.returncode == 0, r.stderr
    assert _field(r.stdout, "sessionStatus") == "Ready"
    assert _field(r.stdout, "sessionMaxLeaseTimeMinutes") == "30"
    assert cli("stop", "--id", sid, cwd=tmp_path, env=env_settings).returncode == 0


def test_live_status_line_on_a_terminal(
    service: Service, env_settings: dict[str, str], tmp_path: Path, created: list[str]
) -> None:
    sid = _id("cli-tty")
    created.append(sid)
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "openrr", "session", "create", "--id", sid, "--size", "standard",
         "--lease-minutes", "5", "--wait", "--poll-interval", "0.2"],
        stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL, cwd=tmp_path, env=_clean_env(env_settings),
    )  # fmt: skip
    os.close(secondary)
    tty_bytes = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # drain the terminal while the child writes to it
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            tty_bytes += chunk
        elif proc.poll() is not None:
            break
    os.close(primary)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, tty_bytes
    text = tty_bytes.decode()
    # Redrawn in place: carriage return, status and seconds, then clear-to-end-of-line.
    assert re.search(rf"\rSession '{sid}': Ready \(\d+ s\)\x1b\[K", text), text
    assert b"sessionStatus:" in stdout


def test_list_follows_next_link(base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A service that pages after every session: the CLI must walk @nextLink to show them all.
    monkeypatch.setenv("OPENRR_LIST_PAGE_SIZE", "1")
    # Capacity 4: the default quota (capacity - 1) lets one account hold the 3 sessions.
    with running_service(base_dir / "cli-paging", "--capacity", "Standard=4,Premium=0",
                         "--warm-pool", "Standard=0,Premium=0") as svc:  # fmt: skip
        env = {
            "OPENRR_ACCOUNT_ID": svc.account_id,
            "OPENRR_ACCOUNT_KEY": svc.key,
            "OPENRR_ENDPOINT": svc.endpoint,
            "OPENRR_CA_CERT": svc.cert,
        }
        sids = [_id(f"cli-page{i}") for i in range(3)]
        try:
            for sid in sids:
                r = cli("create", "--id", sid, "--size", "standard", "--lease-minutes", "5", cwd=tmp_path, env=env)
                assert r.returncode == 0, r.stderr
            with svc.api() as api:
                first = api.get(f"/accounts/{svc.account_id}/sessions", params={"api-version": "2021-01-01"}).json()
            assert len(first["sessions"]) == 1 and first["@nextLink"]  # really paged
            r = cli("list", "--json", cwd=tmp_path, env=env)
            assert r.returncode == 0, r.stderr
            assert [s["id"] for s in json.loads(r.stdout)["sessions"]] == sids  # oldest first, each once
            r = cli("list", cwd=tmp_path, env=env)
            assert r.stdout.startswith("Currently there are 3 sessions:")
        finally:
            for sid in sids:
                cli("stop", "--id", sid, cwd=tmp_path, env=env)


# --- failures ------------------------------------------------------------------------------------


def test_missing_settings_are_named(tmp_path: Path) -> None:
    template = write_arrconfig(tmp_path / "arrconfig.json")  # ARR's file, nothing filled in
    r = cli("create", "--config", template, cwd=tmp_path)
    assert r.returncode == 2
    for setting in (
        "accountSettings.arrAccountId",
        "accountSettings.arrAccountKey",
        "renderingSessionSettings.remoteRenderingDomain",
        "renderingSessionSettings.vmSize",
        "renderingSessionSettings.maxLeaseTime",
    ):
        assert f"{setting} not filled in" in r.stderr, r.stderr
    assert str(template) in r.stderr
    assert r.stdout == ""

    # No file at all: the message points at the flags and environment variables instead.
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("list", cwd=empty)
    assert r.returncode == 2
    assert "--account-id" in r.stderr and "OPENRR_ACCOUNT_ID" in r.stderr and "--config FILE" in r.stderr

    bad = write_arrconfig(
        tmp_path / "bad.json", arrAccountId="not-a-guid", arrAccountKey="k", remoteRenderingDomain="x:1",
        vmSize="huge", maxLeaseTime="four hours",
    )  # fmt: skip
    r = cli("create", "--config", bad, cwd=tmp_path)
    assert r.returncode == 2
    assert "'not-a-guid' is not a valid GUID" in r.stderr
    assert "vmSize 'huge' not valid" in r.stderr
    assert "maxLeaseTime not valid" in r.stderr

    r = cli("list", "--config", tmp_path / "nowhere.json", cwd=tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr
    (tmp_path / "broken.json").write_text('{"accountSettings": {,}}')
    r = cli("list", "--config", tmp_path / "broken.json", cwd=tmp_path)
    assert r.returncode == 2 and "could not parse config file" in r.stderr


def test_missing_session_id_without_a_terminal(env_settings: dict[str, str], tmp_path: Path) -> None:
    for action in ("get", "stop"):
        r = cli(action, cwd=tmp_path, env=env_settings)
        assert r.returncode == 2 and "pass --id" in r.stderr


def test_wrong_key_is_a_clear_error(service: Service, env_settings: dict[str, str], tmp_path: Path) -> None:
    r = cli("list", cwd=tmp_path, env={**env_settings, "OPENRR_ACCOUNT_KEY": "not-the-key"})
    assert r.returncode == 1
    assert "getting an access token failed: HTTP 401" in r.stderr
    assert "check the account ID and account key" in r.stderr
    assert "MS-CV is '" in r.stderr
    r = cli("list", cwd=tmp_path, env={**env_settings, "OPENRR_ACCOUNT_ID": str(uuid.uuid4())})
    assert r.returncode == 1 and "HTTP 401" in r.stderr


def test_unknown_session_and_untrusted_certificate(env_settings: dict[str, str], tmp_path: Path) -> None:
    r = cli("get", "--id", "no-such-session", cwd=tmp_path, env=env_settings)
    assert r.returncode == 1
    assert "HTTP 404 NotFound" in r.stderr and "no-such-session" in r.stderr and "MS-CV is '" in r.stderr

    untrusting = {k: v for k, v in env_settings.items() if k != "OPENRR_CA_CERT"}
    r = cli("list", cwd=tmp_path, env=untrusting)
    assert r.returncode == 1
    assert "is not trusted" in r.stderr and "--ca-cert" in r.stderr
    (tmp_path / "junk.pem").write_text("not a certificate")
    r = cli("list", "--ca-cert", tmp_path / "junk.pem", cwd=tmp_path, env=untrusting)
    assert r.returncode == 2 and "cannot load CA certificate" in r.stderr
    r = cli("list", cwd=tmp_path, env={**untrusting, "REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert r.returncode == 2 and "(from REQUESTS_CA_BUNDLE) not found" in r.stderr


def test_session_in_error_exits_1(base_dir: Path, tmp_path: Path) -> None:
    # No Premium capacity at all: the service puts a Premium session into Error.
    with running_service(base_dir / "cli-no-premium", "--capacity", "Standard=1,Premium=0",
                         "--warm-pool", "Standard=0") as svc:  # fmt: skip
        env = {
            "OPENRR_ACCOUNT_ID": svc.account_id,
            "OPENRR_ACCOUNT_KEY": svc.key,
            "OPENRR_ENDPOINT": svc.endpoint,
            "OPENRR_CA_CERT": svc.cert,
        }
        sid = _id("cli-err")
        r = cli("create", "--id", sid, "--size", "premium", "--lease-minutes", "5", "--wait",
                "--poll-interval", "0.2", cwd=tmp_path, env=env)  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        assert "resulted in an error" in r.stdout
        assert _field(r.stdout, "sessionStatus") == "Error"
        assert _field(r.stdout, "error").startswith("NoServerAvailable: ")


# --- pieces that need no server ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "url"),
    [
        ("westeurope", "rendering", "https://remoterendering.westeurope.mixedreality.azure.com"),
        ("eastus", "account", "https://sts.eastus.mixedreality.azure.com"),
        ("https://eastus2.mixedreality.azure.com/", "account", "https://sts.eastus2.mixedreality.azure.com"),
        ("127.0.0.1:8443", "rendering", "https://127.0.0.1:8443"),
        ("localhost:8443", "account", "https://localhost:8443"),
        ("https://openrr.example.org", "rendering", "https://openrr.example.org"),
        ("http://127.0.0.1:8080", "rendering", "http://127.0.0.1:8080"),
        ("mars", "rendering", "https://mars"),
    ],
)
def test_to_domain(value: str, kind: Any, url: str) -> None:
    assert to_domain(value, kind) == url


def test_placeholders_and_lease_parsing() -> None:
    assert not is_filled("<fill in the account ID from the Azure Portal>")
    assert not is_filled("  ") and not is_filled(None) and is_filled("x")
    assert resolve_lease("4:0:0", None, None) == 240
    assert resolve_lease("1.00:00:00", None, None) == 1440
    assert resolve_lease("ignored", 17, None) == 17
    with pytest.raises(ConfigError, match="maxLeaseTime not filled in"):
        resolve_lease(None, None, None)
    with pytest.raises(ConfigError, match="not valid"):
        resolve_lease("25:00:00", None, None)


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_is_bounded_by_the_timeout() -> None:
    # A session that never leaves Starting: the loop must give up at --timeout, on a fake clock.
    clock = _FakeClock()
    polls: list[float] = []

    def fetch() -> dict[str, Any]:
        polls.append(clock.now)
        return {"id": "s", "status": "Starting", "size": "Standard"}

    with open(os.devnull, "w") as sink, pytest.raises(WaitTimeout) as e:
        poll_until_terminal(
            fetch, TERMINAL, StatusLine(sink, "s"), poll_interval(None), 7.0, clock=clock, sleep=clock.sleep
        )
    assert e.value.last["status"] == "Starting" and e.value.waited_s == pytest.approx(7.0)
    assert polls == [0.0, 2.0, 4.0, 6.0, 7.0]  # the script's 2 s for standard, then the remainder


def test_unreachable_endpoint(tmp_path: Path, service: Service) -> None:
    r = cli(
        "list", "--account-id", service.account_id, "--account-key", service.key, "--endpoint", "127.0.0.1:1",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1 and "cannot reach https://127.0.0.1:1/" in r.stderr


def test_the_cli_does_not_load_the_render_stack() -> None:
    """`openrr session|convert|account` start in a fraction of a second: building the CLI's parser used to import
    the render server (GL, OpenCV, aiortc, trimesh), ~1.7 s before the command did anything. The render server's
    own options stay behind `openrr render-server --help`."""
    heavy = ["openrr.render.server", "openrr.render.session", "moderngl", "cv2", "aiortc", "trimesh"]
    probe = (
        "import sys\n"
        "from openrr.cli.main import build_parser\n"
        "build_parser().parse_args(['session', 'list'])\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "openrr", "render-server", "--help"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 0 and "--ports-file" in usage.stdout and "--standard-primitive-limit" in usage.stdout
