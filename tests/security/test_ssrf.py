"""Finding 4 (SSRF) and the gzip-bomb half of finding 6: outbound fetches refuse non-public addresses unless the
operator allows them (--fetch-allow), at every redirect, and decoded bytes and compression ratio are capped.

Network rule: only loopback servers are ever connected to. Link-local, private and unique-local refusals are
proved on the address check alone, on IP literals, never by letting anything try to connect.
"""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import trimesh

from openrr.client.render_session import RenderSessionClient, SessionError
from openrr.config import Settings
from openrr.model.mesh import ModelLoadError
from openrr.protocol.storage_uri import parse_container_uri
from openrr.render.model_loader import load_model
from openrr.render.source_fetch import SourceFetchFailed, fetch_source
from openrr.storage.blob import BlobContainer
from openrr.storage.container import ContainerAccess
from openrr.storage.errors import StorageError
from openrr.storage.fetch import HttpOptions
from openrr.storage.guard import FetchPolicy, FetchRefused, check_address, resolve_checked
from tests.harness import Service, free_port, ready_session, wait_for

API = {"api-version": "2021-01-01"}
MiB = 1 << 20


# --- loopback servers that record every request ----------------------------------------------------


@dataclass
class Recorder:
    """A loopback HTTP server: answers `routes` (path -> (status, headers, body)), 404 otherwise, and records
    every request line it receives."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def recorder(routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None) -> Iterator[Recorder]:
    rec = Recorder(routes or {})

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            rec.hits.append(f"{self.command} {self.path}")
            status, headers, body = rec.routes.get(self.path.split("?", 1)[0], (404, {}, b""))
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def gzip_bomb(decoded: int, block: int = 16 * MiB) -> bytes:
    """A gzip stream of `decoded` zero bytes (~1000:1), built from one compressed block repeated: a full flush
    makes each block independent of what came before, so the repeats are a valid stream."""
    zeros = bytes(block)
    head = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = head.compress(zeros) + head.flush(zlib.Z_FULL_FLUSH)  # gzip header + first block
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    repeat = raw.compress(zeros) + raw.flush(zlib.Z_FULL_FLUSH)
    last = raw.flush()  # the final (empty) block
    count = decoded // block
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    return first + repeat * (count - 1) + last + struct.pack("<II", crc, (count * block) & 0xFFFFFFFF)


# --- the address check, on literals only --------------------------------------------------------------

REFUSED = [
    ("169.254.169.254", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),
    ("fd00::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("224.0.0.1", "multicast"),
]


@pytest.mark.parametrize(("ip", "kind"), REFUSED)
def test_address_check_refuses_every_non_public_class(ip: str, kind: str) -> None:
    """Finding 4: nothing refused these before (the render server fetched any URL). Literals only: no connect."""
    with pytest.raises(FetchRefused) as e:
        check_address(ip, 80)
    message = str(e.value)
    assert kind in message and "--fetch-allow" in message and "OPENRR_FETCH_ALLOW" in message, message


def test_allow_entries_open_exactly_what_they_name() -> None:
    """Finding 4: a CIDR opens its range (IPv4-mapped spellings too), host:port only that port, a host name only
    that name as written; everything else stays refused. Literals only: no connect."""
    policy = FetchPolicy.parse("10.0.0.0/8,127.0.0.1:10000,[::1]:8080,fd00::/8,azurite")
    check_address("10.0.0.1", 443, policy=policy)
    check_address("::ffff:10.0.0.1", 443, policy=policy)
    check_address("fd00::1", 80, policy=policy)
    check_address("127.0.0.1", 10000, policy=policy)
    check_address("::1", 8080, policy=policy)
    check_address("172.17.0.2", 10000, "azurite", policy=policy)
    for ip, port in (("172.16.0.1", 443), ("127.0.0.1", 10001), ("::1", 8081), ("169.254.169.254", 80)):
        with pytest.raises(FetchRefused):
            check_address(ip, port, policy=policy)
    check_address("8.8.8.8", 443)  # public: allowed without any entry
    for bad in ("10.0.0.0/33", "host:port", "[::1", "::1:x:y:z:w:v:u:t:s"):
        with pytest.raises(ValueError):
            FetchPolicy.parse(bad)


def test_setting_takes_the_comma_separated_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 4: OPENRR_FETCH_ALLOW as the README writes it (not a JSON list), checked when settings load."""
    monkeypatch.setenv("OPENRR_FETCH_ALLOW", "127.0.0.1:10000, 10.0.0.0/8")
    assert Settings().fetch_allow == ["127.0.0.1:10000", "10.0.0.0/8"]
    monkeypatch.setenv("OPENRR_FETCH_ALLOW", "10.0.0.0/40")
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/40"):
        Settings()


