"""STS tokens: RS256 JWTs with `exp`, signed with a key kept in the store (shared by all replicas).

The signing key is stored sealed by the secrets box (DATA_DIR/secrets.key or OPENRR_SECRETS_KEY), like linked
storage credentials: a copy of the database alone lets nobody mint tokens.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from openrr.store.db import Database
from openrr.store.secretbox import SecretBox
from openrr.store.tables import SigningKeyRow
from openrr.tokens import AUDIENCE, ISSUER, KEY_ID_CLAIM, InvalidToken, TokenClaims, verify_token
from openrr.util.atomic import write_atomic

REUSE_WINDOW_S = 60
"""A token minted for an account is handed out again for this long (it then has >= 23h59m left).

RSA signing costs about a millisecond; without reuse, the token exchange could not keep up with the rest of
the API under load. A caller still has to present a valid key to be given it, and the cache is keyed by the
fingerprint of that key, so a token minted with a key since rotated is never handed out again.
"""
PEM_MARK = b"-----BEGIN"
VERIFIED_CACHE_SIZE = 4096
logger = logging.getLogger(__name__)


class TokenService:
    def __init__(self, db: Database, lifetime_s: int, box: SecretBox) -> None:
        self.lifetime_s = lifetime_s
        self._kid, self._private_key = _load_or_create_key(db, box)
        self._public_key = self._private_key.public_key()
        self._minted: dict[tuple[str, str], tuple[str, float]] = {}
        self._verified: dict[str, TokenClaims] = {}

    @property
    def public_key_pem(self) -> bytes:
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token_for(self, account_id: str, key_id: str) -> str:
        """A token for a caller who presented the account key whose fingerprint is `key_id`: a recently minted one
        for that same key if there is one, else a new one."""
        now = time.time()
        minted = self._minted.get((account_id, key_id))
        if minted is not None and now - minted[1] < min(REUSE_WINDOW_S, self.lifetime_s / 10):
            return minted[0]
        token = self.issue(account_id, key_id)
        if len(self._minted) > 10_000:
            self._minted.clear()
        self._minted[(account_id, key_id)] = (token, now)
        return token

    def issue(self, account_id: str, key_id: str, lifetime_s: int | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": account_id,
            "accountId": account_id,
            "iat": now,
            "exp": now + min(self.lifetime_s, self.lifetime_s if lifetime_s is None else lifetime_s),
            KEY_ID_CLAIM: key_id,
        }
        # The official Python SDK reads `exp` by decoding the payload with the *standard* base64 alphabet, so
        # a payload segment containing '-' or '_' breaks it. Only '>', '?', '~' (and DEL) can produce those in
        # ASCII JSON, and today's claims contain none, so the first draw passes; the loop guards future claims.
        while True:
            claims["jti"] = secrets.token_hex(8)
            token = jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self._kid})
            payload = token.split(".")[1]
            if "-" not in payload and "_" not in payload:
                return token

    def verify(self, token: str) -> TokenClaims:
        """The claims of a token this STS signed and that has not expired; raises InvalidToken otherwise."""
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at > time.time():
                return cached
            self._verified.pop(token, None)
        claims = self._verify_signature(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            try:
                self._verified.pop(next(iter(self._verified)), None)  # the oldest entry
            except (RuntimeError, StopIteration):  # changed meanwhile by another thread
                self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify_signature(self, token: str) -> TokenClaims:
        return verify_token(token, self._public_key, max_lifetime_s=self.lifetime_s)

    def write_public_key(self, path: Path) -> None:
        """Publish the verification key (render servers check their clients' tokens with it)."""
        write_atomic(path, self.public_key_pem, durable=False)


def _load_or_create_key(db: Database, box: SecretBox) -> tuple[str, rsa.RSAPrivateKey]:
    with db.write() as s:
        # Replicas starting together on a fresh database must end up with one key, the first one's.
        db.first_start_lock(s)
        row = s.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc())).first()
        if row is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            row = SigningKeyRow(
                kid=uuid.uuid4().hex, private_pem=box.seal(pem.decode()), created_at=dt.datetime.now(dt.UTC)
            )
            s.add(row)
        elif row.private_pem.lstrip().startswith(PEM_MARK):
            # Stored in plain text by an earlier version: seal it now (and every other plain row with it).
            pem = row.private_pem
            for plain in s.scalars(select(SigningKeyRow)):
                if plain.private_pem.lstrip().startswith(PEM_MARK):
                    plain.private_pem = box.seal(plain.private_pem.decode())
            logger.warning("sealed the STS signing key, stored in plain text by an earlier version")
        else:
            pem = box.open(row.private_pem).encode()
        loaded = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return row.kid, loaded


__all__ = ["AUDIENCE", "ISSUER", "InvalidToken", "TokenClaims", "TokenService"]
