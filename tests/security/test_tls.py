"""TLS (finding 11, and TLS 1.2's CBC suites of finding 16): a local CA restricted by name constraints, whose key
stays with the control plane, serving leaves that are not CAs; TLS 1.2 offers AEAD suites only; operators can
bring their own certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openrr.tls import AEAD_CIPHERS
from tests.harness import Service, free_port, running_service

CBC_ONLY = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"
CBC_ONLY += ":ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256"


def _served_certificate(endpoint_port: int) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", endpoint_port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _connect(port: int, ctx: ssl.SSLContext, hostname: str = "localhost") -> tuple[str | None, str]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return tls.version(), cipher[0]


def test_the_ca_is_name_constrained_and_the_served_leaf_is_not_a_ca(service: Service) -> None:
    """Finding 11: the service's certificate was CA:TRUE with no constraints, and users were told to trust it as
    an authority, so its key (handed to every render server) could impersonate any site to them. Now cert.pem is
    a CA allowed only localhost, the configured names and loopback addresses (path length 0); its key (0600)
    stays in the control plane's tls/ directory; the service serves a CA:FALSE serverAuth leaf signed by it.
    Before the fix cert.pem had no NameConstraints and the served certificate was CA:TRUE."""
    ca = x509.load_pem_x509_certificate(Path(service.cert).read_bytes())
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = {str(g.value) for g in constraints.value.permitted_subtrees or []}
    # The shared service listens on 127.0.0.1 and names no other host: nothing beyond loopback is permitted.
    assert permitted == {"localhost", "127.0.0.0/8", "::1/128"}, permitted
    tls_dir = service.data_dir / "tls"
    assert stat.S_IMODE((tls_dir / "ca-key.pem").stat().st_mode) == 0o600
    assert not (tls_dir / "key.pem").exists()

    leaf = _served_certificate(service.port)
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    # Clients trusting cert.pem verify the leaf, by name and by address.
    ctx = ssl.create_default_context(cafile=service.cert)
    assert _connect(service.port, ctx, "localhost")[0] is not None
    assert _connect(service.port, ctx, "127.0.0.1")[0] is not None


def _leaf_signed_by_the_ca(tls_dir: Path, name: str, out: Path) -> tuple[Path, Path]:
    """A leaf for `name` signed with the local CA's own key, bypassing openrr: what a thief of that key could make."""
    ca = x509.load_pem_x509_certificate((tls_dir / "cert.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls_dir / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stolen")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / f"{name}.pem", out / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextmanager
def _tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A loopback TLS server that completes handshakes with `cert`, until the block ends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_the_ca_cannot_vouch_for_other_names(service: Service, tmp_path: Path) -> None:
    """Finding 11: even the CA's own key signs nothing a client trusting cert.pem accepts outside the permitted
    names. Before the fix the trusted certificate was an unconstrained CA:TRUE, so a leaf for any site signed
    with its key was accepted, and the first assertion below would fail."""
    ctx = ssl.create_default_context(cafile=service.cert)
    evil_cert, evil_key = _leaf_signed_by_the_ca(service.data_dir / "tls", "bank.example", tmp_path)
    with _tls_server(evil_cert, evil_key) as port, pytest.raises(ssl.SSLCertVerificationError):
        _connect(port, ctx, "bank.example")
    evil_ip_cert, evil_ip_key = _leaf_signed_by_the_ca(service.data_dir / "tls", "10.1.2.3", tmp_path)
    with _tls_server(evil_ip_cert, evil_ip_key) as port, pytest.raises(ssl.SSLCertVerificationError):
        _connect(port, ctx, "10.1.2.3")
    # The same forging code for a permitted name is accepted: the refusals are the constraints at work.
    ok_cert, ok_key = _leaf_signed_by_the_ca(service.data_dir / "tls", "localhost", tmp_path)
    with _tls_server(ok_cert, ok_key) as port:
        assert _connect(port, ctx, "localhost")[0] is not None


def test_tls12_offers_aead_suites_only(service: Service) -> None:
    """Finding 16: under TLS 1.2 the service accepted CBC suites. A TLS 1.2 client offering only CBC suites is
    now refused, and one offering an AEAD suite connects with it. Before the fix the CBC client connected."""
    cbc = ssl.create_default_context(cafile=service.cert)
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers(CBC_ONLY)
    with pytest.raises(ssl.SSLError):
        _connect(service.port, cbc)
    aead = ssl.create_default_context(cafile=service.cert)
    aead.maximum_version = ssl.TLSVersion.TLSv1_2
    aead.set_ciphers(AEAD_CIPHERS)
    version, cipher = _connect(service.port, aead)
    assert version == "TLSv1.2" and ("GCM" in cipher or "CHACHA20" in cipher), cipher


def _old_self_signed(tls_dir: Path) -> None:
    """What earlier versions wrote: one self-signed CA:TRUE certificate and its key in key.pem."""
    tls_dir.mkdir(parents=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openrr self-signed")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tls_dir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def test_an_old_unconstrained_certificate_is_replaced_at_start(tmp_path: Path) -> None:
    """Finding 11: a data directory from an earlier version holds the CA:TRUE certificate; the next start replaces
    it with a constrained local CA, removes the old key, and logs it. Before the fix it kept serving the old one."""
    data = tmp_path / "data"
    _old_self_signed(data / "tls")
    with running_service(data, "--warm-pool", "Standard=0") as svc:
        ca = x509.load_pem_x509_certificate(Path(svc.cert).read_bytes())
        ca.extensions.get_extension_for_class(x509.NameConstraints)
        assert not (data / "tls" / "key.pem").exists()
        assert "old self-signed CA:TRUE certificate" in svc.log()
        assert _served_certificate(svc.port).extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


class _OwnCertService(Service):
    """A service whose clients trust the operator's own CA instead of the local one."""

    trust: str = ""

    @property
    def cert(self) -> str:
        return self.trust


def test_operators_can_supply_their_own_certificate(tmp_path: Path) -> None:
    """Operators can serve the control plane with their own certificate (--tls-cert/--tls-key); the local CA is
    still made, for render servers' leaves. Before the fix there were no such flags (argparse exit 2)."""
    own = tmp_path / "own"
    own_ca = own / "ca"
    own_ca.mkdir(parents=True)
    # An operator's CA, made with openrr's own CA code in a directory of its own, and a leaf it signs.
    from openrr.tls import ensure_tls

    ensure_tls(own_ca, ["127.0.0.1"])
    data = tmp_path / "data"
    svc = _OwnCertService(
        data,
        free_port(),
        [
            "--warm-pool",
            "Standard=0",
            "--tls-cert",
            str(own_ca / "server.pem"),
            "--tls-key",
            str(own_ca / "server-key.pem"),
        ],
    )
    svc.trust = str(own_ca / "cert.pem")
    svc.start()
    try:
        served = _served_certificate(svc.port)
        assert served == x509.load_pem_x509_certificates((own_ca / "server.pem").read_bytes())[0]
        assert (data / "tls" / "ca-key.pem").exists() and (data / "tls" / "cert.pem").exists()
        local_ca = x509.load_pem_x509_certificate((data / "tls" / "cert.pem").read_bytes())
        with pytest.raises(InvalidSignature):
            served.verify_directly_issued_by(local_ca)
        with svc.api():  # the SDK-style token exchange works over the operator's certificate
            pass
    finally:
        svc.stop()
