"""Analytics page at 500 and 5,000 keys × 365 days of stats vs the same page at 10 keys × 30
days; the cost the rollups' triggers add to the pool's record().

`python -m bench.bench_analytics [--quick] [--existing=URL]` (URL: a database loaded
before with the same SQL, measured instead of loading 500 and 5,000 keys here; its master
key in GK_BENCH_EXISTING_MASTER_KEY). Creates
throw-away databases on the configured server (DATABASE_URL's, else the embedded one):
encrypted fake keys through one executemany (lib.demo.bulk_demo_keys), per-model stats for
three models with tokens through one INSERT … SELECT generate_series and the spec's rows as
their sums (both through the rollups' triggers, as any write), then VACUUM ANALYZE. The rows
are written day by day (ORDER BY day), as the pool writes them. Renders pages/analytics.py
under AppTest as a signed-in admin (default view: last 30 days, all keys, top 20 compared)
and checks that the KPIs and the seven charts are there. Rows: the 30-day and 365-day views,
the queries alone, at 500 keys and at 5,000 keys × 365 days (1,825,000 spec rows, 5,475,000
per-model rows; skipped with --quick). Databases are dropped at the end.

record() cost: KeyPool.record() on a 10-key database, and the two-table upsert the quota pool
records with (spec row and per-model row with tokens in one statement), each with the
rollup triggers (as migrated) against the same with the triggers disabled, interleaved.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import text

from bench.common import (
    bench_environment,
    row,
    scratch_database,
    seed_admin,
    signed_in_state,
    vacuum_analyze,
)
from db.engine import REPO_ROOT, get_engine
from db.session import Actor, session_scope

PAGE = str(REPO_ROOT / "pages" / "analytics.py")
AIM = "≤ 1.5×, < 1 s"
TRIGGER_TABLES = ("gemini_key_usage_stats", "gemini_key_model_usage_stats")
# The quota pool's record: both tables in one statement (as lib/pool writes them).
TWO_TABLE_RECORD = """
WITH s AS (
  INSERT INTO gemini_key_usage_stats AS s (key_id, date, request_count, success_count,
    failure_count, rate_limit_count, avg_response_time)
  VALUES (%(k)s, current_date, 1, 1, 0, 0, 42.0)
  ON CONFLICT (key_id, date) DO UPDATE SET request_count = s.request_count + 1,
    success_count = s.success_count + 1,
    avg_response_time = s.avg_response_time + (42.0 - s.avg_response_time)
                        / (s.request_count + 1)
  RETURNING 1)
INSERT INTO gemini_key_model_usage_stats AS m (key_id, date, model, request_count,
  success_count, avg_response_time, prompt_tokens, output_tokens, total_tokens)
VALUES (%(k)s, current_date, 'gemini-2.5-flash', 1, 1, 42.0, 900, 250, 1150)
ON CONFLICT (key_id, date, model) DO UPDATE SET request_count = m.request_count + 1,
  success_count = m.success_count + 1,
  avg_response_time = m.avg_response_time + (42.0 - m.avg_response_time)
                      / (m.request_count + 1),
  prompt_tokens = m.prompt_tokens + 900, output_tokens = m.output_tokens + 250,
  total_tokens = m.total_tokens + 1150
"""
ADMIN = Actor.user(uuid.UUID("00000000-0000-0000-0000-0000000000a1"), "bench@example.com")

# Weekly rhythm and noise; volatile random() in a sub-select so every row draws its own.
# Per-model rows first (three models, tokens), then the spec's rows as their sums, as the
# pool's record statement keeps them.
MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite")
SEED_MODEL_STATS = """
INSERT INTO gemini_key_model_usage_stats
  (key_id, date, model, request_count, success_count, failure_count, rate_limit_count,
   avg_response_time, prompt_tokens, output_tokens, thoughts_tokens, cached_tokens,
   total_tokens)
SELECT key_id, day, model, req, req - f - rl, f, rl, lat, p, o, t, c, p + o + t FROM (
  SELECT key_id, day, model, req, (req * random() * 0.04)::int AS f,
         (req * random() * 0.03)::int AS rl, 150 + random() * 700 AS lat,
         req * (200 + (random() * 800)::int) AS p, req * (50 + (random() * 300)::int) AS o,
         req * (random() * 100)::int AS t, req * (random() * 50)::int AS c
  FROM (SELECT k.id AS key_id, d::date AS day, m.model,
               (CASE WHEN extract(isodow FROM d) > 5 THEN 0.5 ELSE 1 END * m.share
                * (20 + random() * 400))::int AS req
        FROM gemini_api_keys k
        CROSS JOIN generate_series(current_date - (:days - 1), current_date, interval '1 day')
          AS d
        CROSS JOIN (VALUES ('gemini-2.5-flash', 0.6), ('gemini-2.5-pro', 0.25),
                           ('gemini-2.5-flash-lite', 0.15)) AS m(model, share)) g) x
