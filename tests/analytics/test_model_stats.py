"""Per-model analytics on hand-computed data: the model filter, the breakdown, tokens per day,
per key and in total; the rollup path (all keys) equals the stats rows' path (a key filter),
for ranges of every shape."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.analytics.stats import (
    StatsFilter,
    Tokens,
    model_breakdown,
    models,
    per_key_tokens,
    per_key_totals,
    summary,
    token_summary,
    totals,
)
from tests.support.stats_rows import day, insert_key, insert_usage

FLASH, PRO = "gemini-2.5-flash", "gemini-2.5-pro"


@pytest.fixture
def keys(db):
    """alpha (g1): day0 flash 8 ok 1 fail 1 429 @100 ms, 1000 prompt / 200 output / 50
    thoughts; pro 10 ok @400 ms, 5000 / 900. day2 flash 20 ok @200 ms, 2000 / 400.
    bravo (g2): day0 unspecified model 5 ok @50 ms, 0 tokens; pro 2 fail @1000 ms, 300 / 0.
    charlie (g1, archived): day1 flash 4 ok, no latency, 100 / 10 / 0 / 40 cached.
    Before the range: bravo day-4 flash 100 ok @10 ms, 7000 / 700."""
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        ids = {"alpha": insert_key(s, "alpha", group="g1"),
               "bravo": insert_key(s, "bravo", group="g2"),
               "charlie": insert_key(s, "charlie", group="g1", archived=True)}
        insert_usage(s, ids["alpha"], day(0), {FLASH: (8, 1, 1, 100.0, 1000, 200, 50),
                                               PRO: (10, 0, 0, 400.0, 5000, 900)})
        insert_usage(s, ids["alpha"], day(2), {FLASH: (20, 0, 0, 200.0, 2000, 400)})
        insert_usage(s, ids["bravo"], day(0), {"": (5, 0, 0, 50.0, 0, 0),
                                               PRO: (0, 2, 0, 1000.0, 300, 0)})
        insert_usage(s, ids["charlie"], day(1), {FLASH: (4, 0, 0, None, 100, 10, 0, 40)})
        insert_usage(s, ids["bravo"], day(-4), {FLASH: (100, 0, 0, 10.0, 7000, 700)})
    return ids


RANGE = StatsFilter(day(0), day(3))


def read(db, actor, fn, *args, **kwargs):
    with session_scope(actor, engine=db.app_engine) as s:
        return fn(s, *args, **kwargs)


def test_model_filter_counts_only_that_models_calls(db, keys, admin_actor):
    pro = read(db, admin_actor, summary, StatsFilter(day(0), day(3), model=PRO))
    assert (pro.current.requests, pro.current.successes, pro.current.failures) == (12, 10, 2)
    # (10 × 400 + 2 × 1000) / 12
    assert pro.current.avg_latency_ms == pytest.approx(500.0)
    assert [d.requests for d in pro.days] == [12, 0, 0, 0]
    flash = read(db, admin_actor, totals, StatsFilter(day(0), day(3), model=FLASH))
    assert flash.requests == 34
    unspecified = read(db, admin_actor, totals, StatsFilter(day(0), day(3), model=""))
    assert unspecified.requests == 5
    rows = read(db, admin_actor, per_key_totals, StatsFilter(day(0), day(3), model=PRO),
                sort="requests")
    assert [(r.name, r.requests) for r in rows] == [("alpha", 10), ("bravo", 2), ("charlie", 0)]


def test_breakdown_per_model_adds_up_to_the_spec_table(db, keys, admin_actor):
    rows = read(db, admin_actor, model_breakdown, RANGE)
    assert [(r.label, r.requests) for r in rows] == [
        (FLASH, 34), (PRO, 12), ("unspecified", 5)]
    flash = rows[0]
    assert (flash.failures, flash.rate_limited) == (1, 1)
    # latency over the rows that carry one: (10 × 100 + 20 × 200) / 30
    assert flash.avg_latency_ms == pytest.approx(5000 / 30)
    assert flash.tokens == Tokens(prompt=3100, output=610, thoughts=50, cached=40, total=3760)
    spec = read(db, admin_actor, totals, RANGE)
    assert sum(r.requests for r in rows) == spec.requests == 51
    assert sum(r.failures for r in rows) == spec.failures
    assert read(db, admin_actor, models) == ["", FLASH, PRO]


def test_breakdown_respects_key_filters(db, keys, admin_actor):
    rows = read(db, admin_actor, model_breakdown,
                StatsFilter(day(0), day(3), include_archived=False, group="g1"))
    assert [(r.model, r.requests) for r in rows] == [(FLASH, 30), (PRO, 10)]


def test_tokens_per_day_in_total_and_against_the_previous_period(db, keys, admin_actor):
    t = read(db, admin_actor, token_summary, RANGE)
    assert [d.day for d in t.days] == [day(n) for n in range(4)]
    assert [d.tokens.prompt for d in t.days] == [6300, 100, 2000, 0]
    assert [d.tokens.output for d in t.days] == [1100, 10, 400, 0]
    assert t.current == Tokens(prompt=8400, output=1510, thoughts=50, cached=40, total=9960)
    assert t.previous == Tokens(prompt=7000, output=700, total=7700)  # day -4
    pro = read(db, admin_actor, token_summary, StatsFilter(day(0), day(3), model=PRO))
    assert pro.current.prompt == 5300


def test_tokens_per_key_most_first(db, keys, admin_actor):
    rows = read(db, admin_actor, per_key_tokens, RANGE)
    assert [(r.name, r.tokens.prompt, r.tokens.output) for r in rows] == [
        ("alpha", 8000, 1500), ("bravo", 300, 0), ("charlie", 100, 10)]
    assert rows[0].requests == 40
    only_flash = read(db, admin_actor, per_key_tokens, StatsFilter(day(0), day(3), model=FLASH))
    assert [r.name for r in only_flash] == ["alpha", "charlie"]


@pytest.fixture
def months(db):
    """Six keys × 100 days across four months, three models, random counts and tokens."""
    rng = random.Random(16)
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        ids = [insert_key(s, f"k{i}", group=f"g{i % 2}", archived=i == 5) for i in range(6)]
        for key_id in ids:
            for n in range(-30, 70):
                if rng.random() < 0.8:
                    insert_usage(s, key_id, day(n), {
                        m: (rng.randint(0, 50), rng.randint(0, 5), rng.randint(0, 3),
                            rng.choice([None, rng.uniform(50, 900)]), rng.randint(0, 9000),
                            rng.randint(0, 2000), rng.randint(0, 300), rng.randint(0, 100))
                        for m in (FLASH, PRO, "") if rng.random() < 0.7})
    return ids


def raw_per_key(db, f: StatsFilter, table: str) -> dict:
    where = "date BETWEEN :start AND :end" + (" AND model = :model" if f.model is not None
                                              else "")
    with db.engine.connect() as c:
        return {r[0]: tuple(r[1:]) for r in c.execute(text(
            f"SELECT key_id, sum(request_count), sum(failure_count), sum(rate_limit_count),"
            f" sum(avg_response_time * request_count) / nullif(sum(request_count) FILTER"
            f" (WHERE avg_response_time IS NOT NULL), 0) FROM {table} WHERE {where}"
            f" GROUP BY key_id"), {"start": f.start, "end": f.end, "model": f.model})}


@pytest.mark.parametrize("model", [None, PRO])
def test_rollups_and_stats_rows_agree_for_any_range(db, months, admin_actor, model):
    table = "gemini_key_usage_stats" if model is None else "gemini_key_model_usage_stats"
    for start, end in ((day(-30), day(69)), (day(-1), day(30)), (day(0), day(29)),
                       (day(3), day(10))):
        f = StatsFilter(start, end, model=model)
        expected = raw_per_key(db, f, table)
        rows = read(db, admin_actor, per_key_totals, f, limit=None)
        for r in rows:
            requests, failures, limited, latency = expected.get(r.key_id, (0, 0, 0, None))
            assert (r.requests, r.failures, r.rate_limited) == (requests, failures, limited)
            assert r.avg_latency_ms == pytest.approx(latency)
        # all keys (rollups) vs the same keys named one by one (stats rows)
        all_keys = read(db, admin_actor, summary, f)
        named = read(db, admin_actor, summary,
                     StatsFilter(start, end, key_ids=tuple(months), model=model))
        assert [d.requests for d in all_keys.days] == [d.requests for d in named.days]
        assert all_keys.current.requests == named.current.requests
        assert all_keys.previous.failures == named.previous.failures
        assert all_keys.current.avg_latency_ms == pytest.approx(named.current.avg_latency_ms)
        tokens_all = read(db, admin_actor, token_summary, f)
        tokens_named = read(db, admin_actor, token_summary,
                            StatsFilter(start, end, key_ids=tuple(months), model=model))
        assert tokens_all == tokens_named
        by_key = read(db, admin_actor, per_key_tokens, f, limit=10)
        with db.engine.connect() as c:
            raw = dict(c.execute(text(
                "SELECT key_id, sum(total_tokens) FROM gemini_key_model_usage_stats "
                "WHERE date BETWEEN :s AND :e AND (CAST(:m AS text) IS NULL OR model = :m) "
                "GROUP BY key_id"), {"s": start, "e": end, "m": model}).all())
        assert {r.key_id: r.tokens.total for r in by_key} == {
            k: v for k, v in raw.items() if v}
