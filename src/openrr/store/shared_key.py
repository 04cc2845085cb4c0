"""The start-time check that this replica's secrets key is the one the store's credentials were sealed with:
replicas sharing a database must share it, or one of them would fail every linked load and conversion later."""

from __future__ import annotations

from sqlalchemy import select

from openrr.store.db import Database
from openrr.store.secretbox import SecretBox, SecretUnreadable
from openrr.store.tables import ConversionRow, StorageLinkRow


def require_shared_secrets_key(db: Database, box: SecretBox) -> None:
    """Raise SecretUnreadable, saying what to do, if a sealed credential in the store does not open with `box`."""
    with db.read() as s:
        sealed = s.scalar(select(StorageLinkRow.account_key).limit(1))
        if sealed is None:
            sealed = s.scalar(select(ConversionRow.secrets).where(ConversionRow.secrets.is_not(None)).limit(1))
    if sealed is None:
        return  # nothing sealed yet: any key will do, and the first replica's becomes the one to share
    try:
        box.open(sealed)
    except SecretUnreadable as e:
        raise SecretUnreadable(
            "this replica's secrets key cannot open the storage credentials already in the database: replicas "
            "sharing a database must share one key (OPENRR_SECRETS_KEY, or the same DATA_DIR/secrets.key file)"
        ) from e
