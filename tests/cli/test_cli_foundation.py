"""init-db, status and create-user as a shell user runs them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.migrate import head_revision
from lib.cli import cli
from tests.support.databases import REPO_ROOT

GOOD_PASSWORD = "correct horse battery staple"


def run_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def table_counts(db) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {t: connection.scalar(text(f"SELECT count(*) FROM {t}"))
                for t in ("auth.users", "user_profiles")}


def test_every_command_has_help():
    for name, command in cli.commands.items():
        result = run_cli(name, "--help")
        assert result.exit_code == 0, name
        first_line = " ".join(command.help.split("\n")[0].split())
        assert first_line and first_line in " ".join(result.output.split()), name


@pytest.mark.one_server
def test_init_db_twice_changes_nothing_the_second_time(db):
    result = subprocess.run([sys.executable, "-m", "lib.cli", "init-db"], cwd=REPO_ROOT,
                            env=os.environ.copy(), capture_output=True, text=True, check=True)
    assert "already at revision" in result.stdout
    assert "Traceback" not in result.stderr


def test_create_admin_reads_password_from_stdin(db):
    result = run_cli("create-user", "--email", "Ada@Example.com", "--admin", "--password-stdin",
                     input=GOOD_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "created admin ada@example.com" in result.output
    assert GOOD_PASSWORD not in result.output
    with db.engine.connect() as connection:
        row = connection.execute(text(
            "SELECT u.encrypted_password, p.is_admin FROM auth.users u "
            "JOIN user_profiles p ON p.user_id = u.id WHERE u.email = 'ada@example.com'")).one()
    assert row.is_admin is True
    assert row.encrypted_password.startswith("$2") and GOOD_PASSWORD not in row.encrypted_password


@pytest.mark.parametrize(("args", "password", "message"), [
    (["--email", "not-an-email"], GOOD_PASSWORD, "valid email"),
    (["--email", ""], GOOD_PASSWORD, "valid email"),
    (["--email", "a b@example.com"], GOOD_PASSWORD, "valid email"),
    (["--email", "x@example.com"], "", "empty"),
    (["--email", "x@example.com"], "short", "at least 12"),
    (["--email", "x@example.com"], "aaaaaaaaaaaaaaaa", "too easy"),
    (["--email", "x@example.com"], "password1234", "too easy"),
])
def test_create_user_bad_input_is_one_line_and_stores_nothing(db, args, password, message):
    before = table_counts(db)
    result = CliRunner().invoke(cli, ["create-user", *args, "--password-stdin"],
                                input=password + "\n")
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and (not password or password not in result.output)
    assert table_counts(db) == before


def test_create_user_refuses_duplicate_email(db):
    run_cli("create-user", "--email", "ada@example.com", "--password-stdin",
            input=GOOD_PASSWORD + "\n")
    before = table_counts(db)
    result = CliRunner().invoke(cli, ["create-user", "--email", "ADA@example.com",
                                      "--password-stdin"], input=GOOD_PASSWORD + "\n")
    assert result.exit_code == 1 and "already exists" in result.output
    assert table_counts(db) == before


def test_create_user_without_password_stdin_refuses(db):
    result = CliRunner().invoke(cli, ["create-user", "--email", "ada@example.com"])
    assert result.exit_code == 1 and "--password-stdin" in result.output
    assert table_counts(db) == {"auth.users": 0, "user_profiles": 0}


def test_status_hides_the_database_password(db, monkeypatch):
    url = db.url.replace("postgres@", "postgres:s3cret-pw@").replace("postgres:@",
                                                                       "postgres:s3cret-pw@")
    monkeypatch.setenv("DATABASE_URL", url)  # trust auth ignores the password
    result = run_cli("status")
    assert result.exit_code == 0, result.output
    assert "s3cret-pw" not in result.output and "***" in result.output
    head = head_revision()
    assert f"schema: {head} (head {head})" in result.output
    assert "admins: 0" in result.output


def test_commands_on_an_unmigrated_database_say_to_run_init_db(db, monkeypatch):
    from tests.support.databases import create_database, drop_database

    url = create_database(db.server, f"gk_empty_{os.getpid()}")
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        result = CliRunner().invoke(cli, ["create-user", "--email", "a@example.com",
                                          "--password-stdin"], input=GOOD_PASSWORD + "\n")
        assert result.exit_code == 1 and "init-db" in result.output
    finally:
        from db.engine import dispose_engines

        dispose_engines()
        drop_database(db.server, f"gk_empty_{os.getpid()}")


@pytest.mark.parametrize("command", [["status"], ["init-db"]])
def test_cli_never_echoes_the_database_password(command, tmp_path):
    password = "Pw" + secrets.token_hex(12)
    env = {**os.environ, "DATABASE_URL": f"postgresql://gk:{password}@127.0.0.1:1/nope",
           "GEMINI_KEYS_DATA_DIR": str(tmp_path), "GEMINI_KEYS_LOG_LEVEL": "DEBUG"}
    result = subprocess.run([sys.executable, "-m", "lib.cli", *command], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "error: cannot connect to the database at 127.0.0.1:1" in result.stderr
    assert password not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_unparseable_database_url_is_not_echoed(tmp_path):
    password = "Pw" + secrets.token_hex(12)
    env = {**os.environ, "DATABASE_URL": f"not a url:{password}",
           "GEMINI_KEYS_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "lib.cli", "status"], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert password not in result.stdout + result.stderr
