"""The rollups of migration 0013 stay exact: inserts, the pool's upserts, updates, deletes, a
key deleted for good and TRUNCATE, through both stats tables; admin-only like the tables."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from tests.support.stats_rows import day, insert_key, insert_usage

COUNTS = ("request_count", "success_count", "failure_count", "rate_limit_count")
TOKENS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens", "total_tokens")
SPEC, MODEL = "gemini_key_usage_stats", "gemini_key_model_usage_stats"
# (rollup, source, grouping columns in the rollup, the same from the source, summed columns)
ROLLUPS = (
    ("gemini_usage_day_rollup", SPEC, "date", "date", COUNTS),
    ("gemini_model_usage_day_rollup", MODEL, "date, model", "date, model", COUNTS + TOKENS),
)
# running totals: (table, source, key columns, summed columns)
RUNNING = (
    ("gemini_usage_key_running", SPEC, ("key_id",), COUNTS),
    ("gemini_model_usage_key_running", MODEL, ("key_id", "model"), COUNTS + TOKENS),
    ("gemini_model_usage_key_running_all", MODEL, ("key_id",), COUNTS + TOKENS),
)


def sums(db, sql: str) -> dict:
    with db.engine.connect() as c:
        return {tuple(r[:-1]): r[-1] for r in c.execute(text(sql))}


def assert_running_exact(db) -> None:
    """Every running row is the sum of its key's (and model's) stats rows up to its date,
    and every stats row's date has a running row."""
    for running, source, keys, summed in RUNNING:
        on = " AND ".join(f"s.{k} = r.{k}" for k in keys)
        cols = ", ".join(f"coalesce(sum(s.{c}), 0)::bigint" for c in summed)
        with db.engine.connect() as c:
            bad = c.execute(text(f"""
SELECT r.* FROM {running} r
WHERE ARRAY[{", ".join(f"r.{c}" for c in summed)}, r.lat_den] IS DISTINCT FROM (
  SELECT ARRAY[{cols}, coalesce(sum(CASE WHEN s.avg_response_time IS NULL THEN 0
                                        ELSE s.request_count END), 0)::bigint]
  FROM {source} s WHERE {on} AND s.date <= r.date)
   OR abs(r.lat_num - (SELECT coalesce(sum(s.avg_response_time::numeric * s.request_count),
                                        0) FROM {source} s WHERE {on} AND s.date <= r.date))
      > 1e-6""")).all()
            assert not bad, (running, bad[:3])
            missing = c.scalar(text(f"""
SELECT count(*) FROM {source} s WHERE s.key_id IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM {running} r WHERE {on} AND r.date = s.date)"""))
            assert missing == 0, running


def assert_rollups_exact(db) -> None:
    assert_running_exact(db)
    for rollup, source, keys, source_keys, summed in ROLLUPS:
        n = len(keys.split(","))
        cols = ", ".join(f"sum({c})::bigint" for c in summed)
        where = " WHERE key_id IS NOT NULL" if "key_id" in keys else ""
        want = sums(db, f"SELECT {source_keys}, ARRAY[{cols}, sum(CASE WHEN avg_response_time"
                        f" IS NULL THEN 0 ELSE request_count END)::bigint] FROM {source}{where}"
                        f" GROUP BY {', '.join(str(i + 1) for i in range(n))}")
        got = sums(db, f"SELECT {keys}, ARRAY[{cols}, sum(lat_den)::bigint] FROM {rollup} "
                       f"GROUP BY {keys} HAVING bool_or(request_count <> 0 OR lat_den <> 0)")
        assert got == {k: v for k, v in want.items() if any(v)}, rollup
        lat_want = sums(db, f"SELECT {source_keys}, sum(avg_response_time * request_count) "
                            f"FROM {source}{where} GROUP BY "
                            f"{', '.join(str(i + 1) for i in range(n))}")
        lat_got = sums(db, f"SELECT {keys}, sum(lat_num)::float8 FROM {rollup} GROUP BY {keys}")
        for k, v in lat_want.items():
            assert lat_got.get(k, 0) == pytest.approx(v or 0), (rollup, k)


POOL_UPSERT = """
INSERT INTO gemini_key_usage_stats AS s (key_id, date, request_count, success_count,
  failure_count, rate_limit_count, avg_response_time)
VALUES (:k, :d, 1, :ok, :fail, 0, :lat)
ON CONFLICT (key_id, date) DO UPDATE SET request_count = s.request_count + 1,
  success_count = s.success_count + excluded.success_count,
  failure_count = s.failure_count + excluded.failure_count,
  avg_response_time = coalesce(s.avg_response_time, excluded.avg_response_time)
    + (excluded.avg_response_time - coalesce(s.avg_response_time,
       excluded.avg_response_time)) / (s.request_count + 1)"""
MODEL_UPSERT = """
INSERT INTO gemini_key_model_usage_stats AS s (key_id, date, model, request_count,
  success_count, failure_count, avg_response_time, prompt_tokens, output_tokens, total_tokens)
VALUES (:k, :d, :m, 1, :ok, :fail, :lat, :p, :o, :p + :o)
ON CONFLICT (key_id, date, model) DO UPDATE SET request_count = s.request_count + 1,
  success_count = s.success_count + excluded.success_count,
  failure_count = s.failure_count + excluded.failure_count,
  avg_response_time = excluded.avg_response_time,
  prompt_tokens = s.prompt_tokens + excluded.prompt_tokens,
  output_tokens = s.output_tokens + excluded.output_tokens,
  total_tokens = s.total_tokens + excluded.total_tokens"""


