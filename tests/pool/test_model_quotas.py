"""Quotas per project x model: model cooldowns, no quota, admins' budgets, NoKeyAvailable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from lib.pool import NoKeyAvailable
from tests.support.keys import audit_rows
from tests.support.pool import (
    add,
    call_fake,
    key_row,
    next_pacific_midnight,
    set_limit,
    table_rows,
)

PRO, FLASH = "gemini-2.5-pro", "gemini-2.5-flash"


def test_a_per_day_429_for_one_model_leaves_the_projects_other_models_usable(
        db, runtime, pool, fake):
    hit, plain = add(runtime, "hit", group="project-1")
    mate, _ = add(runtime, "mate", group="project-1")
    fake.respond(plain, "rate_limited_day")
    lease = pool.acquire(PRO)
    while lease.key_id != hit:
        pool.record(lease, "success", 1)
        lease = pool.acquire(PRO)

    pool.record(lease, "failure", 20, error=call_fake(fake.base_url, plain, PRO))

    [cooldown] = table_rows(db, "gemini_model_cooldowns")
    assert (cooldown["project"], cooldown["model"]) == ("project-1", PRO)
    assert cooldown["cooldown_until"] == next_pacific_midnight() and not cooldown["no_quota"]
    with pytest.raises(NoKeyAvailable) as refused:
        pool.acquire(PRO)
    assert "project-1" in str(refused.value) and PRO in str(refused.value)
    assert refused.value.next_available_at == next_pacific_midnight().replace(tzinfo=UTC)
    assert refused.value.retry_after > 0
    assert {pool.acquire(FLASH).key_id, pool.acquire(FLASH).key_id} == {hit, mate}
    assert pool.acquire().key_id in (hit, mate)  # without a model: as before
    assert key_row(db, hit)["cooldown_until"] is None  # the keys themselves never rested
    [audit] = audit_rows(db, "model_cooldown")
    assert audit["key_id"] == hit and audit["details"]["scope"] == "day"


def test_limit_0_marks_the_model_unavailable_for_that_project_only(db, runtime, pool, fake):
    poor, plain = add(runtime, "poor", priority=9, group="free-tier")
    rich, _ = add(runtime, "rich", group="paid")
    fake.respond(plain, "no_quota")
    lease = pool.acquire(PRO)
    assert lease.key_id == poor

    pool.record(lease, "failure", 20, error=call_fake(fake.base_url, plain, PRO))

    [row] = table_rows(db, "gemini_model_cooldowns")
    assert (row["project"], row["model"], row["no_quota"]) == ("free-tier", PRO, True)
    assert row["cooldown_until"] is None  # not a cooldown: lasts until an admin clears it
    assert [pool.acquire(PRO).key_id for _ in range(3)] == [rich] * 3
    assert pool.acquire(FLASH).key_id == poor
    assert key_row(db, poor)["cooldown_until"] is None


def test_key_wide_cooldowns_and_deactivations_apply_to_every_model(db, runtime, pool):
    a, _ = add(runtime, "a")
    add(runtime, "b")
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE gemini_api_keys SET cooldown_until = now() AT TIME ZONE 'UTC' + "
            "interval '1 hour' WHERE name = 'b'")
    assert {pool.acquire(PRO).key_id for _ in range(3)} == {a}


@pytest.mark.parametrize("limit, used_by", [("rpm", "requests"), ("rpd", "requests")])
def test_a_request_budget_is_never_exceeded(db, runtime, pool, limit, used_by):
    for i in range(3):
        add(runtime, f"k{i}", group="team")
    set_limit(db, "team", PRO, **{limit: 4})
    leases = [pool.acquire(PRO) for _ in range(4)]
    for lease in leases:
        pool.record(lease, "success", 1)

    with pytest.raises(NoKeyAvailable) as refused:
        pool.acquire(PRO)

    assert f"{limit} limit for {PRO} reached (4/4)" in str(refused.value)
    now = datetime.now(UTC)
    if limit == "rpm":
        assert refused.value.next_available_at <= now + timedelta(seconds=61)
    else:
        assert refused.value.next_available_at == next_pacific_midnight().replace(tzinfo=UTC)
    counts = {r["window_kind"]: r["requests"] for r in table_rows(db, "gemini_quota_usage")}
    assert counts == {"m": 4, "d": 4}
    assert pool.acquire(FLASH).group_label == "team"  # another model: its own budget


def test_a_token_budget_stops_once_the_minutes_tokens_reach_it(db, runtime, pool):
    add(runtime, "k", group="team")
    set_limit(db, "team", FLASH, tpm=1000)
    lease = pool.acquire(FLASH)
    pool.record(lease, "success", 5, usage={"promptTokenCount": 1200, "totalTokenCount": 1300})
    with pytest.raises(NoKeyAvailable, match="tpm limit"):
        pool.acquire(FLASH)


def test_an_admins_zero_limit_means_no_quota_and_nothing_frees_it(db, runtime, pool):
    add(runtime, "k", group="team")
    set_limit(db, "team", PRO, rpd=0)
    with pytest.raises(NoKeyAvailable) as refused:
        pool.acquire(PRO)
    assert refused.value.next_available_at is None and refused.value.retry_after is None
    assert "rpd limit for gemini-2.5-pro is 0" in str(refused.value)


def test_limits_bind_only_their_group_and_ungrouped_keys_are_their_own_project(
        db, runtime, pool):
    add(runtime, "grouped", priority=9, group="team")
    loner, _ = add(runtime, "loner")
    set_limit(db, "team", PRO, rpm=0)
    assert pool.acquire(PRO).key_id == loner
    projects = {r["project"] for r in table_rows(db, "gemini_quota_usage")}
    assert projects == {f"key:{loner}"}


def test_exclude_skips_keys_a_retrying_caller_already_tried(runtime, pool):
    first, _ = add(runtime, "first", priority=9)
    second, _ = add(runtime, "second")
    assert pool.acquire(PRO, exclude=[first]).key_id == second
    assert pool.acquire(exclude=[str(first)]).key_id == second
    with pytest.raises(NoKeyAvailable):
        pool.acquire(PRO, exclude=[first, second])


def test_the_sweep_deletes_quota_windows_nothing_reads_any_more(db, runtime, pool):
    """Minute windows older than an hour and day windows older than a week go on the pool's
    sweep; the current ones, which acquire and the pages read, stay."""
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    windows = {("m", now), ("m", now - timedelta(minutes=50)),
               ("m", now - timedelta(hours=2)), ("m", now - timedelta(days=3)),
               ("d", now - timedelta(days=1)), ("d", now - timedelta(days=7)),
               ("d", now - timedelta(days=9)), ("d", now - timedelta(days=400))}
    with db.engine.begin() as connection:
        for kind, start in windows:
            connection.execute(text(
                "INSERT INTO gemini_quota_usage (project, model, window_kind, window_start, "
                "requests) VALUES ('project-1', :m, :k, :s, 3)"), {"m": FLASH, "k": kind,
                                                                  "s": start})

    pool.release_expired()

    kept = {(r["window_kind"], r["window_start"])
            for r in table_rows(db, "gemini_quota_usage")}
    assert kept == {("m", now), ("m", now - timedelta(minutes=50)),
                    ("d", now - timedelta(days=1)), ("d", now - timedelta(days=7))}
