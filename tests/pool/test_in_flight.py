"""In-flight aware selection: a key still in use is handed out only when none is idle."""

from __future__ import annotations

from datetime import timedelta

from lib.pool import KeyPool
from tests.support.pool import add, key_row, set_columns


def test_an_idle_key_is_preferred_to_the_least_recently_used_one_still_in_use(runtime, pool):
    for name in ("a", "b", "c"):
        add(runtime, name)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    assert len({a.key_id, b.key_id, c.key_id}) == 3
    pool.record(b, "success", 1)
    pool.record(c, "success", 1)

    # By last use alone `a` would be next; it is still in flight.
    assert pool.acquire().key_id == b.key_id


def test_in_flight_is_counted_at_acquire_and_released_by_record(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    leases = [pool.acquire("gemini-2.5-flash"), pool.acquire()]
    assert key_row(db, key_id)["in_flight"] == 2
    pool.record(leases[0], "failure", 1, error=(503, None))
    with pool.lease():
        assert key_row(db, key_id)["in_flight"] == 2
    pool.record(leases[1], "success", 1)
    assert key_row(db, key_id)["in_flight"] == 0


def test_leases_of_callers_that_died_stop_counting_once_expired(db, runtime):
    pool = KeyPool(runtime, lease_ttl=timedelta(minutes=5))
    add(runtime, "a")
    add(runtime, "b")
    dead = pool.acquire().key_id  # never recorded: its caller died
    assert key_row(db, dead)["in_flight"] == 1
    set_columns(db, dead, "lease_expires_at = now() AT TIME ZONE 'UTC' - interval '1 second'")

    pool.release_expired()

    assert key_row(db, dead)["in_flight"] == 0


def test_an_expired_count_restarts_from_the_next_lease(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    set_columns(db, key_id, "in_flight = 5, lease_expires_at = now() AT TIME ZONE 'UTC' "
                            "- interval '1 minute'")
    pool.acquire()
    assert key_row(db, key_id)["in_flight"] == 1
