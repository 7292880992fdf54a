"""Key pool: acquire() and record() against a bare SELECT 1 on the same connection pool.

All three go through the same path (pooled connection, autocommit, one message), measured in
interleaved rounds of the same run, at 10 and at 30,000 keys. The database is a scratch one
created for the run (local PostgreSQL at 127.0.0.1:5432 when it answers, else the embedded
server) and dropped afterwards. Aim: each ratio <= 2.
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
from lib.pool import ACQUIRE_SQL, KeyPool

AIM = "<= 2x"
ACQUIRE_PLAN_SQL = "EXPLAIN " + ACQUIRE_SQL.replace("$1", "ARRAY[]::uuid[]").replace("$2", "600")
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


def measure(pool: KeyPool, n: int, rounds: int) -> dict[str, float]:
    """Median per-call seconds of SELECT 1, acquire and record, over interleaved rounds."""
    for _ in range(50):  # warm up: connections opened, statements prepared
        pool.ping()
        pool.record(pool.acquire(), "success", 1.0)
    samples: dict[str, list[float]] = {"select1": [], "acquire": [], "record": []}
    for _ in range(rounds):
        samples["select1"].append(_per_call(pool.ping, n))
        leases: list = []
        samples["acquire"].append(_per_call(lambda out=leases: out.append(pool.acquire()), n))
        samples["record"].append(_per_call(
            lambda it=iter(leases): pool.record(next(it), "success", 42.0), n))
    return {k: statistics.median(v) for k, v in samples.items()}


def run(quick: bool = False) -> list[dict]:
    n, rounds = (200, 3) if quick else (2000, 5)
    rows: list[dict] = []
    with scratch_runtime() as runtime:
        seeded = 0
        for size in (10, 30_000):
            seed_keys(runtime, size - seeded, seed=size, start=seeded)
            seeded = size
            pool = KeyPool(runtime)
            started = time.perf_counter()
            result = measure(pool, n, rounds)
            print(f"  measured at {size} keys in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
            for op in ("acquire", "record"):
                rows.append(row(f"pool {op} ({size:,} keys)", result[op],
                                "SELECT 1, same pool", result["select1"], AIM))
    return rows


if __name__ == "__main__":
    from bench.__main__ import render as table

    print(table(run(quick="--quick" in sys.argv), markdown="--markdown" in sys.argv))
