"""What the control plane tells a running render server besides its session: the read tokens of the account's linked
storage and the account's current key ids. Shared by every backend (local processes, Kubernetes pods): only the
address and the control secret differ."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from openrr.hosting.backend import SessionKey
from openrr.render.control import KeyIdsBody, StorageGrantsBody, control_headers
from openrr.storage.session_access import GRANT_REFRESH_S, GrantSource

logger = logging.getLogger(__name__)
GRANT_RETRY_S = 5.0


@dataclass
class Pushed:
    """What this control plane last told one server (a fresh one after a takeover: everything is told again)."""

    grants_due: float = 0.0
    """time.monotonic() when the server's linked-storage tokens are next pushed (0: never pushed yet)."""
    key_ids: frozenset[str] | None = None
    """The account key ids last pushed to the server (None: none pushed by this control plane yet)."""


@dataclass(frozen=True)
class ServerControl:
    storage_grants: GrantSource | None = None
    """Read tokens for the linked storage of a session's account (storage/session_access.py)."""
    token_key_ids: Callable[[str], frozenset[str]] | None = None
    """The account's current key ids: tokens minted with any other key are refused by its servers (revocation)."""

    async def push(
        self, client: httpx.AsyncClient, base: str, secret: str, pushed: Pushed, key: SessionKey, name: str
    ) -> bool:
        """Grants, then key ids, to the server at `base` (scheme://host:handshake-port) when due. False while the
        server does not know the account's keys yet: it refuses every token until then, so it is not Ready."""
        # Grants first, so that a Ready session can already load from linked storage.
        await self._push_grants(client, base, secret, pushed, key, name)
        return await self._push_key_ids(client, base, secret, pushed, key, name)

    async def _push_key_ids(
        self, client: httpx.AsyncClient, base: str, secret: str, pushed: Pushed, key: SessionKey, name: str
    ) -> bool:
        """Tell the server which account keys are current, when that changed (probed every reconcile pass, so a
        rotated key or a deleted account reaches running servers within a pass or two)."""
        source = self.token_key_ids
        if source is None:
            return True
        try:
            key_ids = await asyncio.to_thread(source, key.account_id)
        except Exception as e:
            logger.warning("could not read the key ids of account %s: %s", key.account_id, e)
            return pushed.key_ids is not None
        if key_ids == pushed.key_ids:
            return True
        try:
            r = await client.post(
                f"{base}{KeyIdsBody.path}",
                json=KeyIdsBody(key.account_id, tuple(sorted(key_ids))).to_json(),
                headers=control_headers(secret),
                timeout=5,
            )
            r.raise_for_status()
        except httpx.HTTPError as e:
            logger.warning("could not tell render server %s its account's key ids: %s", name, e)
            return pushed.key_ids is not None
        if pushed.key_ids is not None:
            logger.info("render server %s: the account's keys changed; tokens of old keys refused", name)
        pushed.key_ids = key_ids
        return True

    async def _push_grants(
        self, client: httpx.AsyncClient, base: str, secret: str, pushed: Pushed, key: SessionKey, name: str
    ) -> None:
        source = self.storage_grants
        now = time.monotonic()
        if source is None or now < pushed.grants_due:
            return
        # Ready sessions are probed every reconcile pass: after a failure, retry soon but not on every pass.
        pushed.grants_due = now + GRANT_RETRY_S
        try:
            grants = await asyncio.to_thread(source, key.account_id)
            r = await client.post(
                f"{base}{StorageGrantsBody.path}",
                json=StorageGrantsBody(key.account_id, tuple(g.to_json() for g in grants)).to_json(),
                headers=control_headers(secret),
                timeout=5,
            )
            r.raise_for_status()
        except Exception as e:
            # Whatever failed (store, key, server), the session itself still works: only linked loads wait for it.
            logger.warning("could not hand render server %s its linked-storage tokens: %s", name, e)
            return
        pushed.grants_due = now + GRANT_REFRESH_S
