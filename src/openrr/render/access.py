"""Who may use a render server: a client with an STS token of the session's account, minted with one of the
account's current keys.

The control plane pushes the account's key ids (claim `kfp`) whenever they change (a key rotated, the account
deleted): from then on tokens of other keys are refused, and connections opened with them are closed by their
owners (stream.py), so a revoked token stops working on running servers within a reconcile pass or two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from openrr.render.identity import ServerIdentity
from openrr.tokens import InvalidToken, TokenClaims, verify_token


class Refused(Exception):
    """Why a token does not admit its bearer: `status` 401 (no usable token) or 403 (not for this session)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class TokenGate:
    identity: ServerIdentity
    public_key: Any | None
    key_ids: frozenset[str] | None = None
    """The account's current key ids, as last pushed by the control plane; None: not told yet (refuse all)."""
    on_revoke: list[Callable[[frozenset[str]], None]] = field(default_factory=list)
    """Called with the new key ids after a push, so that holders of connections can close revoked ones."""

    @classmethod
    def from_file(cls, identity: ServerIdentity, public_key_path: Path | None) -> TokenGate:
        key = serialization.load_pem_public_key(public_key_path.read_bytes()) if public_key_path else None
        return cls(identity, key)

    def admit(self, token: str) -> TokenClaims:
        """The token's claims if it may use this server's session; Refused otherwise."""
        if not token:
            raise Refused(401, "An STS access token is required.")
        if self.public_key is None:
            raise Refused(401, "This render server has no STS key to check tokens with.")
        try:
            claims = verify_token(token, self.public_key)
        except InvalidToken:
            # ARR's answer: no detail about what is wrong with a token.
            raise Refused(401, "The access token is not valid.") from None
        if self.identity.account_id is None:
            raise Refused(403, "This render server is not serving a session yet.")
        if claims.account_id != self.identity.account_id:
            raise Refused(403, "The access token belongs to another account than this session's.")
        if not self.current(claims.key_id):
            raise Refused(401, "The access token is not valid.")
        return claims

    def current(self, key_id: str) -> bool:
        return self.key_ids is not None and key_id in self.key_ids

    def update(self, key_ids: frozenset[str]) -> None:
        self.key_ids = key_ids
        for callback in list(self.on_revoke):
            callback(key_ids)


def bearer(authorization: str) -> str:
    """The token of an `Authorization: Bearer ...` header ('' if there is none)."""
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
