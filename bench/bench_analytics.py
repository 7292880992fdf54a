"""Analytics page at 500 keys × 365 days of stats vs the same page at 10 keys × 30 days.

`python -m bench.bench_analytics [--quick]`. Creates throw-away databases on the configured
server (DATABASE_URL's, else the embedded one): encrypted fake keys through one executemany
(lib.demo.bulk_demo_keys), daily stats through one INSERT … SELECT generate_series, then
VACUUM ANALYZE. Renders pages/analytics.py under AppTest as a signed-in admin (default view:
last 30 days, all keys, top 20 compared) and checks that the KPIs and the four charts are
there. Extra rows (aim: info): the 365-day preset, the queries alone, and 5,000 keys × 365
days (1,825,000 rows; skipped with --quick). Databases are dropped at the end.
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
"""
SEED_STATS_FROM_MODELS = """
INSERT INTO gemini_key_usage_stats (key_id, date, request_count, success_count, failure_count,
                                    rate_limit_count, avg_response_time)
SELECT key_id, date, sum(request_count), sum(success_count), sum(failure_count),
       sum(rate_limit_count),
       sum(avg_response_time * request_count) / nullif(sum(request_count), 0)
FROM gemini_key_model_usage_stats GROUP BY key_id, date
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


def render(url: str, preset: str = "30 days") -> float:
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
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
    from lib.analytics import stats

    started = time.perf_counter()
    flt = stats.StatsFilter.last_days(days)
    with session_scope(ADMIN, engine=get_engine(url)) as session:
        stats.key_options(session)
        stats.totals_with_previous(session, flt)
        stats.daily_totals(session, flt)
        rows = stats.per_key_totals(session, flt, limit=20)
        stats.count_filtered_keys(session, flt)
        stats.key_day_matrix(session, flt, [r.key_id for r in rows])
    return time.perf_counter() - started


def interleaved(repeats: int, measure: Callable[[], float], baseline: Callable[[], float]
                ) -> tuple[float, float]:
    """Medians of `measure` and `baseline` run in alternating rounds, so a busy machine
    (other processes come and go) weighs on both alike."""
    measure(), baseline()  # warm-up: runtime, caches, plans
    pairs = [(measure(), baseline()) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    results: list[dict] = []
    small_label = "same page @ 10 keys × 30 days"
    with bench_environment() as server:
        sizes = [(500, 365)] + ([] if quick else [(5000, 365)])
        with bench_database(server, 10, 30) as small:
            for keys, days in sizes:
                started = time.perf_counter()
                with bench_database(server, keys, days) as big:
                    print(f"  loaded {keys:,} keys × {days} days in "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
                    label = f"{keys:,} keys × {days} days ({keys * days:,} rows)"
                    aim = AIM if keys == 500 else "info"
                    for name, measure, baseline, base_name in (
                        ("analytics page, last 30 days", lambda u=big: render(u),
                         lambda: render(small), small_label),
                        ("analytics page, 365-day preset",
                         lambda u=big: render(u, "365 days"), lambda: render(small),
                         small_label),
                        ("analytics queries alone, last 30 days", lambda u=big: queries(u),
                         lambda: queries(small), "same queries @ 10 keys × 30 days"),
                    ):
                        big_s, small_s = interleaved(repeats, measure, baseline)
                        results.append(row(f"{name} @ {label}", big_s, base_name, small_s,
                                           aim if name.endswith("last 30 days")
                                           and "page" in name else "info"))
    return results


if __name__ == "__main__":
    from bench.__main__ import render as table

    print(table(run(quick="--quick" in sys.argv), markdown="--markdown" in sys.argv))
    print(f"(today: {dt.datetime.now(dt.UTC).date()} UTC)")
