"""Render servers' TLS: each gets a leaf of its own from the local CA, and the control plane trusts that CA.

A render server runs tenants' data through parsers and decoders; if one is taken over, what it holds is its own
short-lived leaf for this machine's names, never the control plane's key (which would let it impersonate the API).
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from openrr import tls


class RenderCertificates:
    def __init__(self, tls_dir: Path, hostnames: list[str]) -> None:
        self.tls_dir = tls_dir
        self.hostnames = [h for h in dict.fromkeys(hostnames) if h]
        self._lock = threading.Lock()
        self._ca_pem: str | None = None

    def issue(self) -> tuple[bytes, bytes]:
        """A new leaf for one render server: (certificate chain PEM, private key PEM)."""
        chain, key = tls.issue_server_certificate(self.tls_dir, self.hostnames)
        return chain, key

    def verify_context(self) -> ssl.SSLContext:
        """What the control plane's probes trust: the CA that signs render servers' leaves, and nothing else."""
        with self._lock:
            if self._ca_pem is None:
                chain, _key = self.issue()
                certs = x509.load_pem_x509_certificates(chain)
                authorities = [c for c in certs if _is_ca(c)] or certs
                self._ca_pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in authorities)
        return ssl.create_default_context(cadata=self._ca_pem)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