def test_names_are_checked_after_resolution() -> None:
    """Finding 4: a host name is judged by what it resolves to (every address), before any connection."""
    with pytest.raises(FetchRefused, match=r"localhost:\d+ \((127\.0\.0\.1|::1)\): loopback"):
        resolve_checked("localhost", 9, FetchPolicy())
    infos = resolve_checked("localhost", 9, FetchPolicy.parse("127.0.0.0/8,::1/128"))
    assert all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


# --- model loads, direct --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphere() -> bytes:
    data: bytes = trimesh.creation.icosphere(subdivisions=2).export(file_type="glb")
    return data


def test_model_load_refuses_loopback_by_default_and_loads_once_allowed(sphere: bytes) -> None:
    """Finding 4: load_model fetched any URL; now a loopback server is refused (it sees no request) unless the
    policy allows its address."""
    with recorder({"/sphere.glb": (200, {}, sphere)}) as server:
        with pytest.raises(ModelLoadError, match=r"loopback addresses are not allowed.*--fetch-allow"):
            load_model(f"{server.base}/sphere.glb")
        assert server.hits == []
        allowed = HttpOptions(FetchPolicy.parse(f"127.0.0.1:{server.port}"))
        assert load_model(f"{server.base}/sphere.glb", http=allowed).triangles > 0


def test_environment_fetch_refuses_loopback_by_default_and_fetches_once_allowed() -> None:
    """Issue 11: environment maps (setEnvironment) come through render/source_fetch.py, under the same policy as
    models: a loopback server is refused before it sees a request, unless the policy allows it."""
    with recorder({"/sky.hdr": (200, {}, b"#?RADIANCE")}) as server:
        with pytest.raises(SourceFetchFailed, match=r"loopback addresses are not allowed.*--fetch-allow"):
            fetch_source(f"{server.base}/sky.hdr", max_bytes=1024)
        assert server.hits == []
        allowed = HttpOptions(FetchPolicy.parse(f"127.0.0.1:{server.port}"))
        assert fetch_source(f"{server.base}/sky.hdr", max_bytes=1024, http=allowed)[0] == b"#?RADIANCE"


def test_redirect_to_a_loopback_port_not_allowed_is_refused() -> None:
    """Finding 4: a 302 from an allowed server took the fetch to a loopback "admin" service; every hop is now
    checked, so the admin server receives nothing."""
    with recorder() as admin:
        location = f"{admin.base}/admin/delete-everything.glb"
        with recorder({"/model.glb": (302, {"Location": location}, b"")}) as public:
            allowed = HttpOptions(FetchPolicy.parse(f"127.0.0.1:{public.port}"))
            with pytest.raises(ModelLoadError, match=rf"127\.0\.0\.1:{admin.port}: loopback.*--fetch-allow"):
                load_model(f"{public.base}/model.glb", http=allowed)
            assert public.hits == ["GET /model.glb"]
        assert admin.hits == []


def test_gzip_bomb_stops_at_the_ratio_limit() -> None:
    """Finding 6: a 1.9 MB gzip bomb decoded to 1.9 GB. Now decoding stops past the ratio cap, in steps of
    at most 1 MiB, so memory stays small (this process's peak RSS does not grow by the bomb's size)."""
    bomb = gzip_bomb(3 * 1024 * MiB)
    assert len(bomb) < 4 * MiB
    headers = {"Content-Encoding": "gzip", "Content-Type": "model/gltf-binary"}
    with recorder({"/bomb.glb": (200, headers, bomb)}) as server:
        allowed = HttpOptions(FetchPolicy.parse(f"127.0.0.1:{server.port}"), max_compression_ratio=200)
        before = psutil.Process().memory_info().rss
        with pytest.raises(ModelLoadError, match=r"more than 200 times.*--model-max-compression-ratio"):
            load_model(f"{server.base}/bomb.glb", http=allowed)
        assert psutil.Process().memory_info().rss - before < 200 * MiB
        # The byte cap alone (ratio off) stops it too.
        no_ratio = HttpOptions(allowed.policy, max_compression_ratio=1e9)
        with pytest.raises(ModelLoadError, match=r"decodes to over 50000000 bytes.*--model-max-bytes"):
            load_model(f"{server.base}/bomb.glb", http=no_ratio, max_bytes=50_000_000)


# --- blob clients (conversion workers) ------------------------------------------------------------------


def test_blob_container_refuses_a_loopback_endpoint_before_connecting() -> None:
    """Finding 4: conversion containers could be any http://host:port/; the worker sent GETs and PUTs there.
    The azure client now connects through the guard: refused, and the server sees nothing; allowed, it does."""
    with recorder() as server:
        uri = parse_container_uri(f"{server.base}/acct/c")
        refused = BlobContainer(uri, ContainerAccess(uri=uri.uri, sas="sv=1&sig=x"))
        with pytest.raises(StorageError) as e:
            list(refused.list(""))
        assert e.value.reason == "refused" and "--fetch-allow" in e.value.message, e.value.message
        refused.close()
        assert server.hits == []
        allowed = ContainerAccess(uri=uri.uri, sas="sv=1&sig=x", fetch_allow=[f"127.0.0.1:{server.port}"])
        container = BlobContainer(uri, allowed)
        with pytest.raises(StorageError) as e:
            list(container.list(""))
        container.close()
        assert e.value.reason == "not_found" and server.hits, (e.value.message, server.hits)


