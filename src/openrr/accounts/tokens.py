"""Checking STS tokens: needs only the public key, so render servers can verify clients themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

ISSUER = "openrr-sts"
AUDIENCE = "openrr"


@dataclass(frozen=True)
class TokenClaims:
    account_id: str
    expires_at: int


class InvalidToken(Exception):
    pass


def verify_token(token: str, public_key: Any) -> TokenClaims:
    """The claims of a token signed by the STS key whose public half is `public_key`; InvalidToken otherwise."""
    try:
        claims = jwt.decode(
            token,
            public_key,
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