def test_rollups_follow_every_change_to_the_stats(db):
    rng = random.Random(11)
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        keys = [insert_key(s, f"k{i}") for i in range(5)]
        for key_id in keys:  # bulk rows across three months
            for n in range(-40, 50, 3):
                insert_usage(s, key_id, day(n), {
                    m: (rng.randint(0, 40), rng.randint(0, 4), rng.randint(0, 2),
                        rng.choice([None, rng.uniform(10, 900)]), rng.randint(0, 5000),
                        rng.randint(0, 900), rng.randint(0, 90), rng.randint(0, 60))
                    for m in ("gemini-2.5-flash", "gemini-2.5-pro", "") if rng.random() < .6})
    assert_rollups_exact(db)
    for _ in range(60):  # the pool's upserts, one statement and transaction each
        with session_scope(Actor.service("pool"), engine=db.app_engine) as s:
            params = {"k": rng.choice(keys), "d": day(rng.choice([0, 1, 2, 48])),
                      "ok": rng.randint(0, 1), "fail": 0, "lat": rng.uniform(50, 500),
                      "m": rng.choice(["gemini-2.5-flash", "new-model"]),
                      "p": rng.randint(0, 900), "o": rng.randint(0, 90)}
            params["fail"] = 1 - params["ok"]
            s.execute(text(POOL_UPSERT), params)
            s.execute(text(MODEL_UPSERT), params)
    assert_rollups_exact(db)
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        s.execute(text(f"UPDATE {SPEC} SET request_count = request_count + 5, "
                       "success_count = success_count + 5, avg_response_time = NULL "
                       "WHERE date BETWEEN :a AND :b"), {"a": day(-10), "b": day(10)})
        s.execute(text(f"UPDATE {MODEL} SET date = date + 1, prompt_tokens = prompt_tokens * 2"
                       " WHERE model = 'gemini-2.5-pro' AND date = :d"), {"d": day(-40)})
        s.execute(text(f"DELETE FROM {MODEL} WHERE model = '' AND date < :d"), {"d": day(0)})
        s.execute(text(f"DELETE FROM {SPEC} WHERE date = :d"), {"d": day(5)})
    assert_rollups_exact(db)
    with session_scope(Actor.service("cli"), engine=db.engine) as s:  # cascades to the stats
        s.execute(text("DELETE FROM gemini_api_keys WHERE id = :k"), {"k": keys[0]})
    assert_rollups_exact(db)
    with db.engine.begin() as c:
        c.execute(text(f"TRUNCATE {SPEC}, {MODEL}"))
        assert c.scalar(text("SELECT count(*) FROM gemini_usage_day_rollup")) == 0
        for running, *_ in RUNNING:
            assert c.scalar(text(f"SELECT count(*) FROM {running}")) == 0


def test_rollups_are_for_admins_only(db, admin_actor, member_actor):
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        insert_usage(s, insert_key(s, "k"), day(0), {"gemini-2.5-flash": (3, 0, 0, 10.0, 5, 5)})
    for rollup in [r[0] for r in ROLLUPS] + [r[0] for r in RUNNING]:
        with session_scope(admin_actor, engine=db.app_engine) as s:
            assert s.scalar(text(f"SELECT count(*) FROM {rollup}")) == 1
        with session_scope(member_actor, engine=db.app_engine) as s:
            assert s.scalar(text(f"SELECT count(*) FROM {rollup}")) == 0
        with pytest.raises(Exception, match="permission denied"), \
                session_scope(Actor.anonymous(), engine=db.app_engine) as s:
            s.execute(text(f"SELECT count(*) FROM {rollup}"))


def test_the_pools_record_keeps_the_rollups_exact(db):
    from lib.pool import KeyPool
    from lib.runtime import build_runtime
    from tests.support.pool import add

    runtime = build_runtime()
    for i in range(3):
        add(runtime, f"pool-{i}", group="proj")
    pool = KeyPool(runtime)
    try:
        for i in range(30):
            model = ("gemini-2.5-flash", "gemini-2.5-pro", None)[i % 3]
            lease = pool.acquire(model)
            pool.record(lease, ("success", "failure")[i % 7 == 0], 100.0 + i,
                        usage={"promptTokenCount": 10 * i, "candidatesTokenCount": i,
                               "totalTokenCount": 11 * i})
    finally:
        pool.close()
    with db.engine.connect() as c:
        assert c.scalar(text("SELECT sum(request_count) FROM gemini_usage_day_rollup")) == 30
        assert c.scalar(text("SELECT sum(prompt_tokens) FROM gemini_model_usage_day_rollup")
                        ) == 10 * sum(range(30))
    assert_rollups_exact(db)


def test_racing_records_leave_the_rollups_exact(db):
    """8 threads record on 3 keys at once (same rows, same stripes): no lost update, no
    deadlock, the rollups still sum exactly."""
    from concurrent.futures import ThreadPoolExecutor

    from lib.pool import KeyPool
    from lib.runtime import build_runtime
    from tests.support.pool import add

    runtime = build_runtime()
    for i in range(3):
        add(runtime, f"race-{i}", group="proj")
    pool = KeyPool(runtime)

    def work(n: int) -> None:
        for i in range(25):
            lease = pool.acquire(("gemini-2.5-flash", "gemini-2.5-pro")[(n + i) % 2])
            pool.record(lease, "success", 10.0 + i,
                        usage={"promptTokenCount": 3, "candidatesTokenCount": 1,
                               "totalTokenCount": 4})

    try:
        with ThreadPoolExecutor(8) as workers:
            list(workers.map(work, range(8)))
    finally:
        pool.close()
    with db.engine.connect() as c:
        assert c.scalar(text("SELECT sum(request_count) FROM gemini_usage_day_rollup")) == 200
        assert c.scalar(text("SELECT sum(total_tokens) FROM gemini_model_usage_day_rollup")
                        ) == 800
    assert_rollups_exact(db)
