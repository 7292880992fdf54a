"""Key pool: acquire() and record() against a bare SELECT 1 on the same connection pool.

All three go through the same path (pooled connection, autocommit, one message), measured in
interleaved rounds of the same run, at 10 and at 30,000 keys. The database is a scratch one
created for the run (local PostgreSQL at 127.0.0.1:5432 when it answers, else the embedded
server) and dropped afterwards. Aim: each ratio <= 2.
"""

from __future__ import annotations

import base64
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from psycopg2.extras import execute_values
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from db.session import Actor, session_scope
from lib.crypto import encrypt_api_key, fingerprint, masked_hint
from lib.pool import ACQUIRE_SQL, KeyPool

AIM = "<= 2x"
ACQUIRE_PLAN_SQL = "EXPLAIN " + ACQUIRE_SQL
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
        key_id, api_key = uuid.uuid4(), _fake_key(rng)
        sealed = encrypt_api_key(master, key_id=key_id, plaintext=api_key)
        rows.append((
            str(key_id), f"bench-{i:06d}", sealed.encrypted_key, sealed.encryption_iv,
            sealed.encryption_tag, sealed.master_key_version, fingerprint(master, api_key),
            masked_hint(api_key), 1 + i % 3, i % 20 != 0,
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
    from db.engine import REPO_ROOT, dispose_engines, start_embedded_postgres
    from lib.runtime import build_runtime
    from tests.conftest import LOCAL_URL, local_server_answers

    base = LOCAL_URL if local_server_answers() else start_embedded_postgres(
        REPO_ROOT / ".data" / "test-pg")
    name = f"gk_bench_pool_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    env = {"DATABASE_URL": url, "GEMINI_KEYS_MASTER_KEY": base64.b64encode(os.urandom(32))
           .decode(), "GEMINI_KEYS_DATA_DIR": f"/tmp/{name}"}  # noqa: S108 - a scratch dir
    try:
        yield build_runtime(env=env)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
            print(f"measured at {size} keys in {time.perf_counter() - started:.1f} s")
            for op in ("acquire", "record"):
                rows.append({
                    "name": f"pool {op} ({size:,} keys)", "measured_s": result[op],
                    "baseline_name": "SELECT 1, same pool", "baseline_s": result["select1"],
                    "ratio": result[op] / result["select1"], "aim": AIM,
                })
    return rows


if __name__ == "__main__":
    for row in run(quick=bool(os.environ.get("QUICK"))):
        print(f"{row['name']:<28} {row['measured_s'] * 1e6:8.1f} us  "
              f"{row['baseline_name']} {row['baseline_s'] * 1e6:8.1f} us  "
              f"ratio {row['ratio']:.2f}")
