"""HTTPS by default: a local certificate authority, restricted by name constraints, and leaves signed by it.

DATA_DIR/tls/ holds
- cert.pem         the local CA's certificate: the file clients trust (REQUESTS_CA_BUNDLE, --ca-cert);
- ca-key.pem       its key (0600), which never leaves the control plane;
- server.pem       the control plane's leaf certificate followed by the CA certificate (the chain it serves);
- server-key.pem   the leaf's key (0600).

The CA may only vouch for the names this service answers to (DNS `localhost` and the configured host names,
IP 127.0.0.0/8, ::1 and the configured addresses; path length 0): a client that trusts cert.pem trusts
nothing else through it, even if the CA key were stolen. Every render server gets its own leaf
(issue_server_certificate), so no process but the control plane holds a key that can sign.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openrr.util.atomic import write_atomic

logger = logging.getLogger(__name__)

AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""OpenSSL cipher string for TLS 1.2: forward-secret AEAD suites only (no CBC, no RSA key exchange). TLS 1.3
suites are all AEAD and are not affected by this string."""

CA_FILE = "cert.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
CA_DAYS = 3650
LEAF_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
LOOPBACK_NETWORKS = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
WILDCARDS = {"", "0.0.0.0", "::"}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _split(hostnames: list[str]) -> tuple[list[str], list[Address]]:
    """DNS names and IP addresses among `hostnames`, lower-cased and without duplicates or wildcards."""
    names: list[str] = []
    addresses: list[Address] = []
    for raw in hostnames:
        name = raw.strip().strip("[]").lower().rstrip(".")
        if name in WILDCARDS:
            continue
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            if name not in names:
                names.append(name)
            continue
        if address not in addresses:
            addresses.append(address)
    return names, addresses


def _permitted(hostnames: list[str]) -> tuple[list[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names, addresses = _split(["localhost", *hostnames])
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(LOOPBACK_NETWORKS)
    for address in addresses:
        if not any(address in n for n in networks):
            networks.append(ipaddress.ip_network(address))
    return names, networks


def _ca_covers(ca: x509.Certificate, hostnames: list[str]) -> bool:
    """Whether the CA's name constraints permit every one of `hostnames`."""
    try:
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return False
    dns = [str(v.value).lower() for v in constraints.permitted_subtrees or [] if isinstance(v, x509.DNSName)]
    ips = [v.value for v in constraints.permitted_subtrees or [] if isinstance(v, x509.IPAddress)]
    names, addresses = _split(hostnames)
    for name in names:
        if not any(name == d or name.endswith("." + d) for d in dns):
            return False
    return all(
        any(isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) and a in n for n in ips) for a in addresses
    )


def _valid_for_a_while(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + RENEW_BEFORE


def _is_local_ca(cert: x509.Certificate) -> bool:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return basic.ca and basic.path_length == 0


def ensure_local_ca(tls_dir: Path, hostnames: list[str]) -> bool:
    """Create the local CA unless a usable one exists (its key present, its constraints covering `hostnames`,
    not about to expire). Returns True if it was (re)made: clients must then trust the new cert.pem."""
    ca_path, key_path = tls_dir / CA_FILE, tls_dir / CA_KEY_FILE
    reason = ""
    if not ca_path.exists():
        reason = "first start"
    elif not key_path.exists():
        reason = "the old self-signed CA:TRUE certificate (its key was handed to render servers) is replaced"
    else:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        if not _is_local_ca(ca):
            reason = "cert.pem is not this service's local CA"
        elif not _ca_covers(ca, hostnames):
            reason = "its name constraints do not cover the configured host names"
        elif not _valid_for_a_while(ca):
            reason = "it is about to expire"
    if not reason:
        return False
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openrr local CA")])
    dns, networks = _permitted(hostnames)
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[*(x509.DNSName(d) for d in dns), *(x509.IPAddress(n) for n in networks)],
                excluded_subtrees=None,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_atomic(key_path, _key_pem(key), mode=0o600)
    write_atomic(ca_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o600)
    # The key of the old CA:TRUE certificate, if an earlier version left one.
    (tls_dir / "key.pem").unlink(missing_ok=True)
    logger.warning(
        "generated the local certificate authority %s (%s): clients must trust the new file", ca_path, reason
    )
    return True


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs only; a leaf signs its TLS handshakes only (ECDSA: no key encipherment)."""
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def issue_server_certificate(tls_dir: Path, hostnames: list[str]) -> tuple[bytes, bytes]:
    """A new leaf certificate for `hostnames` (plus localhost and the loopback addresses), signed by the local CA
    in `tls_dir`: (certificate chain PEM: leaf then CA, private key PEM). CA:FALSE, serverAuth only.

    Raises ValueError if a name lies outside the CA's name constraints (clients would refuse the leaf)."""
    ca = x509.load_pem_x509_certificate((tls_dir / CA_FILE).read_bytes())
    ca_key = serialization.load_pem_private_key((tls_dir / CA_KEY_FILE).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    names, addresses = _split(["localhost", "127.0.0.1", "::1", *hostnames])
    if not _ca_covers(ca, [*names, *map(str, addresses)]):
        raise ValueError(f"the local CA may not vouch for all of {hostnames}: restart the service to widen it")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san: list[x509.GeneralName] = [*(x509.DNSName(n) for n in names), *(x509.IPAddress(a) for a in addresses)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openrr server")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    return chain, _key_pem(key)


def ensure_server_certificate(tls_dir: Path, hostnames: list[str], leaf_dir: Path | None = None) -> bool:
    """The control plane's own leaf (server.pem, server-key.pem, in `leaf_dir`, by default `tls_dir`): (re)issued
    unless one from the current CA covers `hostnames` and is not about to expire. Returns True if it was (re)made.
    Replicas sharing one CA (a read-only Secret on Kubernetes) keep their own leaves in their own `leaf_dir`."""
    leaf_dir = leaf_dir or tls_dir
    cert_path, key_path = leaf_dir / SERVER_FILE, leaf_dir / SERVER_KEY_FILE
    if cert_path.exists() and key_path.exists() and _leaf_current(tls_dir, cert_path, hostnames):
        return False
    chain, key = issue_server_certificate(tls_dir, hostnames)
    leaf_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(key_path, key, mode=0o600)
    write_atomic(cert_path, chain, mode=0o600)
    logger.info("issued the control plane's certificate %s", cert_path)
    return True


def _leaf_current(tls_dir: Path, cert_path: Path, hostnames: list[str]) -> bool:
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate((tls_dir / CA_FILE).read_bytes())
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # not signed by the current CA: reissue
        return False
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v).lower() for v in san.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    names, addresses = _split(hostnames)
    return set(names) | {str(a) for a in addresses} <= present and _valid_for_a_while(leaf)


def ensure_tls(tls_dir: Path, hostnames: list[str], leaf_dir: Path | None = None) -> None:
    """The local CA (in `tls_dir`) and the control plane's leaf (in `leaf_dir`, by default `tls_dir`), made or
    renewed as needed (called at every start)."""
    made_ca = ensure_local_ca(tls_dir, hostnames)
    if made_ca:
        ((leaf_dir or tls_dir) / SERVER_FILE).unlink(missing_ok=True)
    ensure_server_certificate(tls_dir, hostnames, leaf_dir)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
