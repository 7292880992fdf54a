"""export-stats --per key-model-day: model and token columns, sums equal the database's
(per model too), streamed through a server-side cursor; --model for every --per."""

from __future__ import annotations

import csv
import io
import random

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.analytics.export import (
    KEY_MODEL_DAY_HEADER,
    stats_csv,
    stats_export_rows,
    stats_file_name,
)
from lib.analytics.stats import StatsFilter
from lib.cli import cli
from tests.support.stats_rows import day, insert_key, insert_usage

COLUMNS = ("request_count", "success_count", "failure_count", "rate_limit_count",
           "prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens", "total_tokens")
MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "")


@pytest.fixture
def usage(db):
    rng = random.Random(3)
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        keys = [insert_key(s, f"k{i}", group=("g1", "g2")[i % 2]) for i in range(4)]
        for key_id in keys:
            for n in range(40):
                if rng.random() < 0.8:
                    insert_usage(s, key_id, day(n), {
                        m: (rng.randint(0, 90), rng.randint(0, 9), rng.randint(0, 5),
                            rng.uniform(50, 900), rng.randint(0, 9000), rng.randint(0, 900),
                            rng.randint(0, 90), rng.randint(0, 50))
                        for m in MODELS if rng.random() < 0.7})
    return keys


def db_sums(db, start, end, model=None) -> dict[str, int]:
    with db.engine.connect() as c:
        row = c.execute(text(
            f"SELECT {', '.join(f'coalesce(sum({c}), 0)' for c in COLUMNS)} "
            "FROM gemini_key_model_usage_stats WHERE date BETWEEN :s AND :e "
            "AND (CAST(:m AS text) IS NULL OR model = :m)"),
            {"s": start, "e": end, "m": model}).one()
    return dict(zip(COLUMNS, (int(v) for v in row), strict=True))


def csv_rows(text_out: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text_out)))


def test_key_model_day_rows_sum_to_the_database(db, usage, admin_actor):
    f = StatsFilter(day(0), day(29))
    with session_scope(admin_actor, engine=db.app_engine) as s:
        out = "".join(stats_csv(s, f, "key-model-day", batch=7))
    rows = csv_rows(out)
    assert tuple(rows[0]) == KEY_MODEL_DAY_HEADER
    assert {r["model"] for r in rows} == set(MODELS)
    assert {c: sum(int(r[c]) for r in rows) for c in COLUMNS} == db_sums(db, day(0), day(29))
    for model in MODELS:  # per model too
        mine = [r for r in rows if r["model"] == model]
        assert sum(int(r["total_tokens"]) for r in mine) == db_sums(
            db, day(0), day(29), model)["total_tokens"]
    assert all(r["date"] <= day(29).isoformat() for r in rows)
    # each key-day's model rows add up to the key-day row of the spec export
    with session_scope(admin_actor, engine=db.app_engine) as s:
        spec = csv_rows("".join(stats_csv(s, f, "key-day")))
    by_key_day = {}
    for r in rows:
        k = (r["date"], r["key_id"])
        by_key_day[k] = by_key_day.get(k, 0) + int(r["request_count"])
    assert by_key_day == {(r["date"], r["key_id"]): int(r["request_count"]) for r in spec
                          if int(r["request_count"])}  # a day without a model has no rows


def test_model_filter_for_every_per(db, usage, admin_actor):
    f = StatsFilter(day(0), day(39), model="gemini-2.5-pro")
    want = db_sums(db, day(0), day(39), "gemini-2.5-pro")
    with session_scope(admin_actor, engine=db.app_engine) as s:
        for per in ("key-model-day", "key-day", "day"):
            rows = csv_rows("".join(stats_csv(s, f, per)))
            assert sum(int(r["request_count"]) for r in rows) == want["request_count"], per
    assert stats_file_name(f, "key-model-day").endswith("_models.csv")


def test_key_model_day_streams_through_a_server_side_cursor(db, usage, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as s:
        rows = stats_export_rows(s, StatsFilter(day(0), day(39)), "key-model-day", batch=5)
        first = next(rows)
        open_cursors = s.execute(text(
            "SELECT count(*) FROM pg_cursors WHERE NOT is_holdable"
            " AND statement LIKE '%gemini_key_model_usage_stats%'")).scalar()
        rest = list(rows)
    assert open_cursors == 1
    assert len(first) == len(KEY_MODEL_DAY_HEADER) and len(rest) > 100


def test_cli_key_model_day_file_sums_match(db, usage, tmp_path):
    target = tmp_path / "models.csv"
    result = CliRunner().invoke(cli, [
        "export-stats", "--from", day(0).isoformat(), "--to", day(39).isoformat(),
        "--per", "key-model-day", "--group", "g1", "-o", str(target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = csv_rows(target.read_text())
    with db.engine.connect() as c:
        want = c.execute(text(
            "SELECT sum(m.prompt_tokens), sum(m.output_tokens) FROM gemini_key_model_usage_stats m"
            " JOIN gemini_api_keys k ON k.id = m.key_id WHERE k.group_label = 'g1'")).one()
    assert (sum(int(r["prompt_tokens"]) for r in rows),
            sum(int(r["output_tokens"]) for r in rows)) == tuple(want)
    assert {r["group_label"] for r in rows} == {"g1"}
    assert f"exported {len(rows)} rows (key-model-day" in result.stderr
    result = CliRunner().invoke(cli, [
        "export-stats", "--from", day(0).isoformat(), "--to", day(39).isoformat(),
        "--per", "key-model-day", "--model", "gemini-2.5-flash", "-o", "-"],
        catch_exceptions=False)
    assert {r["model"] for r in csv_rows(result.stdout)} == {"gemini-2.5-flash"}
