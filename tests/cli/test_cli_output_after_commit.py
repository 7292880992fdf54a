"""The CLI says what it did only after its transaction committed (issue 19): a commit that
fails prints an error and nothing that looks like success, and nothing is stored."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from tests.support.databases import REPO_ROOT, TEST_MASTER_KEY, make_user
from tests.support.keys import fake_key

pytestmark = pytest.mark.one_server  # subprocesses; the deferred trigger is plain SQL

# A constraint trigger checked at COMMIT: every statement succeeds, the commit fails.
FAIL_AT_COMMIT = """
CREATE FUNCTION gk_test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused at commit (test)' USING ERRCODE = 'check_violation'; END $$;
CREATE CONSTRAINT TRIGGER gk_test_fail_at_commit AFTER INSERT OR UPDATE ON {table}
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gk_test_fail_at_commit();
"""


@pytest.fixture
def failing_commits(db):
    """Make every commit that changed `table` fail; undone afterwards."""
    tables = []

    def on(table: str) -> None:
        with db.engine.begin() as connection:
            if not tables:
                connection.execute(text(FAIL_AT_COMMIT.split("CREATE CONSTRAINT")[0]))
            connection.execute(text("CREATE CONSTRAINT" + FAIL_AT_COMMIT.split(
                "CREATE CONSTRAINT")[1].format(table=table)))
        tables.append(table)

    yield on
    with db.engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"DROP TRIGGER gk_test_fail_at_commit ON {table}"))
        if tables:
            connection.execute(text("DROP FUNCTION gk_test_fail_at_commit()"))


def cli(db, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": db.url, "GEMINI_KEYS_MASTER_KEY": TEST_MASTER_KEY,
           "GEMINI_KEYS_BCRYPT_ROUNDS": "4"}
    return subprocess.run([sys.executable, "-m", "lib.cli", *args], cwd=REPO_ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def count(db, sql: str) -> int:
    with db.engine.connect() as connection:
        return connection.scalar(text(sql))


def assert_failed_quietly(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1, result
    assert result.stdout == "", result.stdout  # no "added", "imported", "created"…
    assert "refused at commit (test)" in result.stderr and "Traceback" not in result.stderr


def test_import_keys_prints_nothing_when_the_commit_fails(db, failing_commits, tmp_path):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("".join(f"k{i},{fake_key()}\n" for i in range(20)))
    assert cli(db, "list-keys").returncode == 0  # the schema is there; the CLI works
    failing_commits("gemini_api_keys")
    assert_failed_quietly(cli(db, "import-keys", str(keyfile)))
    assert count(db, "SELECT count(*) FROM gemini_api_keys") == 0


def test_add_key_and_changes_print_nothing_when_the_commit_fails(db, failing_commits):
    assert cli(db, "add-key", "--name", "kept", stdin=fake_key() + "\n").returncode == 0
    failing_commits("gemini_api_keys")
    assert_failed_quietly(cli(db, "add-key", "--name", "lost", stdin=fake_key() + "\n"))
    for args in (("set-priority", "kept", "7"), ("rename", "kept", "renamed"),
                 ("set-group", "kept", "g"), ("set-active", "kept", "false"),
                 ("archive", "kept"), ("delete-key", "kept", "--yes")):
        assert_failed_quietly(cli(db, *args))
    assert count(db, "SELECT count(*) FROM gemini_api_keys WHERE name = 'kept' AND "
                     "priority = 1 AND is_active AND archived_at IS NULL AND deleted_at IS NULL"
                 ) == 1


def test_user_commands_print_nothing_when_the_commit_fails(db, failing_commits):
    make_user(db, "admin@example.com", admin=True)
    failing_commits("auth.users")
    assert_failed_quietly(cli(db, "create-user", "--email", "new@example.com",
                              "--password-stdin", stdin="a long enough passphrase\n"))
    assert_failed_quietly(cli(db, "reset-password", "--email", "admin@example.com",
                              "--password-stdin", stdin="another long passphrase\n"))
    assert count(db, "SELECT count(*) FROM auth.users") == 1


def test_quota_commands_print_nothing_when_the_commit_fails(db, failing_commits):
    assert cli(db, "add-key", "--name", "kept", "--group", "proj-a",
               stdin=fake_key() + "\n").returncode == 0
    assert cli(db, "set-quota", "--group", "proj-a", "--model", "gemini-2.5-pro",
               "--rpd", "100").returncode == 0
    failing_commits("gemini_quota_limits")
    assert_failed_quietly(cli(db, "set-quota", "--group", "proj-a", "--model",
                              "gemini-2.5-pro", "--rpd", "5"))
    assert_failed_quietly(cli(db, "set-quota", "--group", "proj-a", "--model",
                              "gemini-2.5-flash", "--rpm", "5"))
    assert count(db, "SELECT count(*) FROM gemini_quota_limits WHERE rpd = 100") == 1
    assert count(db, "SELECT count(*) FROM gemini_quota_limits") == 1
