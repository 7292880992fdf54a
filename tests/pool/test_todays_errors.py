"""Gemini's errors as of late 2026, with real-shaped bodies: what each does to a key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.pool.gemini_errors import classify_error, cooldown_until
from tests.support.fake_gemini import error_body
from tests.support.pool import add, call_fake, key_row, next_pacific_midnight, table_rows

MODEL = "gemini-2.5-pro"


def classified(kind: str):
    return classify_error(*error_body(kind, model=MODEL))


def test_an_authorization_key_the_api_refuses_is_disabled_with_what_to_do(db, runtime, pool,
                                                                          fake):
    key_id, plain = add(runtime, "aq-key")
    fake.respond(plain, "auth_key_refused")
    verdict = pool.record(pool.acquire(MODEL), "failure", 5,
                          error=call_fake(fake.base_url, plain, MODEL))
    row = key_row(db, key_id)
    assert verdict.outcome == "invalid" and row["is_active"] is False
    assert "401 ACCESS_TOKEN_TYPE_UNSUPPORTED" in row["disabled_reason"]
    assert "create a new key in Google AI Studio" in row["disabled_reason"]


def test_a_plain_401_is_counted_but_does_not_disable_at_once():
    error = classify_error(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                           "message": "Request had invalid credentials."}})
    assert error.kind == "invalid" and not error.disables_key


def test_an_unrestricted_standard_key_is_disabled_with_restrict_this_key(db, runtime, pool,
                                                                         fake):
    key_id, plain = add(runtime, "aiza-key")
    fake.respond(plain, "unrestricted_key")
    pool.record(pool.acquire(), "failure", 5, error=call_fake(fake.base_url, plain))
    row = key_row(db, key_id)
    assert row["is_active"] is False
    assert "restrict this key in Google Cloud Console" in row["disabled_reason"]


def test_other_403s_disable_without_the_restriction_advice():
    assert classified("permission_denied").advice is None


def test_several_violations_the_strictest_wins():
    error = classified("rate_limited_several")
    assert (error.quota_scope, error.model, error.no_quota) == ("day", MODEL, False)
    now = datetime.now(UTC)
    assert cooldown_until(error, now=now) == next_pacific_midnight().replace(tzinfo=UTC)


def test_a_fractional_retry_delay_is_kept_to_the_microsecond():
    error = classified("rate_limited_fractional")
    assert error.quota_scope == "minute"
    assert error.retry_after == timedelta(seconds=45.837906927)


def test_a_per_day_quota_with_retry_delay_0s_is_still_per_day():
    error = classified("rate_limited_day_zero_delay")
    assert error.quota_scope == "day" and error.retry_after == timedelta(0)
    now = datetime.now(UTC)
    assert cooldown_until(error, now=now) == next_pacific_midnight().replace(tzinfo=UTC)


def test_limit_0_in_the_message_means_no_quota_for_the_model():
    error = classified("no_quota")
    assert (error.model, error.no_quota) == (MODEL, True)
    assert not classified("rate_limited_day").no_quota  # "limit: 50" style values


@pytest.mark.parametrize("kind", ["rate_limited_minute_project", "rate_limited_day_project"])
def test_a_429_without_a_model_is_not_per_model(kind):
    error = classified(kind)
    assert error.model is None and not error.no_quota


def test_a_fractional_per_model_429_cools_the_projects_model_for_that_long(db, runtime, pool,
                                                                           fake):
    key_id, plain = add(runtime, "k", group="team")
    fake.respond(plain, "rate_limited_fractional")
    before = datetime.now(UTC).replace(tzinfo=None)
    pool.record(pool.acquire(MODEL), "failure", 5, error=call_fake(fake.base_url, plain, MODEL))
    [row] = table_rows(db, "gemini_model_cooldowns")
    assert before + timedelta(seconds=45) <= row["cooldown_until"] <= before + timedelta(
        seconds=47)
    assert key_row(db, key_id)["cooldown_until"] is None


def test_a_burst_of_429s_writes_one_model_cooldown_audit_row(db, runtime, pool, fake):
    from tests.support.keys import audit_rows

    _, plain = add(runtime, "k", group="team")
    fake.respond(plain, "rate_limited_day")
    for _ in range(3):
        lease = pool.acquire()  # no model asked: the 429 still names one
        pool.record(lease, "failure", 5, error=call_fake(fake.base_url, plain, MODEL))
    assert len(audit_rows(db, "model_cooldown")) == 1


def test_a_health_checks_per_model_429_cools_that_model_not_the_key(db, runtime, fake):
    from db.session import Actor, session_scope
    from lib.pool.health import check_stored_key

    key_id, plain = add(runtime, "k", group="team")
    fake.respond(plain, "rate_limited_day")
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        result = check_stored_key(session, runtime.master_key, key_id,
                                  base_url=fake.base_url)
    assert result.status == "rate_limited" and "for this project" in result.action
    [row] = table_rows(db, "gemini_model_cooldowns")
    assert row["project"] == "team" and row["cooldown_until"] == next_pacific_midnight()
    assert key_row(db, key_id)["cooldown_until"] is None
