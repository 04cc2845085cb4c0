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
