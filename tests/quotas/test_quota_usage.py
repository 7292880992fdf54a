"""Today's use against the limits: the current UTC minute and Pacific day, summed by the
database from rows written straight into gemini_quota_usage (as the pool writes them)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.quotas.reads import limits_near, quota_usage_today, quota_windows
from lib.quotas.rules import Limits
from lib.quotas.writes import set_quota
from tests.support.stats_rows import insert_key

# 06:30 UTC on 1 July is 23:30 on 30 June in Los Angeles (PDT, UTC-7): the Pacific day began
# at 07:00 UTC on 30 June and ends at 07:00 UTC on 1 July, although the UTC date is 1 July.
NOW = dt.datetime(2026, 7, 1, 6, 30, 15)
MINUTE = dt.datetime(2026, 7, 1, 6, 30)
DAY = dt.datetime(2026, 6, 30, 7, 0)


def test_windows_follow_the_pacific_day_and_the_utc_minute():
    w = quota_windows(NOW)
    assert (w.minute_start, w.next_minute) == (MINUTE, dt.datetime(2026, 7, 1, 6, 31))
    assert (w.day_start, w.next_day) == (DAY, dt.datetime(2026, 7, 1, 7, 0))


def test_the_day_the_clocks_go_back_lasts_25_hours():
    w = quota_windows(dt.datetime(2026, 11, 1, 12, 0))  # 04:00 PST, after the 02:00 switch
    assert w.day_start == dt.datetime(2026, 11, 1, 7, 0)  # midnight PDT
    assert w.next_day == dt.datetime(2026, 11, 2, 8, 0)  # midnight PST


@pytest.fixture
def fleet(db, admin_actor):
    """proj-a with limits on two models, proj-b on one; usage inside and outside the windows."""
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        insert_key(session, "a-1", group="proj-a")
        insert_key(session, "b-1", group="proj-b")
        lone = insert_key(session, "lone-key")
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-pro", rpm=10, tpm=1000,
                  rpd=100)
        set_quota(session, group_label="proj-a", model="gemini-2.5-flash", rpd=0)
        set_quota(session, group_label="proj-b", model="gemini-2.5-pro", rpm=5)
    usage = [
        ("proj-a", "gemini-2.5-pro", "m", MINUTE, 5, 950),
        ("proj-a", "gemini-2.5-pro", "m", MINUTE - dt.timedelta(minutes=1), 7, 9999),  # past
        ("proj-a", "gemini-2.5-pro", "d", DAY, 90, 40_000),
        ("proj-a", "gemini-2.5-pro", "d", DAY - dt.timedelta(days=1), 100, 1),  # yesterday
        ("proj-a", "gemini-2.5-flash", "d", DAY, 3, 30),
        ("proj-a", "gemini-2.0-flash", "d", DAY, 50, 50),  # no limit on this model
        ("proj-b", "gemini-2.5-flash", "m", MINUTE, 4, 4),  # ... nor on this one
        (f"key:{lone}", "gemini-2.5-pro", "d", DAY, 8, 8),  # a key without a group
    ]
    marks = [
        ("proj-a", "gemini-2.5-flash", True, None, "limit: 0"),
        ("proj-b", "gemini-2.5-pro", False, NOW + dt.timedelta(minutes=3), "per-minute 429"),
        ("proj-b", "gemini-2.5-flash", False, NOW - dt.timedelta(minutes=1), "over"),  # ended
        (f"key:{lone}", "gemini-2.5-pro", False, NOW + dt.timedelta(hours=2), "per-day 429"),
    ]
    with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
        session.execute(text(
            "INSERT INTO gemini_quota_usage (project, model, window_kind, window_start,"
            " requests, tokens) VALUES (:p, :m, :k, :s, :r, :t)"),
            [dict(zip("pmksrt", row, strict=True)) for row in usage])
        session.execute(text(
            "INSERT INTO gemini_model_cooldowns (project, model, no_quota, cooldown_until,"
            " reason) VALUES (:p, :m, :nq, :until, :reason)"),
            [dict(zip(("p", "m", "nq", "until", "reason"), row, strict=True))
             for row in marks])
    return lone


def test_use_is_counted_per_group_and_model_in_the_current_windows(db, fleet, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        today = quota_usage_today(session, now=NOW)
    rows = {(r.group_label, r.model): r for r in today.rows}
    assert list(rows) == [("proj-a", "gemini-2.5-flash"), ("proj-a", "gemini-2.5-pro"),
                          ("proj-b", "gemini-2.5-pro")]  # the limits, in order
    pro = rows["proj-a", "gemini-2.5-pro"]
    assert (pro.minute_requests, pro.minute_tokens, pro.day_requests, pro.day_tokens) == (
        5, 950, 90, 40_000)
    assert pro.limits == Limits(10, 1000, 100)
    assert pro.fractions == {"rpm": 0.5, "tpm": 0.95, "rpd": 0.9}
    assert pro.highest_fraction == 0.95
    assert (pro.resets_at("rpm"), pro.resets_at("rpd")) == (
        dt.datetime(2026, 7, 1, 6, 31), dt.datetime(2026, 7, 1, 7, 0))
    assert not pro.no_quota and pro.cooldown_until is None

    flash = rows["proj-a", "gemini-2.5-flash"]
    assert flash.day_requests == 3 and flash.no_quota
    assert flash.fractions == {"rpm": None, "tpm": None, "rpd": None}  # 0 is no quota, not %

    b_pro = rows["proj-b", "gemini-2.5-pro"]
    assert (b_pro.minute_requests, b_pro.day_requests) == (0, 0)
    assert b_pro.fractions["rpm"] == 0.0
    assert b_pro.cooldown_until == NOW + dt.timedelta(minutes=3)


def test_marks_in_force_are_listed_with_the_key_name_of_a_lone_key(db, fleet, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        marks = quota_usage_today(session, now=NOW).marks
    assert [(m.label, m.model, m.no_quota) for m in marks] == [
        ("key lone-key", "gemini-2.5-pro", False),
        ("proj-a", "gemini-2.5-flash", True),
        ("proj-b", "gemini-2.5-pro", False),
    ]  # the ended cooldown of proj-b × gemini-2.5-flash is not


def test_limits_at_90_percent_or_more_are_reported_fullest_first(db, fleet, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        near = limits_near(session, now=NOW)
        at_half = limits_near(session, now=NOW, fraction=0.5)
    assert [(p.group_label, p.model, p.limit, p.used, p.limit_value) for p in near] == [
        ("proj-a", "gemini-2.5-pro", "tpm", 950, 1000),
        ("proj-a", "gemini-2.5-pro", "rpd", 90, 100),  # exactly 90 % counts
    ]
    assert near[1].describe() == ("proj-a × gemini-2.5-pro: 90 of 100 requests per day (90%),"
                                  " resets 2026-07-01 07:00 UTC")
    assert [p.limit for p in at_half] == ["tpm", "rpd", "rpm"]


def test_a_minute_later_the_minute_counts_are_gone_but_the_day_stays(db, fleet, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        today = quota_usage_today(session, now=NOW + dt.timedelta(minutes=1))
    pro = next(r for r in today.rows if r.model == "gemini-2.5-pro" and r.group_label == "proj-a")
    assert (pro.minute_requests, pro.day_requests) == (0, 90)


def test_after_pacific_midnight_the_day_starts_empty(db, fleet, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        today = quota_usage_today(session, now=dt.datetime(2026, 7, 1, 7, 0, 1))
    assert all(r.day_requests == 0 for r in today.rows)


def test_what_the_pool_counts_is_what_admins_see(db, admin_actor):
    """The windows read here are the ones the pool writes (one clock, lib.clock)."""
    from lib.pool import KeyPool, NoKeyAvailable
    from lib.runtime import build_runtime
    from tests.support.pool import add

    runtime = build_runtime()
    add(runtime, "a-1", group="proj-a")
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-pro", rpd=2)
    pool = KeyPool(runtime)
    try:
        for _ in range(2):
            lease = pool.acquire("gemini-2.5-pro")
            pool.record(lease, "success", 10.0, usage={"promptTokenCount": 120,
                                                       "candidatesTokenCount": 30,
                                                       "totalTokenCount": 150})
        with pytest.raises(NoKeyAvailable):
            pool.acquire("gemini-2.5-pro")
    finally:
        pool.close()
    with session_scope(admin_actor, engine=db.app_engine) as session:
        today = quota_usage_today(session)
        near = limits_near(session)
    [row] = today.rows
    assert (row.day_requests, row.day_tokens) == (2, 240)  # input (prompt) tokens, as tpm
    assert row.fractions["rpd"] == 1.0
    assert [(p.limit, p.used, p.limit_value) for p in near] == [("rpd", 2, 2)]
