"""set-quota, list-quotas, clear-quota as a shell user runs them: one-line errors, exit 1,
nothing stored on bad input, audited changes (with --actor)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.cli import cli
from lib.quotas.reads import quota_windows
from tests.support.keys import key_audit_rows
from tests.support.stats_rows import insert_key


@pytest.fixture
def group(db) -> str:
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        insert_key(session, "a-1", group="proj-a")
    return "proj-a"


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def limits(db) -> dict[tuple[str, str], tuple]:
    with db.engine.connect() as connection:
        return {(r.group_label, r.model): (r.rpm, r.tpm, r.rpd) for r in connection.execute(
            text("SELECT group_label, model, rpm, tpm, rpd FROM gemini_quota_limits"))}


def test_set_list_and_clear_a_quota(db, group):
    result = run_cli("set-quota", "--group", group, "--model", "gemini-2.5-flash",
                     "--rpm", "10", "--rpd", "250")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Quota of proj-a × gemini-2.5-flash set: rpm 10, tpm no limit, "
                             "rpd 250.\n")
    assert limits(db) == {("proj-a", "gemini-2.5-flash"): (10, None, 250)}

    with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
        session.execute(text(
            "INSERT INTO gemini_quota_usage (project, model, window_kind, window_start,"
            " requests, tokens) VALUES ('proj-a', 'gemini-2.5-flash', 'd', :day, 240, 12345)"),
            {"day": quota_windows().day_start})
    listed = run_cli("list-quotas")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t")[:5] == ["group", "model", "rpm", "tpm", "rpd"]
    assert lines[1].split("\t") == ["proj-a", "gemini-2.5-flash", "10", "no limit", "250",
                                    "0", "0", "240", "12,345"]
    assert "rpd resets" in lines[2]

    cleared = run_cli("clear-quota", "--group", group, "--model", "gemini-2.5-flash")
    assert cleared.exit_code == 0, cleared.output
    assert "Cleared the quota of proj-a × gemini-2.5-flash" in cleared.stdout
    assert limits(db) == {}
    assert "no quotas set" in run_cli("list-quotas").stdout
    assert [r["action"] for r in key_audit_rows(db)] == ["quota_set", "quota_cleared"]


def test_actor_is_recorded_in_the_audit_row(db, group, admin_actor):
    result = run_cli("set-quota", "--group", group, "--model", "gemini-2.5-pro", "--rpd", "0",
                     "--actor", admin_actor.email)
    assert result.exit_code == 0, result.output
    [row] = key_audit_rows(db)
    assert row["user_id"] == admin_actor.user_id


@pytest.mark.parametrize("args, message", [
    (["--group", "proj-a", "--model", "gemini-2.5-pro"], "Set at least one of rpm, tpm, rpd"),
    (["--group", "proj-a", "--model", "gemini-2.5-pro", "--rpm", "-3"], "cannot be negative"),
    (["--group", "proj-a", "--model", "gemini-2.5-pro", "--rpm", "ten"], "whole number"),
    (["--group", "proj-a", "--model", "gemini-2.5-pro", "--tpm", "99999999999999"],
     "too large"),
    (["--group", "proj-a", "--model", "Gemini Pro", "--rpm", "5"], "model id"),
    (["--group", "nobody", "--model", "gemini-2.5-pro", "--rpm", "5"],
     "No stored key has the group 'nobody'"),
    (["--group", " ", "--model", "gemini-2.5-pro", "--rpm", "5"], "Choose a group"),
])
def test_set_quota_refuses_bad_input_in_one_line(db, group, args, message):
    result = run_cli("set-quota", *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert limits(db) == {} and key_audit_rows(db) == []


def test_clear_quota_of_an_unset_limit_fails_clearly(db, group):
    result = run_cli("clear-quota", "--group", group, "--model", "gemini-2.5-pro")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "error: No quota is set for proj-a × gemini-2.5-pro.\n"


def test_set_quota_needs_group_and_model(db):
    result = run_cli("set-quota", "--model", "gemini-2.5-pro", "--rpm", "5")
    assert result.exit_code != 0 and "--group" in result.output
