"""Analytics queries on hand-computed data: weighted latency, zero-filled days, filters."""

from __future__ import annotations

import datetime as dt

import pytest

from db.session import Actor, session_scope
from lib.analytics.stats import (
    StatsFilter,
    Totals,
    daily_totals,
    key_day_matrix,
    per_key_totals,
    summary,
    totals,
    totals_with_previous,
)
from lib.errors import InvalidInput
from tests.support.stats_rows import day, insert_key, insert_stat


@pytest.fixture
def keys(db):
    """A (g1): day0 10 req @100 ms (8 ok, 1 fail, 1 429), day2 30 ok @200 ms.
    B (g2): day0 90 ok @300 ms; C (g1, archived): day2 5 ok with no latency recorded;
    D (g2): no traffic. Days 1 and 3 are quiet."""
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        ids = {
            "A": insert_key(s, "alpha", group="g1"),
            "B": insert_key(s, "bravo", group="g2"),
            "C": insert_key(s, "charlie", group="g1", archived=True),
            "D": insert_key(s, "delta", group="g2"),
        }
        insert_stat(s, ids["A"], day(0), ok=8, fail=1, rl=1, latency=100.0)
        insert_stat(s, ids["A"], day(2), ok=30, latency=200.0)
        insert_stat(s, ids["B"], day(0), ok=90, latency=300.0)
        insert_stat(s, ids["C"], day(2), ok=5, latency=None)
        insert_stat(s, ids["B"], day(-1), ok=7, fail=3, latency=50.0)  # before the range
    return ids


RANGE = StatsFilter(day(0), day(3))


def read(db, actor, fn, *args, **kwargs):
    with session_scope(actor, engine=db.engine) as s:
        return fn(s, *args, **kwargs)


def test_daily_latency_is_weighted_by_requests_not_mean_of_means(db, keys, admin_actor):
    rows = read(db, admin_actor, daily_totals, RANGE)
    assert rows[0].day == day(0)
    assert rows[0].requests == 100
    # (10 × 100 + 90 × 300) / 100 = 280; the mean of the two means would be 200.
    assert rows[0].avg_latency_ms == pytest.approx(280.0)


def test_rows_without_latency_do_not_dilute_the_average(db, keys, admin_actor):
    rows = read(db, admin_actor, daily_totals, RANGE)
    assert rows[2].requests == 35
    assert rows[2].avg_latency_ms == pytest.approx(200.0)  # C's 5 requests carry no latency


def test_quiet_days_are_zero_rows_not_gaps(db, keys, admin_actor):
    rows = read(db, admin_actor, daily_totals, RANGE)
    assert [r.day for r in rows] == [day(0), day(1), day(2), day(3)]
    for quiet in (rows[1], rows[3]):
        assert (quiet.requests, quiet.successes, quiet.failures, quiet.rate_limited) == (0,) * 4
        assert quiet.avg_latency_ms is None and quiet.success_rate is None


def test_range_totals_match_hand_computed_sums(db, keys, admin_actor):
    t = read(db, admin_actor, totals, RANGE)
    assert (t.requests, t.successes, t.failures, t.rate_limited) == (135, 133, 1, 1)
    assert t.avg_latency_ms == pytest.approx((1000 + 27000 + 6000) / 130)
    assert t.success_rate == pytest.approx(133 / 135)


@pytest.mark.parametrize("change, expected_requests", [
    (dict(key_ids=("A",)), 40),
    (dict(key_ids=("A", "C")), 45),
    (dict(group="g1"), 45),
    (dict(group="g2"), 90),
    (dict(group="nobody"), 0),
    (dict(include_archived=False), 130),
    (dict(group="g1", include_archived=False), 40),
])
def test_filters_narrow_the_sums(db, keys, admin_actor, change, expected_requests):
    change = dict(change)  # the parametrized dict is shared by every server's run
    if "key_ids" in change:
        change["key_ids"] = tuple(keys[k] for k in change["key_ids"])
    f = StatsFilter(RANGE.start, RANGE.end, **change)
    assert read(db, admin_actor, totals, f).requests == expected_requests
    assert sum(r.requests for r in read(db, admin_actor, daily_totals, f)) == expected_requests


def test_previous_period_has_equal_length_and_its_own_sums(db, keys, admin_actor):
    f = StatsFilter(day(0), day(1))
    assert f.previous() == StatsFilter(day(-2), day(-1))
    current, previous = read(db, admin_actor, totals_with_previous, f)
    assert current.requests == 100
    assert previous == Totals(requests=10, successes=7, failures=3, rate_limited=0,
                              avg_latency_ms=50.0)


def test_per_key_totals_sort_by_failures_and_list_idle_keys(db, keys, admin_actor):
    rows = read(db, admin_actor, per_key_totals, RANGE, sort="failures")
    assert [r.name for r in rows] == ["alpha", "bravo", "charlie", "delta"]
    delta = rows[-1]
    assert (delta.requests, delta.avg_latency_ms) == (0, None)
    alpha = rows[0]
    assert (alpha.requests, alpha.failures) == (40, 1)
    assert alpha.avg_latency_ms == pytest.approx((1000 + 6000) / 40)
    assert rows[2].archived is True


def test_per_key_sort_by_rate_limit_share_puts_idle_keys_last(db, keys, admin_actor):
    rows = read(db, admin_actor, per_key_totals, RANGE, sort="rate_limit_share", limit=2)
    assert [r.name for r in rows] == ["alpha", "bravo"]


def test_key_day_matrix_fills_every_day(db, keys, admin_actor):
    cells = read(db, admin_actor, key_day_matrix, RANGE, [keys["A"], keys["D"]], "requests")
    by_key = {}
    for key_id, d, value in cells:
        by_key.setdefault(key_id, []).append((d, value))
    assert by_key[keys["A"]] == [(day(0), 10), (day(1), 0), (day(2), 30), (day(3), 0)]
    assert [v for _, v in by_key[keys["D"]]] == [0, 0, 0, 0]


def test_non_admin_reads_nothing(db, keys, member_actor):
    assert read(db, member_actor, totals, RANGE).requests == 0
    assert read(db, member_actor, per_key_totals, RANGE) == []


@pytest.mark.parametrize("start, end", [
    (day(3), day(0)),
    (dt.date(2016, 1, 1), dt.date(2026, 12, 31)),
])
def test_filter_rejects_reversed_or_huge_ranges(start, end):
    with pytest.raises(InvalidInput):
        StatsFilter(start, end)


def test_unknown_sort_is_refused(db, keys, admin_actor):
    with pytest.raises(InvalidInput):
        read(db, admin_actor, per_key_totals, RANGE, sort="name; drop table x")


@pytest.mark.parametrize("f", [RANGE, StatsFilter(day(0), day(1)), StatsFilter(day(2), day(2)),
                               StatsFilter(day(-3), day(3), include_archived=False)])
def test_summary_agrees_with_the_separate_queries(db, keys, admin_actor, f):
    with session_scope(admin_actor, engine=db.engine) as s:
        got = summary(s, f)
        current, previous = totals_with_previous(s, f)
        days = daily_totals(s, f)
    assert got.days == days
    for mine, theirs in ((got.current, current), (got.previous, previous)):
        assert (mine.requests, mine.successes, mine.failures, mine.rate_limited) == (
            theirs.requests, theirs.successes, theirs.failures, theirs.rate_limited)
        assert mine.avg_latency_ms == pytest.approx(theirs.avg_latency_ms)
