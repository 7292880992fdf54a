"""Stats CSV: sums equal the database's, streamed through a server-side cursor, no key material;
export-stats to a file and to stdout, and one-line errors for bad input."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import secrets

import pytest
from click.testing import CliRunner
from sqlalchemy import bindparam, text

from db.session import Actor, session_scope
from lib.analytics.export import stats_csv, stats_file_name
from lib.analytics.stats import StatsFilter
from lib.cli import cli
from lib.keys.writes import add_key
from lib.runtime import build_runtime
from lib.streaming import stream_csv, stream_query
from tests.support.stats_rows import day, insert_key, insert_stat, insert_stats

COUNTS = ("request_count", "success_count", "failure_count", "rate_limit_count")


@pytest.fixture
def history(db):
    """8 keys in 3 groups (one archived, one deleted), 60 days with random gaps."""
    rng = random.Random(6)
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        keys = {}
        for i in range(8):
            keys[f"k{i}"] = insert_key(s, f"k{i}", group=("g1", "g2", None)[i % 3],
                                       archived=i == 4, deleted=i == 5)
        insert_stats(s, [(key_id, day(n), rng.randint(0, 500), rng.randint(0, 40),
                          rng.randint(0, 30), rng.choice([None, rng.uniform(50, 2000)]))
                         for key_id in keys.values() for n in range(60) if rng.random() < 0.7])
    return keys


def db_sums(db, f: StatsFilter, keys: dict) -> dict[str, int]:
    """The same sums, written independently of lib.stats."""
    where = ["s.date BETWEEN :start AND :end"]
    params = {"start": f.start, "end": f.end}
    if f.key_ids:
        where.append("s.key_id IN :ids")
        params["ids"] = tuple(f.key_ids)
    if f.group:
        where.append("k.group_label = :g")
        params["g"] = f.group
    if not f.include_archived:
        where.append("k.archived_at IS NULL AND k.deleted_at IS NULL")
    sql = (f"SELECT {', '.join(f'coalesce(sum(s.{c}), 0) AS {c}' for c in COUNTS)} "
           "FROM gemini_key_usage_stats s JOIN gemini_api_keys k ON k.id = s.key_id "
           f"WHERE {' AND '.join(where)}")
    stmt = text(sql)
    if f.key_ids:
        stmt = stmt.bindparams(bindparam("ids", expanding=True))
    with db.engine.connect() as c:
        return dict(c.execute(stmt, params).one()._mapping)


def csv_sums(chunks) -> tuple[dict[str, int], list[dict]]:
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    return {c: sum(int(r[c]) for r in rows) for c in COUNTS}, rows


def random_filter(seed: int, keys: dict) -> StatsFilter:
    rng = random.Random(seed)
    start = day(rng.randint(-5, 50))
    end = start + dt.timedelta(days=rng.randint(0, 30))
    picked = tuple(keys[k] for k in rng.sample(sorted(keys), rng.randint(1, 3))) \
        if rng.random() < 0.4 else ()
    return StatsFilter(start, end, key_ids=picked,
                       group=rng.choice([None, None, "g1", "g2"]),
                       include_archived=rng.random() < 0.6)


@pytest.mark.parametrize("seed", range(5))
def test_csv_sums_equal_database_sums(db, history, admin_actor, seed):
    f = random_filter(seed, history)
    expected = db_sums(db, f, history)
    with session_scope(admin_actor, engine=db.engine) as s:
        key_day, key_day_rows = csv_sums(stats_csv(s, f, "key-day", batch=7))
        per_day, day_rows = csv_sums(stats_csv(s, f, "day", batch=7))
    assert key_day == per_day == expected
    assert len(key_day_rows) == expected_rows(db, f)
    # per day: every day of the range, quiet or not
    assert [r["date"] for r in day_rows] == [
        (f.start + dt.timedelta(days=n)).isoformat() for n in range(f.days)]


def expected_rows(db, f: StatsFilter) -> int:
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        from lib.analytics.stats import stats_source

        source, params = stats_source(f)
        return s.scalar(text(f"SELECT count(*) {source}"), params)


def test_key_day_rows_carry_names_groups_and_the_stored_latency(db, admin_actor):
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        key = insert_key(s, "=HYPERLINK(evil)", group="g1")
        insert_stat(s, key, day(0), ok=3, fail=1, latency=123.25)
    with session_scope(admin_actor, engine=db.engine) as s:
        _, rows = csv_sums(stats_csv(s, StatsFilter(day(0), day(0))))
    assert rows == [{"date": "2026-03-02", "key_id": str(key),
                     "key_name": "'=HYPERLINK(evil)", "group_label": "g1",
                     "request_count": "4", "success_count": "3", "failure_count": "1",
                     "rate_limit_count": "0", "avg_response_time_ms": "123.25"}]


def test_csv_never_contains_key_material(db, admin_actor):
    plaintext = "AIza" + secrets.token_urlsafe(27)[:35]
    runtime = build_runtime()
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        key = add_key(s, runtime.master_key, name="real-shaped", api_key=plaintext)
        insert_stat(s, key.id, day(0), ok=5, latency=10.0)
        material = [key.encrypted_key, key.encryption_iv, key.encryption_tag, key.fingerprint]
    with session_scope(admin_actor, engine=db.engine) as s:
        text_out = "".join(stats_csv(s, StatsFilter(day(0), day(0))))
    assert "real-shaped" in text_out
    for secret in (plaintext, plaintext[4:], *material):
        assert secret not in text_out


def test_stream_query_reads_through_a_server_side_cursor_in_batches(db, history, admin_actor):
    with session_scope(admin_actor, engine=db.engine) as s:
        rows = stream_query(s, "SELECT date FROM gemini_key_usage_stats ORDER BY date", batch=5)
        first = next(rows)
        open_cursors = s.execute(text("SELECT count(*) FROM pg_cursors WHERE NOT is_holdable"
                                      " AND statement LIKE '%gemini_key_usage_stats%'")).scalar()
        rest = list(rows)
    assert open_cursors == 1
    assert first.date == day(0) and len(rest) + 1 > 100


def test_stream_csv_chunks_and_header():
    chunks = list(stream_csv(([i, f"n{i}"] for i in range(5)), ["a", "b"], rows_per_chunk=2))
    assert chunks[0].startswith("a,b\n") and len(chunks) == 3
    assert "".join(chunks).count("\n") == 6


def test_file_name_carries_the_range():
    f = StatsFilter(dt.date(2026, 1, 1), dt.date(2026, 1, 31))
    assert stats_file_name(f) == "gemini-usage_2026-01-01_2026-01-31.csv"
    assert stats_file_name(f, "day") == "gemini-usage_2026-01-01_2026-01-31_daily.csv"


# -- CLI --------------------------------------------------------------------------------------

def run_cli(*args: str):
    return CliRunner().invoke(cli, ["export-stats", *args], catch_exceptions=False)


def test_cli_writes_a_file_whose_sums_match(db, history, tmp_path):
    target = tmp_path / "usage.csv"
    result = run_cli("--from", day(0).isoformat(), "--to", day(59).isoformat(),
                     "--key", "k1", "--key", str(history["k2"]), "-o", str(target))
    assert result.exit_code == 0, result.output
    sums, rows = csv_sums([target.read_text()])
    f = StatsFilter(day(0), day(59), key_ids=(history["k1"], history["k2"]))
    assert sums == db_sums(db, f, history)
    assert {r["key_name"] for r in rows} == {"k1", "k2"}
    assert f"exported {len(rows)} rows" in result.stderr
    assert not list(tmp_path.glob("*.partial"))


def test_cli_names_the_file_after_the_range_in_a_directory(db, history, tmp_path):
    result = run_cli("--from", "2026-03-02", "--to", "2026-03-08", "--per", "day",
                     "--group", "g1", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    written = tmp_path / "gemini-usage_2026-03-02_2026-03-08_daily.csv"
    assert len(written.read_text().splitlines()) == 8


def test_cli_writes_to_stdout(db, history):
    result = run_cli("--from", "2026-03-02", "--to", "2026-03-04", "--per", "day", "-o", "-")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("date,request_count") and len(lines) == 4
    sums, _ = csv_sums([result.stdout])
    assert sums == db_sums(db, StatsFilter(day(0), day(2)), history)


@pytest.mark.parametrize("args, message", [
    (["--from", "2026-02-30", "--to", "2026-03-01"], "--from '2026-02-30' is not a date"),
    (["--from", "yesterday", "--to", "2026-03-01"], "--from 'yesterday' is not a date"),
    (["--from", "2026-03-01", "--to", "2026/03/05"], "--to '2026/03/05' is not a date"),
    (["--from", "2026-03-05", "--to", "2026-03-01"], "starts (2026-03-05) after it ends"),
    (["--from", "1990-01-01", "--to", "2026-03-01"], "at most"),
    (["--from", "2026-03-01", "--to", "2026-03-05", "--key", "nope"], "No key named"),
])
def test_cli_bad_input_is_one_error_line_and_exit_1(db, history, args, message, tmp_path):
    target = tmp_path / "out.csv"
    result = run_cli(*args, "-o", str(target))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not target.exists()
