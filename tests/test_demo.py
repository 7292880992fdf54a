"""seed-demo makes what it says: labelled, encrypted fake keys, consistent stats, audit history."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.analytics.alerts import overview_alerts
from lib.cli import cli
from lib.demo import seed_demo
from lib.key_format import GEMINI_KEY_PATTERN
from lib.keys.reads import resolve_key, reveal_key
from lib.runtime import build_runtime

NOW = dt.datetime(2026, 3, 8, 15, 0)  # a Sunday afternoon (UTC)


@pytest.fixture
def demo(db):
    runtime = build_runtime()
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        summary = seed_demo(s, runtime.master_key, keys=6, days=28, audit_rows=40, now=NOW,
                            seed=1)
    return summary, runtime


def scalar(db, sql: str, **params):
    with db.engine.connect() as c:
        return c.execute(text(sql), params).scalar()


def test_keys_are_labelled_encrypted_and_shaped_like_gemini_keys(db, demo):
    summary, runtime = demo
    assert summary.keys == 6
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        rows = s.execute(text("SELECT name, group_label FROM gemini_api_keys")).all()
        assert len(rows) == 6
        for name, group in rows:
            assert name.startswith(f"demo-{summary.batch}-")
            assert group.startswith("demo-project-")
            key = resolve_key(s, name)
            plaintext = reveal_key(runtime.master_key, key)
            assert GEMINI_KEY_PATTERN.fullmatch(plaintext)
            assert plaintext not in key.encrypted_key


def test_stats_cover_the_days_with_consistent_counts(db, demo):
    summary, _ = demo
    assert (summary.start, summary.end) == (dt.date(2026, 2, 9), dt.date(2026, 3, 8))
    # 5 keys with traffic (one is never used) × 28 days
    assert summary.stats_rows == 5 * 28
    assert scalar(db, "SELECT count(*) FROM gemini_key_usage_stats") == 140
    assert scalar(db, "SELECT count(*) FROM gemini_key_usage_stats WHERE request_count <> "
                      "success_count + failure_count + rate_limit_count") == 0
    assert scalar(db, "SELECT count(*) FROM gemini_api_keys k WHERE usage_count <> "
                      "(SELECT coalesce(sum(request_count), 0) FROM gemini_key_usage_stats "
                      "WHERE key_id = k.id)") == 0


def test_weekly_rhythm_and_the_special_keys(db, demo):
    summary, _ = demo
    weekday, weekend = (scalar(db, "SELECT avg(request_count)::float8 FROM "
                                   f"gemini_key_usage_stats WHERE extract(isodow FROM date) {op}")
                        for op in ("<= 5", "> 5"))
    assert weekday > 1.4 * weekend
    failing_today = scalar(db, """SELECT s.failure_count::float8 / s.request_count
        FROM gemini_key_usage_stats s JOIN gemini_api_keys k ON k.id = s.key_id
        WHERE k.name = :n AND s.date = :d""", n=summary.failing_key, d=summary.end)
    assert failing_today > 0.5
    limited = scalar(db, """SELECT sum(rate_limit_count)::float8 / sum(request_count)
        FROM gemini_key_usage_stats s JOIN gemini_api_keys k ON k.id = s.key_id
        WHERE k.name = :n""", n=summary.rate_limited_key)
    assert limited > 0.1
    assert scalar(db, "SELECT last_used FROM gemini_api_keys WHERE name = :n",
                  n=summary.idle_key) is None


def test_audit_history_is_marked_demo_and_spread_over_the_range(db, demo):
    summary, _ = demo
    assert summary.audit_rows == 40
    demo_rows = scalar(db, "SELECT count(*) FROM gemini_key_audit_log "
                           "WHERE details->>'demo' = 'true'")
    added = scalar(db, "SELECT count(*) FROM gemini_key_audit_log WHERE action = 'key_added'")
    assert (demo_rows, added) == (40, 6)
    oldest = scalar(db, "SELECT min(created_at) FROM gemini_key_audit_log "
                        "WHERE details->>'demo' = 'true'")
    assert oldest < NOW - dt.timedelta(days=14)


def test_the_demo_lights_up_the_overview_alerts(db, demo, admin_actor):
    summary, _ = demo
    with session_scope(admin_actor, engine=db.engine) as s:
        kinds = {a.kind: a for a in overview_alerts(s, now=NOW)}
    assert summary.failing_key in " ".join(kinds["key_auto_disabled"].items)
    assert summary.failing_key in " ".join(kinds["failure_spike"].items)
    assert summary.idle_key in kinds["never_used"].items


def test_cli_seed_demo_reports_what_it_made(db):
    result = CliRunner().invoke(cli, ["seed-demo", "--keys", "3", "--days", "5",
                                      "--audit-rows", "4"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "added 3 demo keys" in result.stdout and "15 daily stats rows" in result.stdout
    assert scalar(db, "SELECT count(*) FROM gemini_api_keys WHERE name LIKE 'demo-%'") == 3
    assert "AIza" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--keys", "0"], "--keys must be between 1 and"),
    (["--days", "0"], "--days must be between 1 and"),
    (["--audit-rows", "-1"], "--audit-rows must be between 0 and"),
])
def test_cli_seed_demo_refuses_bad_numbers(db, args, message):
    result = CliRunner().invoke(cli, ["seed-demo", *args], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1
    assert scalar(db, "SELECT count(*) FROM gemini_api_keys") == 0


def test_per_model_rows_with_tokens_sum_to_the_spec_rows(db, demo):
    summary, _ = demo
    assert summary.model_rows == scalar(db, "SELECT count(*) FROM gemini_key_model_usage_stats")
    assert scalar(db, "SELECT count(DISTINCT model) FROM gemini_key_model_usage_stats") == 3
    assert scalar(db, "SELECT string_agg(DISTINCT model, ',' ORDER BY model) "
                      "FROM gemini_key_model_usage_stats") == (
        "gemini-2.5-flash,gemini-2.5-flash-lite,gemini-2.5-pro")
    # every spec row is the sum of its models' rows (counts exact, latency weighted)
    assert scalar(db, """
