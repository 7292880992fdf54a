"""Key pool: acquire(model) and record(usage) against honest anchors on the same connections.

The anchors are a bare single-row UPDATE (for acquire) and a bare upsert (for record), run
through exactly the pool's path (pooled connection, service_role prelude, synchronous_commit
off, one message); SELECT 1 stays for continuity. Interleaved rounds of one run, at 10 and
at 30,000 keys. Then throughput of acquire+record pairs at 1, 8 and 32 processes against the
bare UPDATE at the same process counts (the ceiling), and the share of leases that hand
out a key already in use with 8 workers x 20 ms calls, by the old order (LRU by acquire)
and the in-flight-aware one. The database is a scratch one, dropped afterwards.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from psycopg2.extras import execute_values

from bench.common import bench_environment, row, scratch_database
from db.session import Actor, session_scope
from lib.crypto.sealed import seal
from lib.key_format import ApiKeyText
from lib.pool import ACQUIRE_SQL, KeyPool, quota_sql

AIM = "<= 2x"
MODEL = "gemini-2.5-flash"
USAGE = {"promptTokenCount": 812, "candidatesTokenCount": 96, "thoughtsTokenCount": 40,
         "totalTokenCount": 948}
# The anchors and the old acquire order, run through the pool's own path (bench only).
_EXTRA = {
    "gk_bench_update": ("(uuid)", "UPDATE gemini_api_keys SET usage_count = usage_count + 1 "
                                  "WHERE id = $1"),
    "gk_bench_upsert": ("(uuid)", "INSERT INTO gemini_key_usage_stats AS s (key_id, date, "
                                  "request_count) VALUES ($1, current_date, 1) ON CONFLICT "
                                  "(key_id, date) DO UPDATE SET request_count = "
                                  "s.request_count + 1"),
    "gk_bench_acquire_lru": ("(float8)", f"""
UPDATE gemini_api_keys SET last_used = {quota_sql.NOW_SQL}, usage_count = usage_count + 1,
       in_flight = in_flight + 1, lease_expires_at = {quota_sql.NOW_SQL} + make_interval(secs => $1)
 WHERE id = (SELECT id FROM gemini_api_keys k WHERE {quota_sql._USABLE}
             ORDER BY priority DESC, GREATEST(last_used, cooldown_until) ASC NULLS FIRST
             LIMIT 1 FOR UPDATE SKIP LOCKED)
 RETURNING id, name, encrypted_key, encryption_iv, encryption_tag, master_key_version,
           priority, group_label"""),
}
for _name, (_types, _sql) in _EXTRA.items():
    quota_sql.STATEMENTS[_name] = _sql
    quota_sql.PARAM_TYPES[_name] = _types
    quota_sql.ARGS[_name] = "(%s)"
ACQUIRE_PLAN_SQL = "EXPLAIN " + ACQUIRE_SQL.replace("$1", "ARRAY[]::uuid[]").replace(
    "$2", "600")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def _fake_key(rng: random.Random) -> str:
    return "AIza" + "".join(rng.choice(_ALPHABET) for _ in range(35))


def seed_keys(runtime, count: int, *, seed: int = 7, start: int = 0) -> None:
    """Insert `count` encrypted fake keys in bulk, as the service role, then ANALYZE.

    Priorities 1-3; last_used spread over the past day; every 10th key cooling down and
    every 20th inactive, so the pool query has rows to skip, as in real life.
    """
    rng = random.Random(seed)
    master = runtime.master_key
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for i in range(start, start + count):
        key_id = uuid.uuid4()
        sealed = seal(master, key_id, ApiKeyText(_fake_key(rng)))
        rows.append((
            str(key_id), f"bench-{i:06d}", sealed.encrypted_key, sealed.encryption_iv,
            sealed.encryption_tag, sealed.master_key_version, sealed.fingerprint,
            sealed.masked_hint, 1 + i % 3, i % 20 != 0,
            now - timedelta(seconds=rng.uniform(0, 86400)) if i % 4 else None,
            now + timedelta(hours=1) if i % 10 == 0 else None,
        ))
    with session_scope(Actor.service("system"), engine=runtime.engine) as session:
        cursor = session.connection().connection.dbapi_connection.cursor()
        execute_values(cursor, """
            INSERT INTO gemini_api_keys (id, name, encrypted_key, encryption_iv, encryption_tag,
              master_key_version, fingerprint, masked_hint, priority, is_active, last_used,
              cooldown_until) VALUES %s""", rows, page_size=2000)
    with runtime.engine.begin() as connection:  # as the table owner: ANALYZE needs it
        connection.exec_driver_sql("ANALYZE gemini_api_keys")


@contextmanager
def scratch_runtime() -> Iterator[object]:
    """A migrated throwaway database and a Runtime on it; dropped afterwards."""
    from lib.runtime import build_runtime

    with bench_environment() as server, \
            scratch_database(f"gk_bench_pool_{os.getpid()}", server) as url:
        yield build_runtime(env={**os.environ, "DATABASE_URL": url})


def _per_call(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def measure(pool: KeyPool, n: int, rounds: int, anchor_key: str) -> dict[str, float]:
    """Median per-call seconds of SELECT 1, the bare UPDATE and upsert, acquire(model)
    and record(usage), over interleaved rounds."""
    for _ in range(50):  # warm up: connections opened, statements prepared
        pool.ping()
        pool._execute("gk_bench_update", (anchor_key,))
        pool._execute("gk_bench_upsert", (anchor_key,))
        pool.record(pool.acquire(MODEL), "success", 1.0, usage=USAGE)
    samples: dict[str, list[float]] = {k: [] for k in
                                       ("select1", "update", "upsert", "acquire", "record")}
    for _ in range(rounds):
        samples["select1"].append(_per_call(pool.ping, n))
        samples["update"].append(_per_call(
            lambda: pool._execute("gk_bench_update", (anchor_key,)), n))
        samples["upsert"].append(_per_call(
            lambda: pool._execute("gk_bench_upsert", (anchor_key,)), n))
        leases: list = []
        samples["acquire"].append(_per_call(
            lambda out=leases: out.append(pool.acquire(MODEL)), n))
        samples["record"].append(_per_call(
            lambda it=iter(leases): pool.record(next(it), "success", 42.0, usage=USAGE), n))
    return {k: statistics.median(v) for k, v in samples.items()}


def _throughput_worker(kind: str, seconds: float, anchor_key: str, barrier, results) -> None:
    pool = KeyPool()
    pool.ping()
    barrier.wait()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if kind == "pool":
            pool.record(pool.acquire(MODEL), "success", 1.0, usage=USAGE)
        else:
            pool._execute("gk_bench_update", (anchor_key,))
        done += 1
    results.put(done)


def throughput(kind: str, processes: int, seconds: float, anchor_key: str, url: str) -> float:
    """Operations per second summed over `processes` spawned processes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url  # the children's configuration
    try:
        workers = [context.Process(target=_throughput_worker,
                                   args=(kind, seconds, anchor_key, barrier, results))
                   for _ in range(processes)]
        for worker in workers:
            worker.start()
        total = sum(results.get(timeout=300) for _ in workers)
        for worker in workers:
            worker.join(timeout=60)
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
    return total / seconds


