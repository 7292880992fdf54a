"""The master-key check value fails closed: with keys stored and the check value gone, no
process starts (and none records a check value for whatever key it was given) until
restore-master-key-check has proven the configured key against every stored key."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.cli import cli
from lib.crypto.master_key import MasterKeyCheckMissing
from lib.crypto.sealed import generate_master_key_b64
from lib.keys.writes import delete_key
from lib.pool import KeyPool
from lib.runtime import build_runtime
from tests.support.databases import TEST_MASTER_KEY
from tests.support.keys import audit_rows
from tests.support.pool import add


def check_rows(db) -> list[tuple]:
    with db.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT master_key_version, check_value FROM gemini_master_key_check"))]


def lose_check_value(db) -> None:
    with db.engine.begin() as connection:  # as the owner: a bad restore, a manual DELETE
        connection.execute(text("DELETE FROM gemini_master_key_check"))


def key_states(db) -> list[tuple]:
    with db.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT id, is_active, disabled_reason FROM gemini_api_keys ORDER BY id"))]


@pytest.fixture
def stored_keys(db) -> list[str]:
    """Two keys stored under TEST_MASTER_KEY, then the check value lost."""
    runtime = build_runtime()
    plaintexts = [add(runtime, name)[1] for name in ("first", "second")]
    lose_check_value(db)
    return plaintexts


def run_cli(*args: str, key: str):
    return CliRunner().invoke(cli, list(args), env={"GEMINI_KEYS_MASTER_KEY": key},
                              catch_exceptions=False)


@pytest.mark.parametrize("configured", ["the right key", "another key"])
def test_start_up_refuses_stored_keys_without_a_check_value(db, stored_keys, monkeypatch,
                                                             configured):
    if configured == "another key":
        monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", generate_master_key_b64())
    with pytest.raises(MasterKeyCheckMissing) as refused:
        build_runtime()
    message = str(refused.value)
    assert "2 encrypted key(s)" in message and "restore-master-key-check" in message
    assert check_rows(db) == []  # nothing recorded for whatever key was configured


def test_a_pool_with_a_wrong_key_stops_before_disabling_anything(db, stored_keys,
                                                                  monkeypatch):
    before = key_states(db)
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", generate_master_key_b64())
    with pytest.raises(MasterKeyCheckMissing):
        KeyPool()
    assert key_states(db) == before and check_rows(db) == []
    assert audit_rows(db, "key_auto_disabled") == []


def test_restore_with_a_key_that_does_not_decrypt_them_changes_nothing(db, stored_keys):
    result = run_cli("restore-master-key-check", key=generate_master_key_b64())
    assert result.exit_code == 1
    assert "restore refused, nothing changed" in result.output
    assert "cannot decrypt API key" in result.output
    assert check_rows(db) == [] and audit_rows(db, "master_key_check_restored") == []


def test_restore_with_the_right_key_lets_the_app_and_the_pool_start_again(db, stored_keys,
                                                                          admin_actor):
    result = run_cli("restore-master-key-check", "--actor", "admin@example.com",
                     key=TEST_MASTER_KEY)
    assert result.exit_code == 0, result.output
    assert "all 2 stored keys decrypt" in result.output
    [row] = audit_rows(db, "master_key_check_restored")
    assert row["user_id"] == admin_actor.user_id and row["details"]["count"] == 2
    pool = KeyPool()
    try:
        assert pool.acquire().api_key in stored_keys
    finally:
        pool.close()
    again = run_cli("restore-master-key-check", key=TEST_MASTER_KEY)
    assert again.exit_code == 1 and "nothing to restore" in again.output


def test_tombstones_alone_do_not_block_a_new_check_value(db, monkeypatch):
    runtime = build_runtime()
    key_id, _ = add(runtime, "retired")
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        delete_key(session, key_id)
    lose_check_value(db)
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", generate_master_key_b64())
    build_runtime()  # nothing left that a new key could be wrong for
    assert len(check_rows(db)) == 1