# --- end to end: a service that allows one loopback port ------------------------------------------------


@dataclass
class Site:
    models: Recorder
    admin: Recorder


@pytest.fixture(scope="module")
def site(sphere: bytes) -> Iterator[Site]:
    bomb = gzip_bomb(3 * 1024 * MiB)
    with recorder() as admin:
        routes = {
            "/sphere.glb": (200, {}, sphere),
            "/hop.glb": (302, {"Location": f"{admin.base}/sphere.glb"}, b""),
            "/bomb.glb": (200, {"Content-Encoding": "gzip"}, bomb),
        }
        with recorder(routes) as site_models:
            yield Site(site_models, admin)


@pytest.fixture(scope="module")
def svc(base_dir: Path, site: Site) -> Iterator[Service]:
    service = Service(
        base_dir / "ssrf",
        free_port(),
        ["--warm-pool", "Standard=1", "--rate-limit-per-s", "0", "--fetch-allow", f"127.0.0.1:{site.models.port}"],
    ).start()
    yield service
    assert service.stop() == 0


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_session_fetches_only_what_the_operator_allows(svc: Service, site: Site) -> None:
    """Finding 4 (and 6's bomb, on the render server): before, a session fetched from any loopback port and
    followed a 302 to an "admin" service (models, and since issue 11 environment maps), and a gzip bomb took the
    server to 4.1 GB. Now the allowed port loads, another loopback port and a redirect to it are refused naming
    --fetch-allow (the admin server sees nothing), and the bomb fails on the ratio limit while the server's peak
    RSS stays small."""

    async def scenario(doc: dict[str, Any], pid: int) -> None:
        client = await RenderSessionClient.connect(doc["hostname"], doc["handshakePort"], svc.token(), ca=svc.cert)
        async with client:
            loaded = await client.load_model(f"{site.models.base}/sphere.glb")
            assert loaded["triangles"] > 0
            for url in (f"{site.admin.base}/sphere.glb", f"{site.models.base}/hop.glb"):
                with pytest.raises(SessionError) as e:
                    await client.load_model(url)
                assert f"127.0.0.1:{site.admin.port}: loopback addresses are not allowed" in e.value.message
                assert "--fetch-allow" in e.value.message
            # environment maps are fetched by the same guard (issue 11's setEnvironment)
            with pytest.raises(SessionError) as e:
                await client.set_environment(f"{site.admin.base}/sky.hdr")
            assert e.value.code == "EnvironmentLoadFailed", e.value
            assert f"127.0.0.1:{site.admin.port}: loopback addresses are not allowed" in e.value.message
            peak = _peak_rss(pid)
            with pytest.raises(SessionError) as e:
                await client.load_model(f"{site.models.base}/bomb.glb")
            assert "model-max-compression-ratio" in e.value.message, e.value.message
            assert _peak_rss(pid) - peak < 300 * MiB

    with ready_session(svc, "ssrf") as doc:
        pid = int(svc.host_record(doc["id"])["pid"])  # not the warm pool's server
        asyncio.run(scenario(doc, pid))
    assert site.admin.hits == []


def test_conversion_container_on_a_loopback_port_is_refused(svc: Service) -> None:
    """Finding 4: the conversion worker sent list GETs and PUTs to any http://host:port/ container. Now the
    conversion fails naming --fetch-allow, and the recording server there receives no request at all."""
    with recorder() as target:
        container = f"{target.base}/devstoreaccount1/input"
        body = {
            "settings": {
                "inputLocation": {
                    "storageContainerUri": container,
                    "storageContainerReadListSas": "?sv=2020-08-04&sr=c&sp=rl&sig=x",
                    "relativeInputAssetPath": "box.obj",
                },
                "outputLocation": {
                    "storageContainerUri": f"{target.base}/devstoreaccount1/output",
                    "storageContainerWriteSas": "?sv=2020-08-04&sr=c&sp=w&sig=x",
                },
            }
        }
        cid = f"ssrf-{uuid.uuid4().hex[:10]}"
        with svc.api() as api:
            r = api.put(f"/accounts/{svc.account_id}/conversions/{cid}", params=API, json=body)
            assert r.status_code == 201, r.text

            def ended() -> dict[str, Any] | None:
                doc: dict[str, Any] = api.get(f"/accounts/{svc.account_id}/conversions/{cid}", params=API).json()
                return doc if doc["status"] in ("Succeeded", "Failed", "Cancelled") else None

            doc = wait_for(ended, 60, f"conversion {cid} to end")
        assert doc["status"] == "Failed", doc
        message = doc["error"]["message"]
        assert "loopback addresses are not allowed" in message and "--fetch-allow" in message, message
        assert target.hits == []