SELECT count(*) FROM gemini_key_usage_stats s FULL JOIN (
  SELECT key_id, date, sum(request_count) r, sum(success_count) ok, sum(failure_count) f,
         sum(rate_limit_count) rl,
         sum(avg_response_time * request_count) / nullif(sum(request_count), 0) lat
  FROM gemini_key_model_usage_stats GROUP BY key_id, date) m
  ON m.key_id = s.key_id AND m.date = s.date
WHERE s.request_count > 0 AND (m.r IS DISTINCT FROM s.request_count
   OR m.ok IS DISTINCT FROM s.success_count OR m.f IS DISTINCT FROM s.failure_count
   OR m.rl IS DISTINCT FROM s.rate_limit_count
   OR abs(m.lat - s.avg_response_time) > 1e-6)""") == 0
    assert scalar(db, "SELECT count(*) FROM gemini_key_model_usage_stats WHERE request_count"
                      " <> success_count + failure_count + rate_limit_count OR total_tokens <>"
                      " prompt_tokens + output_tokens + thoughts_tokens") == 0
    assert scalar(db, "SELECT min(prompt_tokens) FILTER (WHERE success_count > 0) "
                      "FROM gemini_key_model_usage_stats") > 0
    # pro thinks more per answered call than flash; flash-lite not at all
    assert scalar(db, "SELECT sum(thoughts_tokens) FROM gemini_key_model_usage_stats "
                      "WHERE model = 'gemini-2.5-flash-lite'") == 0


def test_one_project_is_at_its_daily_limit_for_one_model(db, demo):
    summary, _ = demo
    project, model, rpd = summary.quota_at_limit
    assert (project, model) == ("demo-project-a", "gemini-2.5-pro") and rpd > 0
    with db.engine.connect() as c:
        limit = c.execute(text("SELECT rpm, tpm, rpd FROM gemini_quota_limits")).all()
        usage = c.execute(text("SELECT project, model, window_kind, window_start, requests "
                               "FROM gemini_quota_usage")).all()
        today_pro = c.scalar(text("""
SELECT sum(m.request_count) FROM gemini_key_model_usage_stats m
JOIN gemini_api_keys k ON k.id = m.key_id
WHERE k.group_label = 'demo-project-a' AND m.model = 'gemini-2.5-pro' AND m.date = :d"""),
                             {"d": NOW.date()})
    assert limit == [(None, None, rpd)]
    # Pacific midnight of 2026-03-08 (PST, the day DST begins) as naive UTC
    assert usage == [(project, model, "d", dt.datetime(2026, 3, 8, 8, 0), rpd)]
    assert rpd == today_pro


def test_the_pool_serves_that_model_from_other_projects_only(db):
    from lib.pool import KeyPool

    runtime = build_runtime()
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        seed_demo(s, runtime.master_key, keys=9, days=3, seed=2)
        s.execute(text("UPDATE gemini_api_keys SET priority = 1"))  # one tier: all rotate
    pool = KeyPool(runtime)
    try:
        groups = {"gemini-2.5-pro": set(), "gemini-2.5-flash": set()}
        for _ in range(12):
            for model, seen in groups.items():
                lease = pool.acquire(model)
                seen.add(lease.group_label)
                pool.record(lease, "success", 10.0)
    finally:
        pool.close()
    assert "demo-project-a" not in groups["gemini-2.5-pro"]
    assert "demo-project-a" in groups["gemini-2.5-flash"]
