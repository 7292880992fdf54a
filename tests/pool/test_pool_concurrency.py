"""Exact stats under concurrency, and the pool query's plan at 30,000 keys."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import text

from lib.pool import KeyPool
from lib.pool.policy import FailurePolicy
from lib.runtime import build_runtime
from tests.support.pool import add, key_row, stats_rows

THREADS = 8
CYCLES = 2_000


@pytest.mark.one_server
def test_concurrent_acquire_record_cycles_lose_nothing(db):
    runtime = build_runtime()
    key_ids = [add(runtime, f"k{i}")[0] for i in range(3)]
    # Keep all three keys in rotation: no cooldowns, no deactivation, so every outcome
    # (including plain failures that count toward consecutive_failures) is exercised.
    pool = KeyPool(runtime, policy=FailurePolicy(max_consecutive_failures=None,
                                                 cool_down_on_rate_limit=False))
    outcomes = ("success", "success", "failure", "rate_limited")
    recorded: list[list[tuple[uuid.UUID, str, float]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        rng = random.Random(index)
        mine = recorded[index]
        try:
            start.wait()
            for _ in range(CYCLES):
                lease = pool.acquire()
                outcome, latency = rng.choice(outcomes), round(rng.uniform(0.5, 3000), 3)
                pool.record(lease, outcome, latency)
                mine.append((lease.key_id, outcome, latency))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert errors == []
    print(f"\n{THREADS}x{CYCLES} acquire/record cycles in {elapsed:.1f} s")

    by_key: dict[uuid.UUID, list[tuple[str, float]]] = defaultdict(list)
    for thread_records in recorded:
        for key_id, outcome, latency in thread_records:
            by_key[key_id].append((outcome, latency))
    assert set(by_key) == set(key_ids)

    total = 0
    for key_id in key_ids:
        rows = stats_rows(db, key_id)  # one per UTC day (two if the run crossed midnight)
        requests = sum(r["request_count"] for r in rows)
        successes = sum(r["success_count"] for r in rows)
        failures = sum(r["failure_count"] for r in rows)
        limited = sum(r["rate_limit_count"] for r in rows)
        mean = math.fsum(r["avg_response_time"] * r["request_count"] for r in rows) / requests
        mine = by_key[key_id]
        assert requests == len(mine)
        assert successes + failures + limited == requests
        assert successes == sum(o == "success" for o, _ in mine)
        assert failures == sum(o == "failure" for o, _ in mine)
        assert limited == sum(o == "rate_limited" for o, _ in mine)
        assert mean == pytest.approx(math.fsum(lat for _, lat in mine) / len(mine), rel=1e-9)
        row = key_row(db, key_id)
        assert row["usage_count"] == requests and row["failure_count"] == failures
        total += requests
    assert total == THREADS * CYCLES


@pytest.mark.one_server
def test_acquire_walks_the_pool_index_at_30000_keys(db):
    from bench.bench_pool import ACQUIRE_PLAN_SQL

    runtime = build_runtime()
    with runtime.engine.begin() as connection:
        # Placeholder rows generated in SQL (fast); only the plan is looked at. Priorities
        # 1-3, used at spread-out times, every 10th cooling down, every 20th inactive.
        connection.exec_driver_sql("SET LOCAL ROLE service_role")
        connection.execute(text("""
            INSERT INTO gemini_api_keys (name, encrypted_key, encryption_iv, encryption_tag,
              fingerprint, priority, is_active, last_used, cooldown_until)
            SELECT 'bulk-' || g, 'x', 'x', 'x', 'fp-' || g, 1 + g % 3, g % 20 <> 0,
                   now() AT TIME ZONE 'UTC' - g * interval '1 second',
                   CASE WHEN g % 10 = 0 THEN now() AT TIME ZONE 'UTC' + interval '1 hour' END
              FROM generate_series(1, 30000) g"""))
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE gemini_api_keys")
    _, plain = add(runtime, "top", priority=4)
    with runtime.engine.connect() as connection:
        connection.exec_driver_sql("SET LOCAL ROLE service_role")
        plan = "\n".join(connection.exec_driver_sql(ACQUIRE_PLAN_SQL).scalars())
        connection.rollback()
    assert "Index Scan using idx_gemini_keys_pool" in plan
    assert "Seq Scan" not in plan and "Sort" not in plan
    assert KeyPool(runtime).acquire().api_key == plain
