"""Bearer-token checks for the data plane: a token is good only for its own account's resources."""

from __future__ import annotations

from fastapi import Request

from openrr.accounts.service import AccountService, normalize_account_id
from openrr.accounts.sts import InvalidToken, TokenService
from openrr.http.errors import account_gone, bad_request, forbidden, unauthorized
from openrr.http.validation import check_api_version, check_resource_id


class Authenticator:
    def __init__(self, tokens: TokenService, accounts: AccountService) -> None:
        self.tokens = tokens
        self.accounts = accounts

    def account_for(self, request: Request, path_account: str) -> str:
        """The canonical account id the request may act on, or an ArrError (401/400/403)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("An 'Authorization: Bearer <access token>' header is required.")
        try:
            claims = self.tokens.verify(token.strip())
        except InvalidToken as e:
            raise unauthorized(str(e)) from e
        account_id = normalize_account_id(path_account)
        if account_id is None:
            raise bad_request(f"The account ID '{path_account}' is not a GUID.", "accountId")
        if claims.account_id != account_id:
            raise forbidden("The access token was not issued for this account.")
        # Revocation: the token is good only while the key it was minted with is one of the account's current
        # keys (one cached read, at most EXISTS_TTL_S old, also answers whether the account still exists).
        key_ids = self.accounts.token_key_ids(account_id)
        if not key_ids:
            raise account_gone()
        if claims.key_id not in key_ids:
            raise unauthorized("The access token was revoked: the account key it was issued for has been rotated.")
        return account_id

    def authorize(
        self, request: Request, path_account: str, kind: str, resource_id: str | None, *, api_version: bool = True
    ) -> str:
        """The checks every session and conversion operation makes first, in ARR's order: the token (`account_for`),
        then the api-version (the 2021 API; the v1 API has none), then the `kind` id in the path, if any. Returns the
        canonical account id."""
        account_id = self.account_for(request, path_account)
        if api_version:
            check_api_version(request.query_params.get("api-version"))
        if resource_id is not None:
            check_resource_id(kind, resource_id)
        return account_id
