"""Keys page at 5,000 keys vs the same page at 10 keys, measured in the same run.

`python -m bench.bench_keys_page [--quick]`. Creates throw-away databases on the configured
server (DATABASE_URL's, else the embedded one), seeds pre-encrypted fake keys with one
executemany (lib.demo.bulk_demo_keys), renders pages/keys.py under AppTest as a signed-in
admin and checks the table is there with every row. Extra rows (aim: info): the list query
alone, and a search that narrows 5,000 keys to a few. Databases are dropped at the end.
"""

from __future__ import annotations

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

PAGE = str(REPO_ROOT / "pages" / "keys.py")
AIM = "≤ 3×, < 2 s"
ADMIN = Actor.user(uuid.UUID("00000000-0000-0000-0000-0000000000b4"), "bench-keys@example.com")


@contextmanager
def keys_database(base: str, count: int) -> Iterator[str]:
    """A migrated database with `count` encrypted keys and one admin; dropped afterwards."""
    from lib.demo import bulk_demo_keys
    from lib.runtime import build_runtime

    with scratch_database(f"gk_bench_keys_{count}_{os.getpid()}", base) as url:
        engine = get_engine(url)
        os.environ["DATABASE_URL"] = url
        runtime = build_runtime(apply_migrations=False)
        seed_admin(engine, ADMIN)
        with session_scope(Actor.service("system", ADMIN.user_id), engine=engine) as session:
            bulk_demo_keys(session, runtime.master_key, count)
            session.execute(text("UPDATE gemini_api_keys SET created_by = :id"),
                            {"id": ADMIN.user_id})
        vacuum_analyze(engine)
        yield url


def render(url: str, expected_rows: int, search: str = "") -> float:
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["gk_user"] = signed_in_state(url, ADMIN)
    at.session_state["keys_search"] = search
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    tables = [d for d in at.dataframe if "select" in d.value.columns]
    if at.exception or not tables or len(tables[0].value) != expected_rows:
        shown = [e.value for e in (*at.exception, *at.error, *at.info)]
        raise RuntimeError(f"the keys page did not render {expected_rows} rows: {shown}")
    return elapsed


def query(url: str) -> float:
    from lib.keys.reads import list_keys

    started = time.perf_counter()
    with session_scope(ADMIN, engine=get_engine(url)) as session:
        list_keys(session)
    return time.perf_counter() - started


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    measure()  # warm-up: runtime, caches, plans
    return statistics.median(measure() for _ in range(repeats))


def run(quick: bool = False) -> list[dict]:
    repeats = 3 if quick else 7
    big_count = 5000
    results: list[dict] = []
    with bench_environment() as server, keys_database(server, 10) as small:
        small_page = median_of(repeats, lambda: render(small, 10))
        small_query = median_of(repeats, lambda: query(small))
        started = time.perf_counter()
        with keys_database(server, big_count) as big:
            print(f"  seeded {big_count:,} keys in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
            page = median_of(repeats, lambda: render(big, big_count))
            results.append(row(f"keys page @ {big_count:,} keys", page,
                               "same page @ 10 keys", small_page, AIM))
            # demo names end in a 5-digit counter: "0000" matches keys 1-9 only.
            searched = median_of(repeats, lambda: render(big, 9, search="-0000"))
            results.append(row(f"keys page, search → 9 of {big_count:,} keys", searched,
                               "same page @ 10 keys", small_page, "info"))
            q = median_of(repeats, lambda: query(big))
            results.append(row(f"list_keys query alone @ {big_count:,} keys", q,
                               "same query @ 10 keys", small_query, "info"))
    return results


if __name__ == "__main__":
    from bench.__main__ import render as table

    print(table(run(quick="--quick" in sys.argv), markdown="--markdown" in sys.argv))
