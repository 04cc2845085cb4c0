"""Account operations through the account service (no `openrr account` subprocess), and what each does to the
STS and the data plane, in process (tests/unit/asgi.py). Rotation by another process, through the CLI, against a
running service: tests/test_sts.py and tests/security/test_tokens.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openrr.accounts.service import AccountNotFound
from tests.unit.asgi import V21, InProcess, in_process

pytestmark = pytest.mark.anyio


@pytest.fixture
async def arr(tmp_path: Path) -> AsyncIterator[InProcess]:
    async with in_process(tmp_path / "data") as service:
        yield service


async def _sts(arr: InProcess, account_id: str, key: str) -> int:
    r = await arr.api.get(f"/accounts/{account_id}/token", headers={"Authorization": f"Bearer {account_id}:{key}"})
    return r.status_code


async def _data_plane(arr: InProcess, account_id: str, token: str) -> int:
    r = await arr.api.get(f"/accounts/{account_id}/sessions", params=V21, headers={"Authorization": f"Bearer {token}"})
    return r.status_code


async def test_create_list_get_and_delete(arr: InProcess) -> None:
    accounts = arr.services.accounts
    chosen = str(uuid.uuid4())
    made = accounts.create(domain="arr.test", account_id=chosen.upper())
    assert made.account.account_id == chosen  # the canonical form: lower case
    assert made.account.domain == "arr.test"
    assert made.primary_key and made.secondary_key and made.primary_key != made.secondary_key
    other = accounts.create()
    assert uuid.UUID(other.account.account_id) and other.primary_key not in (made.primary_key, made.secondary_key)
    listed = {a.account_id for a in accounts.list()}
    assert listed == {arr.account_id, chosen, other.account.account_id}
    assert accounts.get(chosen.upper()) == made.account
    with pytest.raises(ValueError, match="is not a GUID"):
        accounts.create(account_id="not-a-guid")

    accounts.delete(chosen)
    assert {a.account_id for a in accounts.list()} == {arr.account_id, other.account.account_id}
    with pytest.raises(AccountNotFound):
        accounts.get(chosen)
    with pytest.raises(AccountNotFound):
        accounts.delete(chosen)
    with pytest.raises(AccountNotFound):
        accounts.rotate_key(chosen, "primary")


async def test_rotating_a_key_retires_it_and_only_it(arr: InProcess) -> None:
    accounts = arr.services.accounts
    made = accounts.create()
    aid, primary, secondary = made.account.account_id, made.primary_key, made.secondary_key
    assert accounts.authenticate(aid, primary) == accounts.authenticate(aid, secondary) == made.account
    assert accounts.authenticate(aid, arr.key) is None  # another account's key
    by_primary, by_secondary = await arr.token(aid, primary), await arr.token(aid, secondary)
    assert await _data_plane(arr, aid, by_primary) == 200

    new_primary = accounts.rotate_key(aid, "primary")
    assert new_primary not in (primary, secondary)
    assert accounts.authenticate(aid, primary) is None and accounts.authenticate(aid, new_primary) == made.account
    assert await _sts(arr, aid, primary) == 401
    assert await _sts(arr, aid, new_primary) == 200
    # Tokens of the retired key are revoked at once (in this process); those of the other key keep working.
    assert await _data_plane(arr, aid, by_primary) == 401
    assert await _data_plane(arr, aid, by_secondary) == 200

    new_secondary = accounts.rotate_key(aid, "secondary")
    assert await _sts(arr, aid, secondary) == 401 and await _sts(arr, aid, new_secondary) == 200
    assert await _data_plane(arr, aid, by_secondary) == 401
    # The other account is untouched by all of this.
    assert await _sts(arr, arr.account_id, arr.key) == 200
    assert (await arr.api.get(f"/accounts/{arr.account_id}/sessions", params=V21)).status_code == 200


async def test_deleting_an_account_refuses_its_keys_tokens_and_sessions(arr: InProcess) -> None:
    accounts = arr.services.accounts
    made = accounts.create()
    aid, key = made.account.account_id, made.primary_key
    token = await arr.token(aid, key)
    headers = {"Authorization": f"Bearer {token}"}
    r = await arr.api.put(
        f"/accounts/{aid}/sessions/s1", params=V21, json={"maxLeaseTimeMinutes": 5, "size": "Standard"}, headers=headers
    )
    assert r.status_code == 201, r.text

    accounts.delete(aid)
    assert accounts.authenticate(aid, key) is None
    assert await _sts(arr, aid, key) == 401
    assert await _data_plane(arr, aid, token) == 401
    # Its sessions went with it; the other account's view is unchanged.
    assert arr.services.sessions.needing_attention() == []
    assert await _data_plane(arr, arr.account_id, arr.api.headers["Authorization"].removeprefix("Bearer ")) == 200
