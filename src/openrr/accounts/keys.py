"""Account keys: random, shown once, stored as SHA-256 digests.

A fast hash is right here (unlike passwords): keys are 256 random bits, so there is nothing to brute-force,
and the token exchange must stay cheap under load.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_key() -> str:
    # Same shape as ARR's keys: 44 characters of base64 (32 random bytes).
    return base64.b64encode(secrets.token_bytes(32)).decode()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, digest: str) -> bool:
    return hmac.compare_digest(hash_key(key), digest)


def key_fingerprint(key_digest: str) -> str:
    """The id of an account key, as tokens carry it (claim `kfp`): derived from its stored digest, so the
    store can tell which keys are current without knowing them, and a token reveals nothing usable of the key."""
    return hashlib.sha256(f"openrr-kfp:{key_digest}".encode()).hexdigest()[:16]


def key_id_of(key: str) -> str:
    """The fingerprint of a presented key (equal to key_fingerprint of its digest once it authenticated)."""
    return key_fingerprint(hash_key(key))