ORDER BY day, key_id, model
"""
SEED_STATS_FROM_MODELS = """
INSERT INTO gemini_key_usage_stats (key_id, date, request_count, success_count, failure_count,
                                    rate_limit_count, avg_response_time)
SELECT key_id, date, sum(request_count), sum(success_count), sum(failure_count),
       sum(rate_limit_count),
       sum(avg_response_time * request_count) / nullif(sum(request_count), 0)
FROM gemini_key_model_usage_stats GROUP BY key_id, date ORDER BY date, key_id
"""


@contextmanager
def bench_database(base: str, keys: int, days: int) -> Iterator[str]:
    """A migrated database on server `base` with `keys` encrypted keys × `days` days of
    stats; dropped afterwards."""
    from lib.demo import bulk_demo_keys
    from lib.runtime import build_runtime

    with scratch_database(f"gk_bench_analytics_{keys}_{days}_{os.getpid()}", base) as url:
        engine = get_engine(url)
        os.environ["DATABASE_URL"] = url
        runtime = build_runtime()
        with session_scope(Actor.service("system"), engine=engine) as session:
            bulk_demo_keys(session, runtime.master_key, keys)
        seed_admin(engine, ADMIN)
        with engine.begin() as connection:
            connection.execute(text(SEED_MODEL_STATS), {"days": days})
            connection.execute(text(SEED_STATS_FROM_MODELS))
        vacuum_analyze(engine)
        yield url


MASTER_KEYS: dict[str, str] = {}  # an --existing database's own master key


def render(url: str, preset: str = "30 days") -> float:
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    if url in MASTER_KEYS:
        MASTER_KEYS.setdefault("", os.environ["GEMINI_KEYS_MASTER_KEY"])
        os.environ["GEMINI_KEYS_MASTER_KEY"] = MASTER_KEYS[url]
    elif "" in MASTER_KEYS:
        os.environ["GEMINI_KEYS_MASTER_KEY"] = MASTER_KEYS[""]
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["gk_user"] = signed_in_state(url, ADMIN)
    at.session_state["an_range"] = preset
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    # outcomes, latency, success rate, models, tokens per day, tokens per key, heatmap
    if at.exception or len(at.get("plotly_chart")) != 7 or not at.metric:
        shown = [e.value for e in (*at.exception, *at.error, *at.info)]
        raise RuntimeError(f"the analytics page did not render fully: {shown}")
    return elapsed


def queries(url: str, days: int = 30) -> float:
    """What the page asks the database for (default view), without Streamlit."""
    from lib.analytics import stats

    started = time.perf_counter()
    flt = stats.StatsFilter.last_days(days)
    with session_scope(ADMIN, engine=get_engine(url)) as session:
        stats.key_options(session)
        stats.group_labels(session)
        stats.models(session)
        stats.summary(session, flt)
        stats.token_summary(session, flt)
        stats.model_breakdown(session, flt)
        stats.per_key_tokens(session, flt)
        rows = stats.per_key_totals(session, flt, limit=20)
        stats.count_filtered_keys(session, flt)
        stats.key_day_matrix(session, flt, [r.key_id for r in rows])
    return time.perf_counter() - started


def database_label(url: str) -> str:
    with get_engine(url).connect() as connection:
        keys, days, rows, model_rows = connection.execute(text(
            "SELECT (SELECT count(*) FROM gemini_api_keys), "
            "(SELECT count(DISTINCT date) FROM gemini_usage_day_rollup), "
            "(SELECT count(*) FROM gemini_key_usage_stats), "
            "(SELECT count(*) FROM gemini_key_model_usage_stats)")).one()
    return (f"{keys:,} keys × {days} days ({rows:,} rows; {model_rows:,} per-model rows)")


def triggers(url: str, enabled: bool) -> None:
    """Turn the rollup triggers on or off (as the owner; the bench's scratch database)."""
    with get_engine(url).begin() as connection:
        for table in TRIGGER_TABLES:
            connection.execute(text(f"ALTER TABLE {table} "
                                    f"{'ENABLE' if enabled else 'DISABLE'} TRIGGER USER"))


def record_cost(url: str, n: int, rounds: int) -> list[dict]:
    """Median per-call seconds of KeyPool.record and of the two-table record statement, with
    the rollup triggers against without, in interleaved rounds."""
    import psycopg2

    from lib.pool import KeyPool
    from lib.runtime import build_runtime

    os.environ["DATABASE_URL"] = url
    pool = KeyPool(build_runtime())
    leases = [pool.acquire() for _ in range(n * rounds * 2 + 50)]
    it = iter(leases)
    for _ in range(50):
        pool.record(next(it), "success", 1.0)
    raw = psycopg2.connect(get_engine(url).url.render_as_string(hide_password=False)
                           .replace("postgresql+psycopg2", "postgresql"))
    raw.autocommit = True
    cursor = raw.cursor()
    cursor.execute("SET ROLE service_role")
    key_ids = [str(lease.key_id) for lease in leases[:10]]

    def statement() -> None:
        cursor.execute(TWO_TABLE_RECORD, {"k": key_ids[0]})
        key_ids.append(key_ids.pop(0))

    samples: dict[tuple[str, bool], list[float]] = {}
    try:
        for _ in range(rounds):
            for on in (True, False):
                triggers(url, on)
                samples.setdefault(("pool", on), []).append(_per_call(
                    lambda: pool.record(next(it), "success", 42.0), n))
                samples.setdefault(("two", on), []).append(_per_call(statement, n))
    finally:
        triggers(url, True)
        raw.close()
        pool.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    return [row("KeyPool.record() with the rollup triggers (10 keys)", med[("pool", True)],
                "same, triggers disabled", med[("pool", False)], "info"),
            row("two-table record statement (spec + per-model with tokens) with the "
                "rollup triggers", med[("two", True)], "same, triggers disabled",
                med[("two", False)], "info")]


def _per_call(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def interleaved(repeats: int, measure: Callable[[], float], baseline: Callable[[], float]
                ) -> tuple[float, float]:
    """Medians of `measure` and `baseline` run in alternating rounds, so a busy machine
    (other processes come and go) weighs on both alike."""
    measure(), baseline()  # warm-up: runtime, caches, plans
    pairs = [(measure(), baseline()) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def compare(big: str, small: str, repeats: int) -> list[dict]:
    """The page (30-day and 365-day views) and its queries on `big` against the same on
    `small`, interleaved."""
    label = database_label(big)
    small_label = "same page @ 10 keys × 30 days"
    results = []
    for name, measure, baseline, base_name in (
        ("analytics page, last 30 days", lambda: render(big), lambda: render(small),
         small_label),
        ("analytics page, 365-day preset", lambda: render(big, "365 days"),
         lambda: render(small), small_label),
        # The same view at both sizes: what the data adds, without the bigger figures'
        # own cost (365 days of bars and a 20 × 365 heatmap, the same at 10 keys).
        ("analytics page, 365-day preset (same view as the baseline)",
         lambda: render(big, "365 days"), lambda: render(small, "365 days"),
         "same 365-day page @ 10 keys × 30 days"),
        ("analytics queries alone, last 30 days", lambda: queries(big),
         lambda: queries(small), "same queries @ 10 keys × 30 days"),
        ("analytics queries alone, 365 days", lambda: queries(big, 365),
         lambda: queries(small), "same queries @ 10 keys × 30 days"),
    ):
        big_s, small_s = interleaved(repeats, measure, baseline)
        results.append(row(f"{name} @ {label}", big_s, base_name, small_s,
                           AIM if "page" in name else "info"))
    return results


def run(quick: bool = False, existing: str | None = None) -> list[dict]:
    """existing: the URL of a database loaded before (as bench_database loads one, with an
    admin seeded or not) to measure instead of loading 500 and 5,000 keys here; at 5,000
    keys × 365 days the load through the rollups' triggers takes many minutes."""
    repeats = 3 if quick else 7
    results: list[dict] = []
    with bench_environment() as server:
        sizes = [] if existing else [(500, 365)] + ([] if quick else [(5000, 365)])
        with bench_database(server, 10, 30) as small:
            if existing:
                with get_engine(existing).connect() as connection:
                    admin = connection.scalar(text(
                        "SELECT count(*) FROM user_profiles WHERE user_id = :id"),
                        {"id": ADMIN.user_id})
                if not admin:
                    seed_admin(get_engine(existing), ADMIN)
                results += compare(existing, small, repeats)
            for keys, days in sizes:
                started = time.perf_counter()
                with bench_database(server, keys, days) as big:
                    print(f"  loaded {keys:,} keys × {days} days in "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
                    results += compare(big, small, repeats)
            results += record_cost(small, 300 if quick else 1000, repeats)
    return results


if __name__ == "__main__":
    from bench.__main__ import render as table

    existing = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--existing=")),
                    None)
    if existing:  # its master key, from the environment of the run that loaded it
        MASTER_KEYS[existing] = os.environ["GK_BENCH_EXISTING_MASTER_KEY"]
    print(table(run(quick="--quick" in sys.argv, existing=existing),
                markdown="--markdown" in sys.argv))
    print(f"(today: {dt.datetime.now(dt.UTC).date()} UTC)")
