"""The access-token commands as a shell user runs them: the token printed once to stdout,
listings that never show it, revocation by name or id, one-line errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lib.cli import cli
from lib.runtime import build_runtime
from tests.support.keys import audit_rows, every_table_as_text


@pytest.fixture(autouse=True)
def master_key_recorded(db):
    build_runtime(apply_migrations=False)


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_create_prints_the_token_once_to_stdout_and_list_never_shows_it(db):
    created = run_cli("create-access-token", "--name", "reports", "--models",
                      "gemini-2.0-flash,gemini-2.5-pro", "--expires-days", "30")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("gkat_") and "\n" not in token
    assert "shown only this once" in created.stderr and token not in created.stderr
    listed = run_cli("list-access-tokens")
    assert listed.exit_code == 0
    assert "reports" in listed.stdout and token[:12] in listed.stdout
    assert token not in listed.stdout and "gemini-2.0-flash,gemini-2.5-pro" in listed.stdout
    assert token not in every_table_as_text(db)


def test_revoke_by_name_then_by_id_and_errors_in_one_line(db):
    run_cli("create-access-token", "--name", "a")
    revoked = run_cli("revoke-access-token", "a")
    assert revoked.exit_code == 0 and "revoked access token 'a'" in revoked.stdout
    again = run_cli("revoke-access-token", "a")
    assert again.exit_code == 1 and again.stderr.count("\n") == 1
    assert "No live token" in again.stderr
    [row] = audit_rows(db, "access_token_revoked")
    assert row["details"]["name"] == "a"
    assert "revoked" in run_cli("list-access-tokens").stdout


@pytest.mark.parametrize("args", [
    ("--name", ""), ("--name", "x", "--models", "not a model"),
    ("--name", "x", "--expires-days", "0"),
])
def test_bad_options_fail_without_storing(db, args):
    result = run_cli("create-access-token", *args)
    assert result.exit_code != 0 and "gkat_" not in result.stdout
    assert audit_rows(db, "access_token_created") == []
