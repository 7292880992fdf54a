"""The key commands as a shell user runs them: stdin for keys, one-line errors, masked output."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lib.cli import cli
from lib.runtime import build_runtime
from tests.support.databases import REPO_ROOT
from tests.support.keys import dump_tables, dump_text, fake_key, key_audit_rows


@pytest.fixture(autouse=True)
def master_key_recorded(db):
    """The first start records the master key's check value; do it before any snapshot."""
    build_runtime(apply_migrations=False)


def run_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def add(name: str, key: str | None = None, *extra: str):
    key = key or fake_key()
    result = run_cli("add-key", "--name", name, *extra, input=key + "\n")
    assert result.exit_code == 0, result.output
    return key


def test_add_key_reads_stdin_and_prints_only_the_masked_key(db):
    secret = fake_key()
    result = run_cli("add-key", "--name", "main", "--priority", "7", "--group", "proj",
                     input=f"  {secret}  \n")
    assert result.exit_code == 0, result.output
    assert f"added key main (AIza…{secret[-4:]}" in result.output
    assert secret not in result.output and secret not in dump_text(db)
    [audit] = key_audit_rows(db)
    assert audit["user_id"] is None and audit["details"]["source"] == "cli"


def test_actor_option_records_the_admin_in_the_audit_row(db, admin_actor):
    add("main", None, "--actor", "ADMIN@example.com")
    assert run_cli("set-priority", "main", "5", "--actor", "admin@example.com").exit_code == 0
    assert [a["user_id"] for a in key_audit_rows(db)] == [admin_actor.user_id] * 2


def test_actor_must_be_an_admin(db, member_actor):
    before = dump_tables(db)
    result = run_cli("add-key", "--name", "x", "--actor", "member@example.com",
                     input=fake_key() + "\n")
    assert result.exit_code == 1 and "not an admin" in result.output
    assert dump_tables(db) == before


def test_list_keys_in_every_format_is_masked(db):
    secrets_ = [add("alpha"), add("=beta", None, "--priority", "9", "--group", "proj")]
    table = run_cli("list-keys")
    data = json.loads(run_cli("list-keys", "--format", "json").output)
    rows = list(csv.DictReader(io.StringIO(run_cli("list-keys", "--format", "csv").output)))
    assert [r["name"] for r in data] == ["=beta", "alpha"]
    assert data[0]["masked_hint"] == f"AIza…{secrets_[1][-4:]}" and data[0]["priority"] == 9
    assert [r["name"] for r in rows] == ["'=beta", "alpha"]  # no spreadsheet formulas
    assert "alpha" in table.output and "masked_hint" in table.output
    for secret in secrets_:
        for output in (table.output, json.dumps(data), str(rows)):
            assert secret not in output


def test_list_keys_hides_archived_unless_all(db):
    add("kept")
    add("old")
    assert run_cli("archive", "old").exit_code == 0
    assert "old" not in run_cli("list-keys").output
    assert "old" in run_cli("list-keys", "--all").output


def test_the_mutating_commands_change_and_audit(db):
    add("main")
    steps = [
        (("set-active", "main", "false", "--reason", "rotating"), "is inactive"),
        (("set-active", "MAIN", "true"), "is active"),
        (("set-priority", "main", "42"), "priority 42"),
        (("rename", "main", "primary"), "now named primary"),
        (("set-group", "primary", "proj-a"), "group proj-a"),
        (("set-group", "primary"), "group (none)"),
        (("archive", "primary"), "archived"),
        (("unarchive", "primary"), "no longer archived"),
        (("delete-key", "primary", "--yes"), "deleted"),
    ]
    for args, expected in steps:
        result = run_cli(*args)
        assert result.exit_code == 0 and expected in result.output, (args, result.output)
    assert [a["action"] for a in key_audit_rows(db)] == [
        "key_added", "key_deactivated", "key_activated", "key_priority_changed", "key_renamed",
        "key_group_changed", "key_group_changed", "key_archived", "key_unarchived",
        "key_deleted"]
    assert "no keys" in run_cli("list-keys", "--all").output


