"""Bad input to the CLI gets one clear line and exit status 1, never a traceback: invalid
UTF-8 and oversized files in import-keys, dates at the calendar's edges in the exports, NUL
characters in search options. And sign-out-everywhere."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.cli import cli
from lib.keys.importing import IMPORT_MAX_BYTES
from lib.runtime import build_runtime
from lib.users.sessions import live_session, start_session
from tests.support.databases import make_user
from tests.support.keys import audit_rows, dump_tables, fake_key


@pytest.fixture(autouse=True)
def master_key_recorded(db):
    build_runtime(apply_migrations=False)


def run_cli(*args: str, input: bytes | str | None = None):
    # catch_exceptions=False: a traceback would fail the test instead of hiding in .exception
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def one_clear_line(result, *words: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize("content", [
    b"main," + fake_key().encode() + b"\nsecond,AIza\xff\xfe-not-utf8\n",
    b"\xc3\x28" + fake_key().encode(),  # a broken two-byte sequence on line 1
    "latin-1 name é,".encode("latin-1") + fake_key().encode(),
], ids=["invalid bytes on line 2", "broken sequence on line 1", "latin-1"])
def test_import_keys_refuses_a_file_that_is_not_utf8(db, tmp_path, content):
    path = tmp_path / "keys.txt"
    path.write_bytes(content)
    before = dump_tables(db)
    line = one_clear_line(run_cli("import-keys", str(path)), "not UTF-8", "line ")
    assert "AIza" not in line  # the file's content is never echoed
    assert dump_tables(db) == before


def test_import_keys_refuses_a_file_that_is_too_big_before_reading_it_all(db, tmp_path):
    path = tmp_path / "huge.txt"
    path.write_bytes(b"#" * (IMPORT_MAX_BYTES + 1))
    one_clear_line(run_cli("import-keys", str(path)), "larger than")


def test_import_keys_still_reads_utf8_with_a_byte_order_mark(db, tmp_path):
    path = tmp_path / "keys.csv"
    path.write_bytes("\ufeffname,key\ncafé-main,".encode() + fake_key().encode() + b"\n")
    result = run_cli("import-keys", str(path))
    assert result.exit_code == 0, result.output
    assert "imported 1 key(s)" in result.output


@pytest.mark.parametrize("args", [
    ("--from", "0001-01-01", "--to", "0001-01-31"),
    ("--from", "9999-12-01", "--to", "9999-12-31"),
    ("--from", "9999-12-31", "--to", "9999-12-31", "--per", "day"),
])
def test_export_stats_at_the_calendars_edges_works(db, args):
    result = run_cli("export-stats", *args, "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("date,")


@pytest.mark.parametrize("value", ["10000-01-01", "0000-12-31", "2026-02-30", "2026-13-01"])
def test_export_stats_refuses_impossible_dates(db, value):
    one_clear_line(run_cli("export-stats", "--from", value, "--to", "2026-01-01", "-o", "-"),
                   "--from", "YYYY-MM-DD")


@pytest.mark.parametrize("args", [("--to", "9999-12-31"), ("--from", "0001-01-01"),
                                  ("--from", "0001-01-01", "--to", "9999-12-31")])
def test_export_audit_at_the_calendars_edges_works(db, admin_actor, args):
    # Before: --to 9999-12-31 crashed with OverflowError (the day after it does not exist).
    result = run_cli("export-audit", *args, "-o", "-")
    assert result.exit_code == 0, result.output
    assert "user_created" in result.output


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-05:00"])
def test_export_audit_refuses_moments_outside_the_calendar(db, value):
    one_clear_line(run_cli("export-audit", "--from", value, "-o", "-"), "outside the dates")


@pytest.mark.parametrize("command", [("list-keys", "--search"), ("export-audit", "-o", "-",
                                                                  "--search")])
def test_nul_in_a_search_gets_one_clear_line(db, command):
    # Before: psycopg2's ValueError ("A string literal cannot contain NUL") as a traceback.
    one_clear_line(run_cli(*command, "proj\x00ect"), "NUL")


def test_nul_in_an_email_is_refused(db):
    one_clear_line(run_cli("create-user", "--email", "ad\x00a@example.com", "--password-stdin",
                           input="a long enough passphrase\n"), "valid email")


def test_sign_out_everywhere_ends_every_session_and_is_audited(db, admin_actor):
    member = make_user(db, "member@example.com", admin=True)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        sids = [start_session(session, member.user_id, lifetime=dt.timedelta(hours=1))[0]
                for _ in range(2)]
    result = run_cli("sign-out-everywhere", "--email", "Member@Example.com",
                     "--actor", "admin@example.com")
    assert result.exit_code == 0, result.output
    assert "member@example.com is signed out everywhere (2 session(s) ended)" in result.output
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert [live_session(session, sid) for sid in sids] == [None, None]
    [row] = audit_rows(db, "signed_out_everywhere")
    assert row["user_id"] == admin_actor.user_id and row["details"]["sessions_ended"] == 2


def test_sign_out_everywhere_names_an_unknown_user(db):
    one_clear_line(run_cli("sign-out-everywhere", "--email", "ghost@example.com"),
                   "No user with the email ghost@example.com")
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM gemini_key_audit_log")) == 0
