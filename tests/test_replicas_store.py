"""tests/unit/test_session_leases.py on a real PostgreSQL server: claims, renewals, takeovers, hand-overs and
singleton leases where replicas really race (row locks under READ COMMITTED, not SQLite's one writer).

Each test gets a database of its own on one server started for the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openrr.store.db import Database
from tests.postgres import fresh_database, pg_url
from tests.unit.test_session_leases import (  # noqa: F401 (collected here, on this module's `db`)
    test_a_create_owns_its_session_and_a_fresh_owner_keeps_it,
    test_a_handed_over_session_is_claimed_at_the_next_pass,
    test_a_lapsed_owner_is_taken_over_and_its_late_writes_are_refused,
    test_a_local_session_taken_over_ends_in_error_naming_the_lost_replica,
    test_a_replica_whose_secrets_key_cannot_open_the_stores_credentials_is_refused,
    test_a_session_whose_lease_ran_out_while_its_replica_was_gone_ends_expired,
    test_a_shared_backend_session_taken_over_stays_ready,
    test_a_singleton_lease_has_one_holder_until_it_expires,
    test_adopt_takes_back_only_records_that_still_name_the_server,
    test_concurrent_claims_give_each_session_exactly_one_owner,
    test_concurrent_first_holds_give_one_holder,
    test_every_pass_renews_the_owners_heartbeat,
    test_keeps_server_reads_the_record_again,
    test_only_the_lease_holder_maintains_a_shared_backend,
    test_the_orphan_sweep_keeps_a_server_whose_session_appeared_after_the_pass_read,
)

__all__ = ["pg_url"]  # a fixture, used by name


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    store = Database(fresh_database(pg_url))
    store.migrate()
    yield store
    store.dispose()