def in_use_share(pool: KeyPool, statement: str | None, workers: int = 8, calls: int = 40,
                 call_s: float = 0.02) -> float:
    """Share of leases handing out a key another worker is still using (threads)."""
    import threading

    busy: dict[str, int] = {}
    lock = threading.Lock()
    clashes = total = 0
    start = threading.Barrier(workers)

    def take():
        if statement is None:
            return pool.acquire()
        from lib.crypto.sealed import unseal
        from lib.pool.keypool import Lease, _AcquiredRow
        row = _AcquiredRow(*pool._execute(statement, (600.0,))[0])
        return Lease(row.id, row.name, unseal(pool._master, row), row.priority,
                     row.group_label)

    def worker() -> None:
        nonlocal clashes, total
        start.wait()
        for _ in range(calls):
            lease = take()
            key = str(lease.key_id)
            with lock:
                clashes += busy.get(key, 0) > 0
                total += 1
                busy[key] = busy.get(key, 0) + 1
            time.sleep(call_s)
            with lock:
                busy[key] -= 1
            pool.record(lease, "success", call_s * 1000)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clashes / total


def run(quick: bool = False) -> list[dict]:
    n, rounds, seconds = (200, 3, 2.0) if quick else (2000, 5, 5.0)
    rows: list[dict] = []
    with scratch_runtime() as runtime:
        url = runtime.engine.url.render_as_string(hide_password=False)
        seeded = 0
        for size in (10, 30_000):
            seed_keys(runtime, size - seeded, seed=size, start=seeded)
            seeded = size
            pool = KeyPool(runtime)
            with runtime.engine.connect() as connection:
                anchor = str(connection.exec_driver_sql(
                    "SELECT id FROM gemini_api_keys ORDER BY id LIMIT 1").scalar())
            started = time.perf_counter()
            result = measure(pool, n, rounds, anchor)
            print(f"  measured at {size} keys in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
            rows.append(row(f"pool acquire({MODEL}) ({size:,} keys)", result["acquire"],
                            "bare single-row UPDATE, same path", result["update"], AIM))
            rows.append(row(f"pool record(usage) ({size:,} keys)", result["record"],
                            "bare upsert, same path", result["upsert"], AIM))
            for op in ("acquire", "record"):
                rows.append(row(f"pool {op} ({size:,} keys)", result[op],
                                "SELECT 1, same pool", result["select1"], "info"))
            pool.close()
        for processes in (1, 8, 32):
            pairs = throughput("pool", processes, seconds, anchor, url)
            ceiling = throughput("update", processes, seconds, anchor, url)
            print(f"  {processes} processes: {pairs:.0f} pairs/s, bare UPDATE {ceiling:.0f}/s",
                  file=sys.stderr)
            rows.append(row(f"pool acquire+record pair, {processes} processes "
                            f"({pairs:,.0f} pairs/s)", 1 / pairs,
                            f"bare UPDATE, {processes} processes ({ceiling:,.0f}/s)",
                            1 / ceiling, "info"))
    with scratch_runtime() as runtime:
        seed_keys(runtime, 12, seed=1)
        with runtime.engine.begin() as connection:  # one tier, all usable
            connection.exec_driver_sql("UPDATE gemini_api_keys SET priority = 1, "
                                       "is_active = true, cooldown_until = NULL")
        pool = KeyPool(runtime)
        before = in_use_share(pool, "gk_bench_acquire_lru")
        after = in_use_share(pool, None)
        print(f"  leases handing out a key in use (8 workers x 20 ms, 12 keys): "
              f"LRU by acquire {before:.1%}, in-flight aware {after:.1%}", file=sys.stderr)
        pool.close()
    return rows


if __name__ == "__main__":
    from bench.__main__ import render as table

    print(table(run(quick="--quick" in sys.argv), markdown="--markdown" in sys.argv))
