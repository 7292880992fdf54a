"""Errors an operator can act on: one line naming the cause and the setting to check, a
non-zero exit, never a traceback, never a password (issue 19)."""

from __future__ import annotations

import errno
import os
import secrets
import subprocess
import sys

import psycopg2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from lib.operator_errors import describe
from tests.support.databases import LOCAL_URL, REPO_ROOT, SERVERS, with_database

PASSWORD = "Pw" + secrets.token_hex(12)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GEMINI_KEYS_LOG_LEVEL": "DEBUG", **env}
    return subprocess.run([sys.executable, "-m", "lib.cli", *args], cwd=REPO_ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and PASSWORD not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("url", "words"), [
    (f"postgresql://gk:{PASSWORD}@127.0.0.1:1/nope", ["127.0.0.1:1", "connection refused",
                                                      "DATABASE_URL"]),
    (f"postgresql://gk:{PASSWORD}@nosuch-host.invalid:5432/x", ["'nosuch-host.invalid'",
                                                                "unknown", "DATABASE_URL"]),
    (f"not a url:{PASSWORD}", ["DATABASE_URL is not a database URL"]),
], ids=["connection refused", "unknown host", "malformed"])
def test_unreachable_or_malformed_database_url(url, words, tmp_path):
    assert_one_line(cli("status", DATABASE_URL=url, GEMINI_KEYS_DATA_DIR=str(tmp_path)),
                    *words)


needs_local = pytest.mark.skipif("local" not in SERVERS, reason="needs the local PostgreSQL")


@needs_local
def test_missing_database_and_unknown_login_are_named(tmp_path):
    missing = with_database(LOCAL_URL, f"gk_missing_{secrets.token_hex(4)}")
    assert_one_line(cli("status", DATABASE_URL=missing, GEMINI_KEYS_DATA_DIR=str(tmp_path)),
                    "does not exist", "DATABASE_URL")
    stranger = LOCAL_URL.replace("postgres@", f"gk_nobody_{secrets.token_hex(3)}:{PASSWORD}@")
    assert_one_line(cli("status", DATABASE_URL=stranger, GEMINI_KEYS_DATA_DIR=str(tmp_path)),
                    "login", "does not exist", "DATABASE_URL")


def test_permission_denied_names_the_object(db, tmp_path):
    """A login without privileges: PostgreSQL's own words, the object, the SQLSTATE."""
    role = f"gk_nopriv_{secrets.token_hex(3)}"
    owner = create_engine(db.url, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN NOINHERIT'))
    try:
        url = db.url.replace("postgres@", f"{role}:{PASSWORD}@", 1) if "postgres@" in db.url \
            else db.url.replace("postgres:@", f"{role}:{PASSWORD}@", 1)
        line = assert_one_line(cli("list-keys", DATABASE_URL=url,
                                   GEMINI_KEYS_DATA_DIR=str(tmp_path)), "permission denied")
        assert "SQLSTATE 42501" in line and "init-db" in line and "DATABASE_URL" in line
    finally:
        with owner.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"'))
        owner.dispose()


@pytest.mark.parametrize(("data_dir", "words"), [
    ("/etc/hostname", ["/etc/hostname is a file", "GEMINI_KEYS_DATA_DIR"]),
    ("/sys/gemini-keys-data", ["not allowed to write /sys/gemini-keys-data",
                               "GEMINI_KEYS_DATA_DIR"]),  # read-only even for root
])
def test_unusable_data_directory(data_dir, words):
    assert_one_line(cli("status", DATABASE_URL="", GEMINI_KEYS_DATA_DIR=data_dir), *words)


def test_disk_full_and_server_side_errors_are_described():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/export.csv")
    assert describe(full) == ("no space left on the device /data/export.csv: free space, or "
                              "choose another place for the file")
    refused = OperationalError("SELECT 1", {}, psycopg2.OperationalError(
        'connection to server at "db.example.com", port 6543 failed: FATAL:  password '
        'authentication failed for user "app"\n'))
    assert describe(refused) == (
        "cannot connect to the database at db.example.com:6543: password authentication "
        "failed for user 'app': fix the password; check DATABASE_URL")
    assert describe(ValueError("not ours")) is None
