"""STS tokens: RS256 JWTs with `exp`, signed with a key kept in the store (shared by all replicas)."""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from openrr.store.db import Database
from openrr.store.tables import SigningKeyRow

ISSUER = "openrr-sts"
AUDIENCE = "openrr"


@dataclass(frozen=True)
class TokenClaims:
    account_id: str
    expires_at: int


class InvalidToken(Exception):
    pass


class TokenService:
    def __init__(self, db: Database, lifetime_s: int) -> None:
        self.lifetime_s = lifetime_s
        self._kid, self._private_key = _load_or_create_key(db)
        self._public_key = self._private_key.public_key()

    @property
    def public_key_pem(self) -> bytes:
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def issue(self, account_id: str, lifetime_s: int | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": account_id,
            "accountId": account_id,
            "iat": now,
            "exp": now + (self.lifetime_s if lifetime_s is None else lifetime_s),
        }
        # The official Python SDK reads `exp` by decoding the payload with the *standard* base64 alphabet, so
        # a payload segment containing '-' or '_' breaks it. A random nonce is redrawn until the segment is
        # free of both (expected about two draws).
        while True:
            claims["jti"] = secrets.token_hex(8)
            token = jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self._kid})
            payload = token.split(".")[1]
            if "-" not in payload and "_" not in payload:
                return token

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iat"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise InvalidToken("The access token has expired.") from e
        except jwt.PyJWTError as e:
            raise InvalidToken(f"The access token is invalid: {e}.") from e
        return TokenClaims(account_id=str(claims["sub"]), expires_at=int(claims["exp"]))


def _load_or_create_key(db: Database) -> tuple[str, rsa.RSAPrivateKey]:
    with db.write() as s:
        row = s.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc())).first()
        if row is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            row = SigningKeyRow(kid=uuid.uuid4().hex, private_pem=pem, created_at=dt.datetime.now(dt.UTC))
            s.add(row)
        loaded = serialization.load_pem_private_key(row.private_pem, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return row.kid, loaded