def test_import_keys_adds_nothing_while_a_line_is_refused_unless_skip(db, tmp_path):
    good, other = fake_key(), fake_key()
    path = tmp_path / "keys.csv"
    path.write_text(f"name,key\none,{good}\ntwo,AIzaBAD\n{other}\n")
    before = dump_tables(db)
    refused = run_cli("import-keys", str(path))
    assert refused.exit_code == 1 and "line 3" in refused.output
    assert dump_tables(db) == before
    result = run_cli("import-keys", str(path), "--skip-refused", "--group", "proj")
    assert result.exit_code == 0, result.output
    assert "skipped line 3" in result.output and "imported 2 key(s)" in result.output
    for output in (refused.output, result.output, dump_text(db)):
        assert good not in output and other not in output


def test_import_keys_reads_stdin(db):
    result = run_cli("import-keys", "-", input=f"a,{fake_key()}\nb,{fake_key()}\n")
    assert result.exit_code == 0 and "imported 2 key(s)" in result.output


CLI_BAD_INPUTS = [
    ("empty key", ["add-key", "--name", "x"], ""),
    ("short key", ["add-key", "--name", "x"], "AIza123"),
    ("wrong prefix", ["add-key", "--name", "x"], "BIza" + "a" * 35),
    ("bad char in key", ["add-key", "--name", "x"], "AIza" + "a" * 34 + "$"),
    ("long key", ["add-key", "--name", "x"], "AIza" + "a" * 40),
    ("empty name", ["add-key", "--name", ""], "KEY"),
    ("long name", ["add-key", "--name", "n" * 101], "KEY"),
    ("control char name", ["add-key", "--name", "a\x1bb"], "KEY"),
    ("key as name", ["add-key", "--name", "KEY"], "KEY"),
    ("duplicate name", ["add-key", "--name", "EXISTING"], "KEY"),
    ("duplicate key", ["add-key", "--name", "fresh"], "STORED"),
    ("priority zero", ["add-key", "--name", "x", "--priority", "0"], "KEY"),
    ("priority too high", ["add-key", "--name", "x", "--priority", "1001"], "KEY"),
    ("priority not integer", ["add-key", "--name", "x", "--priority", "1.5"], "KEY"),
    ("priority word", ["add-key", "--name", "x", "--priority", "high"], "KEY"),
    ("long group", ["add-key", "--name", "x", "--group", "g" * 101], "KEY"),
    ("unknown actor", ["add-key", "--name", "x", "--actor", "ghost@example.com"], "KEY"),
    ("set-active not bool", ["set-active", "existing", "maybe"], None),
    ("set-active unknown", ["set-active", "ghost", "true"], None),
    ("set-priority out of range", ["set-priority", "existing", "5000"], None),
    ("set-priority not integer", ["set-priority", "existing", "ten"], None),
    ("rename to taken", ["rename", "other", "existing"], None),
    ("rename to empty", ["rename", "existing", " "], None),
    ("archive unknown", ["archive", "ghost"], None),
    ("delete without yes", ["delete-key", "existing"], None),
    ("key as name argument", ["set-priority", "STORED", "5"], None),
    ("import empty file", ["import-keys", "-"], "\n\n"),
    ("import bad line", ["import-keys", "-"], "a,KEY\nb,nope\n"),
]


# Validation happens before the database; one server is enough.
@pytest.mark.one_server
@pytest.mark.parametrize(("case", "args", "stdin"), CLI_BAD_INPUTS,
                         ids=[c[0] for c in CLI_BAD_INPUTS])
def test_bad_input_prints_one_error_line_and_changes_nothing(db, case, args, stdin):
    stored = add("existing")
    add("other")
    args = [stored if a == "STORED" else a for a in args]
    args = [fake_key() if a == "KEY" else a for a in args]
    if stdin is not None:
        stdin = stdin.replace("STORED", stored).replace("KEY", fake_key()) + "\n"
    before = dump_tables(db)
    result = run_cli(*args, input=stdin)
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].startswith("error:"), result.output
    assert "Traceback" not in result.output
    assert stored not in result.output
    for arg in args + [stdin or ""]:
        for word in arg.replace(",", "\n").split():
            if word.startswith("AIza") and len(word) == 39:
                assert word not in result.output
    assert dump_tables(db) == before


@pytest.mark.one_server
def test_key_commands_as_a_subprocess_never_take_the_key_from_argv(db):
    secret = fake_key()
    env = os.environ.copy()
    result = subprocess.run([sys.executable, "-m", "lib.cli", "add-key", "--name", "sub"],
                            input=secret + "\n", cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    listed = subprocess.run([sys.executable, "-m", "lib.cli", "list-keys", "--format", "json"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout)[0]["name"] == "sub"
    assert secret not in listed.stdout + listed.stderr
