"""Checking STS tokens: needs only the public key, so render servers can verify clients themselves."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

ISSUER = "openrr-sts"
AUDIENCE = "openrr"
MAX_LIFETIME_S = 24 * 3600
"""The STS's token lifetime: a token claiming a longer life (exp - iat) was not minted by this STS."""
CLOCK_SKEW_S = 5
"""How far in the future a token's `iat` may lie: replicas' clocks differ by a little, never by more."""
KEY_ID_CLAIM = "kfp"
"""Fingerprint of the account key a token was exchanged for (accounts.keys.key_fingerprint); revocation checks it."""


@dataclass(frozen=True)
class TokenClaims:
    account_id: str
    expires_at: int
    key_id: str
    """Fingerprint of the account key the token was minted with: valid only while that key is current."""
    issued_at: int = 0


class InvalidToken(Exception):
    pass


def verify_token(
    token: str, public_key: Any, max_lifetime_s: int = MAX_LIFETIME_S, now: float | None = None
) -> TokenClaims:
    """The claims of a token signed by the STS key whose public half is `public_key`; InvalidToken otherwise.

    Beyond the signature and `exp`, a token is refused if it claims to live longer than `max_lifetime_s`
    (exp - iat) or was issued in the future (iat > now + CLOCK_SKEW_S): a token with a signature but such claims
    was not minted by the STS, whose key must then be considered stolen, and must not live for a century.
    """
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iat", KEY_ID_CLAIM]},
            leeway=CLOCK_SKEW_S,
        )
    except jwt.ExpiredSignatureError as e:
        raise InvalidToken("The access token has expired.") from e
    except jwt.PyJWTError as e:
        raise InvalidToken(f"The access token is invalid: {e}.") from e
    try:
        iat, exp = int(claims["iat"]), int(claims["exp"])
    except (TypeError, ValueError) as e:
        raise InvalidToken("The access token is invalid: iat and exp must be numbers.") from e
    current = time.time() if now is None else now
    if iat > current + CLOCK_SKEW_S:
        raise InvalidToken("The access token is invalid: it was issued in the future.")
    if exp - iat > max_lifetime_s:
        raise InvalidToken("The access token is invalid: its lifetime exceeds the STS's.")
    key_id = claims[KEY_ID_CLAIM]
    if not isinstance(key_id, str) or not key_id:
        raise InvalidToken("The access token is invalid: it names no account key.")
    return TokenClaims(account_id=str(claims["sub"]), expires_at=exp, key_id=key_id, issued_at=iat)
