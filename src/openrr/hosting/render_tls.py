"""Render servers' TLS: each gets a leaf of its own from the local CA, and the control plane trusts that CA.

A render server runs tenants' data through parsers and decoders; if one is taken over, what it holds is its own
short-lived leaf for this machine's names, never the control plane's key (which would let it impersonate the API).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from openrr import tls


class RenderCertificates:
    def __init__(self, tls_dir: Path, hostnames: list[str]) -> None:
        self.tls_dir = tls_dir
        self.hostnames = [h for h in dict.fromkeys(hostnames) if h]

    def issue(self) -> tuple[bytes, bytes]:
        """A new leaf for one render server: (certificate chain PEM, private key PEM)."""
        return tls.issue_server_certificate(self.tls_dir, self.hostnames)

    def verify_context(self) -> ssl.SSLContext:
        """What the control plane's probes trust: the CA that signs render servers' leaves, and nothing else."""
        return ssl.create_default_context(cafile=str(self.tls_dir / tls.CA_FILE))
