"""Audit export: CSV and JSON lines equal the filtered query, streamed; export-audit CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.audit.export import COLUMNS, entry_chunks, write_export
from lib.audit.queries import AuditFilter, fetch_page, iter_entries
from lib.cli import cli
from tests.support.audit_rows import BASE_TIME, insert_key, seed


@pytest.fixture
def seeded(db, admin_actor):
    return seed(db, admin_actor, 60)


def paged_entries(db, actor, flt):
    """The filtered set as the page shows it, page after page."""
    entries = []
    with session_scope(actor, engine=db.engine) as session:
        page = fetch_page(session, flt, page_size=25)
        entries.extend(page.entries)
        while page.has_older:
            page = fetch_page(session, flt, page_size=25, older_than=page.oldest)
            entries.extend(page.entries)
    return entries


def export(db, actor, flt, fmt) -> str:
    out = io.BytesIO()
    with session_scope(actor, engine=db.engine) as session:
        count = write_export(session, flt, fmt, out)
    body = out.getvalue().decode("utf-8")
    assert count == len(paged_entries(db, actor, flt))
    return body


def filters(seeded):
    return [AuditFilter(), AuditFilter(actions=("key_renamed", "key_added")),
            AuditFilter(key_ids=(seeded.deleted_key_id,)),
            AuditFilter(since=BASE_TIME - dt.timedelta(minutes=9), search="note")]


def test_csv_export_equals_the_filtered_query(db, seeded, admin_actor):
    for flt in filters(seeded):
        expected = paged_entries(db, admin_actor, flt)
        rows = list(csv.DictReader(io.StringIO(export(db, admin_actor, flt, "csv"))))
        assert [r["id"] for r in rows] == [str(e.id) for e in expected], flt
        for row, entry in zip(rows, expected, strict=True):
            assert json.loads(row["details"]) == entry.details
            assert row["action"] == entry.action
            assert row["key_name"] == (entry.key_name or "")
            assert row["actor"] == entry.actor
            assert row["created_at"] == entry.created_at.isoformat() + "Z"
    assert list(rows[0]) == list(COLUMNS)


def test_jsonl_export_equals_the_filtered_query(db, seeded, admin_actor):
    for flt in filters(seeded):
        expected = paged_entries(db, admin_actor, flt)
        records = [json.loads(line)
                   for line in export(db, admin_actor, flt, "jsonl").splitlines()]
        assert [r["id"] for r in records] == [str(e.id) for e in expected], flt
        assert [r["details"] for r in records] == [e.details for e in expected]
        assert [r["key_deleted"] for r in records] == [e.key_deleted for e in expected]


def test_csv_cells_that_a_spreadsheet_would_run_are_defused(db, admin_actor):
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        key_id = insert_key(session, "=HYPERLINK(\"http://evil\")")
        session.execute(text("INSERT INTO gemini_key_audit_log (key_id, action, details) "
                             "VALUES (:k, 'key_added', '{}')"), {"k": key_id})
    body = export(db, admin_actor, AuditFilter(key_ids=(key_id,)), "csv")
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["key_name"] == "'=HYPERLINK(\"http://evil\")"


def test_export_reads_through_a_server_side_cursor(db, admin_actor):
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        session.execute(text("INSERT INTO gemini_key_audit_log (action, details) "
                             "SELECT 'key_checked', jsonb_build_object('n', g) "
                             "FROM generate_series(1, 2500) g"))
    with session_scope(admin_actor, engine=db.engine) as session:
        entries = iter_entries(session, AuditFilter(), batch_size=100)
        first = next(entries)
        open_cursors = session.scalar(text("SELECT count(*) FROM pg_cursors"))
        rest = sum(1 for _ in entries)
    assert open_cursors == 1
    assert first.action in {"key_checked", "user_created"} and rest == 2500


def test_a_non_admin_exports_nothing(db, seeded, member_actor):
    body = export(db, member_actor, AuditFilter(), "jsonl")
    assert body == ""
    with session_scope(member_actor, engine=db.engine) as session:
        assert "".join(entry_chunks(iter_entries(session, AuditFilter()), "csv")) == (
            ",".join(COLUMNS) + "\n")


# -- export-audit ------------------------------------------------------------------------------

def run_cli(*args: str):
    return CliRunner().invoke(cli, ["export-audit", *args], catch_exceptions=False)


def test_cli_writes_the_filtered_csv_to_a_file(db, seeded, admin_actor, tmp_path):
    target = tmp_path / "audit.csv"
    result = run_cli("--action", "key_renamed", "--key", "seed-key-1", "--actor",
                     "admin@example.com", "--from", "2026-03-01", "--to", "2026-03-01",
                     "-o", str(target))
    assert result.exit_code == 0, result.output
    flt = AuditFilter(since=dt.datetime(2026, 3, 1), until=dt.datetime(2026, 3, 2),
                      actions=("key_renamed",), key_ids=(seeded.key_ids[1],),
                      user_ids=(admin_actor.user_id,))
    expected = [str(e.id) for e in paged_entries(db, admin_actor, flt)]
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert expected and [r["id"] for r in rows] == expected
    assert f"exported {len(expected)} audit entries to {target}" in result.stderr
    assert list(tmp_path.iterdir()) == [target]


def test_cli_writes_json_lines_to_stdout(db, seeded, admin_actor):
    result = run_cli("--format", "jsonl", "--search", "100%_sure", "-o", "-")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    expected = paged_entries(db, admin_actor, AuditFilter(search="100%_sure"))
    assert [r["id"] for r in records] == [str(e.id) for e in expected] and expected
    assert result.stderr.strip() == f"exported {len(expected)} audit entries"


def test_cli_takes_iso_date_times_with_an_offset_as_utc(db, seeded, admin_actor):
    result = run_cli("--from", "2026-03-01T13:50:00+02:00", "--to", "2026-03-01T12:00:00Z",
                     "--format", "jsonl", "-o", "-")
    assert result.exit_code == 0, result.stderr
    times = {json.loads(line)["created_at"] for line in result.stdout.splitlines()}
    assert times and min(times) == "2026-03-01T11:50:00Z" and max(times) < "2026-03-01T12:00"


@pytest.mark.parametrize("args, message", [
    (["--key", "no-such-key"], "error: No key named 'no-such-key'."),
    (["--actor", "nobody@example.com"], "error: No user with the email"),
    (["--from", "yesterday"], "error: 'yesterday' is not a date"),
    (["--to", "2026-13-01"], "error: '2026-13-01' is not a date"),
    (["--from", "2026-03-02", "--to", "2026-03-01"], "error: The start of the date range"),
    (["--search", "x" * 201], "error: Search text is limited"),
])
def test_cli_refuses_bad_filters_in_one_line(db, seeded, tmp_path, args, message):
    target = tmp_path / "audit.csv"
    result = run_cli(*args, "-o", str(target))
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["--format", "xml", "-o", "-"], []])
def test_cli_usage_errors(db, args):
    result = run_cli(*args)
    assert result.exit_code == 2
