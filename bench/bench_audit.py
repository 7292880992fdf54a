"""Audit page at 1,000,000 audit rows vs the same page at 1,000 rows, measured in one run.

`python -m bench.bench_audit [--quick]`. Creates two throw-away databases on the configured
server (DATABASE_URL's, else the embedded one), fills them with INSERT … SELECT
generate_series as the owner, renders pages/audit.py under AppTest as a signed-in admin,
and drops both databases at the end. Scenarios:

- first page: the default view (last 30 days, 50 per page), counts chart included;
- deep page: the row 90% of the way back in the history (2.7 years back at 1,000,000 rows),
  as an admin sees it after choosing the 30 days that end there and paging to it: the 50
  rows older than it (a keyset cursor in session_state), counts over those 30 days;
- key filter: the default view filtered to one key (one row in ten names it).

Both databases hold rows at the same density (1,000,000 over 3 years, i.e. the 1,000-row one
spans about a day), so every scenario shows a full page of 50 in both.

Rendering is dominated by Streamlit itself, so the same scenarios are also timed through the
query functions alone (fetch_page + action_counts) and reported as extra rows (aim: info).
An extra row times the page over the whole history, where the counts read every row.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text

from bench.common import bench_environment, row, scratch_database, signed_in_state, vacuum_analyze
from db.engine import REPO_ROOT, get_engine
from db.session import Actor, session_scope
from lib.audit.log import Action
from lib.audit.queries import AuditFilter, Cursor, action_counts, day_range, fetch_page

PAGE = str(REPO_ROOT / "pages" / "audit.py")
KEYS = 200
SPAN = dt.timedelta(days=3 * 365)  # for 1,000,000 rows; fewer rows span less
DENSITY_ROWS = 1_000_000
AIM = "≤ 1.5×"

SEED = """
INSERT INTO auth.users (id, email)
  SELECT ('00000000-0000-0000-0000-00000000000' || u)::uuid, 'admin' || u || '@example.com'
  FROM generate_series(1, 3) u;
INSERT INTO user_profiles (user_id, is_admin) SELECT id, true FROM auth.users;
INSERT INTO gemini_api_keys (id, name, encrypted_key, encryption_iv, encryption_tag,
                             group_label, deleted_at)
  SELECT ('10000000-0000-0000-0000-' || lpad(k::text, 12, '0'))::uuid, 'bench-key-' || k,
         'x', 'y', 'z', 'project-' || (k % 7), CASE WHEN k % 20 = 0 THEN now() END
  FROM generate_series(1, :keys) k;
INSERT INTO gemini_key_audit_log (key_id, action, user_id, created_at, details)
  SELECT CASE WHEN g % 4 = 0 THEN NULL
              WHEN g % 10 = 1 THEN '10000000-0000-0000-0000-000000000008'::uuid
              ELSE ('10000000-0000-0000-0000-' || lpad((g % :keys + 1)::text, 12, '0'))::uuid
         END,
         (:actions)[g % cardinality(:actions) + 1],
         CASE WHEN g % 5 = 0 THEN NULL
              ELSE ('00000000-0000-0000-0000-00000000000' || (g % 3 + 1))::uuid END,
         localtimestamp - (:span * (g::float8 / :rows)),
         jsonb_build_object('source', CASE WHEN g % 5 = 0 THEN 'pool' ELSE 'app' END,
                            'name', 'bench-key-' || (g % :keys + 1),
                            'before', jsonb_build_object('priority', g % 10),
                            'after', jsonb_build_object('priority', (g + 1) % 10))
  FROM generate_series(1, :rows) g;
