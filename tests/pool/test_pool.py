"""The key pool against real PostgreSQL (and the fake Gemini for real HTTP error bodies)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from db.session import Actor, session_scope
from lib.keys.writes import archive_key, delete_key, set_active
from lib.pool import KeyDecryptionError, KeyPool, NoKeyAvailable
from lib.pool.gemini_errors import GeminiError
from lib.pool.policy import FailurePolicy
from lib.runtime import build_runtime
from tests.support.keys import audit_rows, dump_text
from tests.support.pool import (
    add,
    call_fake,
    corrupt,
    key_row,
    next_pacific_midnight,
    set_columns,
    stats_rows,
)


@pytest.fixture
def runtime(db):
    return build_runtime()


@pytest.fixture
def pool(runtime):
    return KeyPool(runtime)




def names(pool: KeyPool, n: int) -> list[str]:
    result = []
    for _ in range(n):
        lease = pool.acquire()
        pool.record(lease, "success", 10)
        result.append(lease.name)
    return result


# -- selection -------------------------------------------------------------------------------

def test_acquire_hands_out_the_highest_priority_key_decrypted(runtime, pool):
    add(runtime, "low", priority=1)
    _, best_plain = add(runtime, "best", priority=9)
    add(runtime, "mid", priority=5)

    lease = pool.acquire()

    assert (lease.name, lease.api_key, lease.priority) == ("best", best_plain, 9)


def test_acquire_rotates_least_recently_used_within_the_top_tier(runtime, pool):
    for name in ("a", "b", "c"):
        add(runtime, name, priority=5)
    add(runtime, "backup", priority=1)

    picked = names(pool, 9)

    assert sorted(picked[:3]) == ["a", "b", "c"]
    assert picked[3:6] == picked[:3] and picked[6:9] == picked[:3]  # strict round robin


def test_acquire_stamps_last_used_and_usage_count(db, runtime, pool):
    key_id, _ = add(runtime, "only")

    for _ in range(3):
        pool.acquire()

    row = key_row(db, key_id)
    assert row["usage_count"] == 3
    assert abs(row["last_used"] - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


@pytest.mark.parametrize("retire", ["deactivated", "archived", "deleted", "cooling"])
def test_acquire_never_picks_a_retired_or_cooling_key(db, runtime, pool, retire):
    retired, _ = add(runtime, "retired", priority=9)
    add(runtime, "fallback", priority=1)
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        if retire == "deactivated":
            set_active(session, retired, False, reason="test")
        elif retire == "archived":
            archive_key(session, retired)
        elif retire == "deleted":
            delete_key(session, retired)
    if retire == "cooling":
        set_columns(db, retired, "cooldown_until = now() AT TIME ZONE 'UTC' + interval '1 hour'")

    assert {pool.acquire().name for _ in range(3)} == {"fallback"}


def test_cooldown_ends_when_its_time_has_passed(db, runtime, pool):
    preferred, _ = add(runtime, "preferred", priority=9)
    add(runtime, "other", priority=1)
    set_columns(db, preferred, "cooldown_until = now() AT TIME ZONE 'UTC' + interval '1 minute'")
    assert pool.acquire().name == "other"

    set_columns(db, preferred, "cooldown_until = now() AT TIME ZONE 'UTC' - interval '1 second'")

    assert pool.acquire().name == "preferred"


def test_no_key_available_says_when_the_next_key_frees_up(db, runtime, pool):
    soon = datetime(2099, 1, 2, 3, 4, 5)
    for name, until in (("a", soon + timedelta(hours=2)), ("b", soon)):
        key_id, _ = add(runtime, name)
        set_columns(db, key_id, "cooldown_until = :until", until=until)

    with pytest.raises(NoKeyAvailable) as raised:
        pool.acquire()

    assert raised.value.next_available_at == soon.replace(tzinfo=UTC)
    assert raised.value.active == 2
    assert "all 2 active keys are cooling down" in str(raised.value)
    assert "2099-01-02 03:04:05 UTC" in str(raised.value)


def test_no_key_available_when_no_key_is_active(runtime, pool):
    key_id, _ = add(runtime, "off")
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        set_active(session, key_id, False)

    with pytest.raises(NoKeyAvailable, match="no active key") as raised:
        pool.acquire()
    assert raised.value.next_available_at is None


def test_lease_repr_never_shows_the_key(runtime, pool):
    _, plain = add(runtime, "secret")
    lease = pool.acquire()
    assert plain not in repr(lease) and plain not in str(lease)
    assert plain not in repr(pool)


# -- decryption failures ---------------------------------------------------------------------


def test_a_key_that_fails_to_decrypt_is_deactivated_and_skipped(db, runtime, pool):
    broken, _ = add(runtime, "broken", priority=9)
    good, good_plain = add(runtime, "good", priority=1)
    corrupt(db, broken, good)

    lease = pool.acquire()

    assert (lease.name, lease.api_key) == ("good", good_plain)
    row = key_row(db, broken)
    assert row["is_active"] is False and row["disabled_reason"] == "decryption failed"
    [audit] = audit_rows(db, "key_auto_disabled")
    assert audit["key_id"] == broken and audit["details"]["source"] == "pool"
    assert "authentication failed" in audit["details"]["detail"]


def test_decryption_failures_raise_after_the_policy_limit(db, runtime):
    broken, _ = add(runtime, "broken", priority=9)
    donor, _ = add(runtime, "donor", priority=1)
    corrupt(db, broken, donor)
    pool = KeyPool(runtime, policy=FailurePolicy(max_decryption_failures=1))

    with pytest.raises(KeyDecryptionError, match="'broken'") as raised:
        pool.acquire()

    assert raised.value.key_id == broken
    assert key_row(db, broken)["is_active"] is False
    assert pool.acquire().name == "donor"  # never the broken one again


# -- record: stats ---------------------------------------------------------------------------

def test_record_keeps_exact_counts_and_mean_for_the_utc_day(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    pool = KeyPool(runtime, policy=FailurePolicy(cool_down_on_rate_limit=False))
    plan = [("success", 100.0), ("failure", 250.5), ("rate_limited", 3.25),
            ("success", 0.0), ("invalid", 1000.0)]
    for outcome, latency in plan[:-1]:
        pool.record(pool.acquire(), outcome, latency)

    [row] = stats_rows(db, key_id)
    assert row["date"] == datetime.now(UTC).date()
    assert (row["request_count"], row["success_count"], row["failure_count"],
            row["rate_limit_count"]) == (4, 2, 1, 1)
    assert row["avg_response_time"] == pytest.approx(math.fsum([100, 250.5, 3.25, 0]) / 4)

    pool.record(pool.acquire(), *plan[-1])
    [row] = stats_rows(db, key_id)
    assert (row["request_count"], row["failure_count"]) == (5, 2)
    assert row["avg_response_time"] == pytest.approx(math.fsum(lat for _, lat in plan) / 5)
    assert key_row(db, key_id)["failure_count"] == 2


def test_recording_a_lease_twice_is_refused(runtime, pool):
    add(runtime, "k")
    lease = pool.acquire()
    pool.record(lease, "success", 1)
    with pytest.raises(ValueError, match="already recorded"):
        pool.record(lease, "success", 1)


@pytest.mark.parametrize("outcome, latency, error", [
    ("ok", 1, None),
    ("", 1, None),
    ("success", -1, None),
    ("success", float("nan"), None),
    ("success", float("inf"), None),
    ("success", 1, (429, None)),
])
def test_record_rejects_bad_input_and_counts_nothing(db, runtime, pool, outcome, latency,
                                                     error):
    key_id, _ = add(runtime, "k")
    lease = pool.acquire()
    with pytest.raises(ValueError):
        pool.record(lease, outcome, latency, error=error)
    assert stats_rows(db, key_id) == []
    pool.record(lease, "success", 1)  # the lease is still good
    assert stats_rows(db, key_id)[0]["request_count"] == 1


def test_lease_records_success_with_its_latency(db, runtime, pool):
    key_id, plain = add(runtime, "k")
    with pool.lease() as lease:
        assert lease.api_key == plain
    [row] = stats_rows(db, key_id)
    assert (row["request_count"], row["success_count"]) == (1, 1)
    assert row["avg_response_time"] >= 0


def test_lease_records_a_failure_when_the_body_raises(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    with pytest.raises(RuntimeError, match="boom"), pool.lease():
        raise RuntimeError("boom")
    [row] = stats_rows(db, key_id)
    assert (row["request_count"], row["success_count"], row["failure_count"]) == (1, 0, 1)
    assert key_row(db, key_id)["consecutive_failures"] == 1


def test_lease_does_not_record_twice_when_the_body_recorded(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    with pool.lease() as lease:
        pool.record(lease, "failure", 5, error=(503, None))
    [row] = stats_rows(db, key_id)
    assert (row["request_count"], row["failure_count"]) == (1, 1)


# -- failure policy --------------------------------------------------------------------------

def test_per_minute_429_cools_the_key_for_retry_delay(db, runtime, pool, fake):
    key_id, plain = add(runtime, "busy", group="proj")
    mate, _ = add(runtime, "mate", group="proj")
    fake.respond(plain, "rate_limited_minute_project")  # no model: the key
    lease = pool.acquire()
    while lease.key_id != key_id:
        pool.record(lease, "success", 1)
        lease = pool.acquire()
    before = datetime.now(UTC).replace(tzinfo=None)

    verdict = pool.record(lease, "failure", 20, error=call_fake(fake.base_url, plain))

    assert verdict.outcome == "rate_limited"
    until = key_row(db, key_id)["cooldown_until"]
    assert before + timedelta(seconds=36) <= until <= before + timedelta(seconds=39)  # "37s"
    assert key_row(db, mate)["cooldown_until"] is None  # per-minute: the key alone
    assert stats_rows(db, key_id)[0]["rate_limit_count"] == 1
    [audit] = audit_rows(db, "key_cooldown")
    assert audit["key_id"] == key_id and audit["details"]["scope"] == "minute"
    assert audit["details"]["source"] == "pool" and audit["user_id"] is None


def test_429_without_details_cools_for_the_default(db, runtime):
    key_id, _ = add(runtime, "k")
    pool = KeyPool(runtime, policy=FailurePolicy(default_minute_cooldown=timedelta(minutes=7)))
    before = datetime.now(UTC).replace(tzinfo=None)
    pool.record(pool.acquire(), "rate_limited", 5)
    until = key_row(db, key_id)["cooldown_until"]
    assert before + timedelta(minutes=7) <= until <= before + timedelta(minutes=7, seconds=5)


def test_per_day_429_cools_the_whole_group_until_midnight_pacific(db, runtime, pool, fake):
    hit, plain = add(runtime, "hit", priority=9, group="project-1")
    mate, _ = add(runtime, "mate", group="project-1")
    other, _ = add(runtime, "other", group="project-2")
    loner, _ = add(runtime, "loner")
    fake.respond(plain, "rate_limited_day_project")  # retryDelay "5s": quotaId decides
    lease = pool.acquire()
    assert lease.key_id == hit

    pool.record(lease, "failure", 20, error=call_fake(fake.base_url, plain))

    midnight = next_pacific_midnight()
    assert key_row(db, hit)["cooldown_until"] == midnight
    assert key_row(db, mate)["cooldown_until"] == midnight
    assert key_row(db, other)["cooldown_until"] is None
    assert key_row(db, loner)["cooldown_until"] is None
    audits = audit_rows(db, "key_cooldown")
    assert {a["key_id"] for a in audits} == {hit, mate}
    assert all(a["details"]["scope"] == "day" for a in audits)
    assert [a for a in audits if a["key_id"] == mate][0]["details"]["caused_by_key_id"] == str(hit)

    # Another per-day 429 from the group changes nothing more and writes no audit row.
    lease = pool.acquire()
    assert lease.key_id in (other, loner)
    lease.key_id, lease.group_label = mate, "project-1"
    pool.record(lease, "rate_limited", 5, error=call_fake(fake.base_url, plain))
    assert len(audit_rows(db, "key_cooldown")) == 2


@pytest.mark.parametrize("kind, status, reason", [
    ("invalid", 400, "API_KEY_INVALID"),
    ("permission_denied", 403, "CONSUMER_SUSPENDED"),
    ("leaked", 403, "leaked"),
    ("service_blocked", 403, "API_KEY_SERVICE_BLOCKED"),
])
def test_invalid_or_denied_key_is_deactivated_at_once(db, runtime, pool, fake, kind, status,
                                                      reason):
    key_id, plain = add(runtime, "bad")
    fake.respond(plain, kind)

    verdict = pool.record(pool.acquire(), "failure", 9, error=call_fake(fake.base_url, plain))

    assert verdict.outcome == "invalid"
    row = key_row(db, key_id)
    assert row["is_active"] is False
    assert str(status) in row["disabled_reason"] and reason in row["disabled_reason"]
    [audit] = audit_rows(db, "key_auto_disabled")
    assert audit["key_id"] == key_id and audit["details"]["source"] == "pool"
    assert audit["details"]["error"]["status"] == status
    # The 403 CONSUMER_SUSPENDED body quotes the key itself: it must be redacted everywhere.
    assert plain not in dump_text(db)
    with pytest.raises(NoKeyAvailable):
        pool.acquire()


def test_caller_reported_invalid_deactivates(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    pool.record(pool.acquire(), "invalid", 3)
    assert key_row(db, key_id)["is_active"] is False


def test_consecutive_failures_deactivate_and_a_success_resets_the_run(db, runtime, pool):
    key_id, _ = add(runtime, "flaky")

    for _ in range(4):
        pool.record(pool.acquire(), "failure", 1)
    assert key_row(db, key_id)["consecutive_failures"] == 4
    pool.record(pool.acquire(), "success", 1)
    assert key_row(db, key_id)["consecutive_failures"] == 0
    for _ in range(4):
        pool.record(pool.acquire(), "failure", 1)
    assert key_row(db, key_id)["is_active"] is True
    assert audit_rows(db, "key_auto_disabled") == []

    pool.record(pool.acquire(), "failure", 1, error=RuntimeError("parse error"))

    row = key_row(db, key_id)
    assert row["is_active"] is False and row["disabled_reason"].startswith("5 consecutive")
    assert row["failure_count"] == 9 and row["consecutive_failures"] == 0
    [audit] = audit_rows(db, "key_auto_disabled")
    assert audit["details"]["before"]["consecutive_failures"] == 5


def test_consecutive_failure_limit_is_configurable(db, runtime):
    key_id, _ = add(runtime, "k")
    pool = KeyPool(runtime, policy=FailurePolicy(max_consecutive_failures=2))
    pool.record(pool.acquire(), "failure", 1)
    assert key_row(db, key_id)["is_active"] is True
    pool.record(pool.acquire(), "failure", 1)
    assert key_row(db, key_id)["is_active"] is False


@pytest.mark.parametrize("error", [
    "server_error", "overloaded", ConnectionRefusedError("refused"), TimeoutError("timed out"),
    (404, b'{"error": {"code": 404, "message": "model not found", "status": "NOT_FOUND"}}'),
])
def test_google_trouble_and_network_errors_never_disable(db, runtime, pool, fake, error):
    key_id, plain = add(runtime, "k")
    if isinstance(error, str):
        fake.respond(plain, error)
    for _ in range(8):
        lease = pool.acquire()
        got = call_fake(fake.base_url, plain) if isinstance(error, str) else error
        pool.record(lease, "failure", 1, error=got)
    row = key_row(db, key_id)
    assert row["is_active"] is True and row["consecutive_failures"] == 0
    assert row["failure_count"] == 8 and stats_rows(db, key_id)[0]["failure_count"] == 8
    assert audit_rows(db, "key_auto_disabled") == []


def test_record_classifies_http_errors_raised_inside_a_lease(db, runtime, pool, fake):
    import urllib.request

    key_id, plain = add(runtime, "k")
    fake.respond(plain, "invalid")
    with pytest.raises(urllib.error.HTTPError), pool.lease() as lease:
        request = urllib.request.Request(  # noqa: S310
            f"{fake.base_url}/v1beta/models", headers={"x-goog-api-key": lease.api_key})
        urllib.request.urlopen(request, timeout=5)  # noqa: S310
    assert key_row(db, key_id)["is_active"] is False


def test_gemini_error_object_is_accepted(db, runtime, pool):
    key_id, _ = add(runtime, "k")
    error = GeminiError(kind="rate_limited", status=429, quota_scope="minute",
                        retry_after=timedelta(seconds=3))
    before = datetime.now(UTC).replace(tzinfo=None)
    pool.record(pool.acquire(), "failure", 1, error=error)
    after = datetime.now(UTC).replace(tzinfo=None)
    # The error's own retry_after (3 s), not the policy's default minute.
    until = key_row(db, key_id)["cooldown_until"]
    assert before + timedelta(seconds=3) <= until <= after + timedelta(seconds=3)


def test_policy_audit_rows_hold_no_key_material(db, runtime, pool, fake):
    key_id, plain = add(runtime, "k", group="g")
    fake.respond(plain, "rate_limited_day")
    pool.record(pool.acquire(), "failure", 1, error=call_fake(fake.base_url, plain))
    ciphertext = key_row(db, key_id)["encrypted_key"]
    details = json.dumps([a["details"] for a in audit_rows(db)])
    assert plain not in details and ciphertext not in details