"""


@contextmanager
def bench_database(base: str, rows: int) -> Iterator[str]:
    """A migrated database holding `rows` audit rows; dropped afterwards."""
    with scratch_database(f"gk_bench_audit_{rows}_{os.getpid()}", base) as url:
        engine = get_engine(url)
        with engine.begin() as connection:
            # Text search is not measured here; its GIN index would triple the load time.
            connection.execute(text("DROP INDEX IF EXISTS idx_audit_log_details_trgm"))
            span = SPAN * (rows / DENSITY_ROWS)
            connection.execute(text(SEED), {"keys": KEYS, "rows": rows, "span": span,
                                            "actions": [a.value for a in Action]})
        vacuum_analyze(engine)
        yield url


ADMIN = Actor.user(uuid.UUID("00000000-0000-0000-0000-000000000001"), "admin1@example.com")
KEY_ID = uuid.UUID("10000000-0000-0000-0000-000000000008")


@dataclass(frozen=True)
class Deep:
    """The deep scenario of one database: its 30-day window and the cursor inside it."""

    days: tuple[dt.date, dt.date]
    cursor: Cursor


def deep_position(url: str) -> Deep:
    """The row 90% of the way back in the history, and the 30 days that end on its day."""
    with get_engine(url).connect() as connection:
        created_at, row_id = connection.execute(text(
            "SELECT created_at, id FROM gemini_key_audit_log"
            " WHERE created_at <= (SELECT max(created_at) - (max(created_at) - min(created_at))"
            "                      * 0.9 FROM gemini_key_audit_log)"
            " ORDER BY created_at DESC, id DESC LIMIT 1")).one()
    last = created_at.date()
    return Deep((last - dt.timedelta(days=29), last), Cursor(created_at, row_id))


def page_scenarios(deep_at: Deep) -> dict[str, Callable]:
    """name -> function(AppTest) that sets the scenario up before the measured run."""
    today = dt.datetime.now(dt.UTC).date()
    default_days = (today - dt.timedelta(days=29), today)

    def first(at) -> None:
        pass

    def deep(at) -> None:
        # As if the admin had picked these dates and paged down to the cursor.
        at.session_state["audit_days"] = deep_at.days
        at.session_state["audit_shown_filter"] = (AuditFilter(*day_range(*deep_at.days)), 50)
        at.session_state["audit_nav"] = ("older", deep_at.cursor)

    def by_key(at) -> None:
        at.session_state["audit_days"] = default_days
        at.session_state["audit_key"] = KEY_ID

    def all_history(at) -> None:
        at.session_state["audit_days"] = (today - SPAN - dt.timedelta(days=2), today)

    return {"first page": first, "deep page": deep, "key filter": by_key,
            "first page, whole history (counts read every row)": all_history}


def query_scenarios(deep_at: Deep) -> dict[str, Callable]:
    today = dt.datetime.now(dt.UTC).date()
    last_30 = day_range(today - dt.timedelta(days=29), today)
    cases = {"first page": (AuditFilter(*last_30), None),
             "deep page": (AuditFilter(*day_range(*deep_at.days)), deep_at.cursor),
             "key filter": (AuditFilter(*last_30, key_ids=(KEY_ID,)), None)}

    def measure(flt: AuditFilter, older: Cursor | None) -> Callable:
        def run(url: str) -> None:
            with session_scope(ADMIN, engine=get_engine(url)) as session:
                page = fetch_page(session, flt, page_size=50, older_than=older)
                action_counts(session, flt)
            assert len(page.entries) == 50, len(page.entries)
        return run

    return {name: measure(*case) for name, case in cases.items()}


def render(url: str, setup: Callable) -> float:
    from streamlit.testing.v1 import AppTest

    os.environ["DATABASE_URL"] = url
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["gk_user"] = signed_in_state(url, ADMIN)
    setup(at)
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    if at.exception or not at.dataframe or len(at.dataframe[0].value) != 50:
        shown = [e.value for e in (*at.exception, *at.error, *at.info, *at.warning)]
        raise RuntimeError(f"the page did not render a full page: {shown} {url} {setup.__name__} "
                           f"{at.metric[0].value if at.metric else None}")
    return elapsed


def timed(measure: Callable[[], float | None]) -> float:
    started = time.perf_counter()
    result = measure()
    return result if isinstance(result, float) else time.perf_counter() - started


def paired_medians(repeats: int, big: Callable, small: Callable) -> tuple[float, float]:
    """Median times of both, measured alternately (the order flips each round) so that
    load from other processes falls on both sides alike."""
    times: dict[Callable, list[float]] = {big: [], small: []}
    for round_no in range(repeats):
        for measure in ((big, small) if round_no % 2 == 0 else (small, big)):
            times[measure].append(timed(measure))
    return statistics.median(times[big]), statistics.median(times[small])


def run(quick: bool = False) -> list[dict]:
    big_rows, small_rows = (100_000 if quick else 1_000_000), 1_000
    repeats = 3 if quick else 9
    rows: list[dict] = []
    with bench_environment() as server:
        os.environ["DATABASE_URL"] = server
        started = time.perf_counter()
        with bench_database(server, big_rows) as big, \
                bench_database(server, small_rows) as small:
            print(f"  loaded {big_rows:,} + {small_rows:,} audit rows in "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
            cursors = {big: deep_position(big), small: deep_position(small)}
            for label, (scenarios, measure) in {
                "page": (page_scenarios, lambda url, s: render(url, s)),
                "query": (query_scenarios, lambda url, s: s(url)),
            }.items():
                names = list(scenarios(cursors[big]))
                for name in names:
                    pair = [functools.partial(measure, url, scenarios(cursors[url])[name])
                            for url in (big, small)]
                    for warm_up in pair:  # runtime, caches, plans
                        warm_up()
                    big_s, small_s = paired_medians(repeats, *pair)
                    rows.append(row(
                        f"audit {label}: {name} @ {big_rows:,} rows", big_s,
                        f"same @ {small_rows:,} rows", small_s,
                        AIM if label == "page" and "whole" not in name else "info"))
    return rows


if __name__ == "__main__":
    from bench.__main__ import render as table

    print(table(run(quick="--quick" in sys.argv), markdown="--markdown" in sys.argv))
