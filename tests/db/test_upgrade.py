"""A database migrated by the previous release (head 0004: tables owned by the owner, no
login role, auth.users open to service_role) upgrades in place, and keeps its users and keys."""

from __future__ import annotations

import os
import uuid

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, text

from db.engine import dispose_engines
from db.migrate import alembic_config, current_revision, head_revision
from db.models import ApiKey
from db.session import Actor, session_scope
from lib.cli import cli
from lib.crypto.sealed import MasterKey, make_check_value, seal
from lib.errors import ConfigurationError
from lib.key_format import ApiKeyText
from lib.pool import KeyPool
from lib.runtime import build_runtime
from lib.users.passwords import hash_password
from lib.users.signin import sign_in
from tests.support.databases import (
    SERVERS,
    TEST_BCRYPT_ROUNDS,
    TEST_MASTER_KEY,
    app_login_url,
    create_database,
    drop_database,
)
from tests.support.keys import fake_key

PASSWORD = "correct horse battery staple"
OLD_HEAD = "0004"


@pytest.fixture(params=SERVERS)
def old_database(request, monkeypatch, tmp_path):
    """At 0004, with an admin and a key written as the previous release wrote them."""
    server, name = request.param, f"gk_upgrade_{os.getpid()}"
    url = create_database(server, name)
    engine = create_engine(url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, OLD_HEAD)
    master = MasterKey.from_base64(TEST_MASTER_KEY)
    key_id, plaintext = uuid.uuid4(), fake_key()
    with engine.begin() as connection:
        user_id = connection.scalar(text(
            "INSERT INTO auth.users (email, encrypted_password) VALUES ('old@example.com', :h) "
            "RETURNING id"), {"h": hash_password(PASSWORD, TEST_BCRYPT_ROUNDS)})
        connection.execute(text("INSERT INTO user_profiles (user_id, is_admin) "
                                "VALUES (:u, true)"), {"u": user_id})
        connection.execute(text("INSERT INTO gemini_master_key_check (id, master_key_version, "
                                "check_value) VALUES (1, 1, :v)"),
                           {"v": make_check_value(master)})
        connection.execute(insert(ApiKey).values(
            id=key_id, name="kept", **seal(master, key_id, ApiKeyText(plaintext)).columns()))
    engine.dispose()
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("GEMINI_KEYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GEMINI_KEYS_BCRYPT_ROUNDS", str(TEST_BCRYPT_ROUNDS))
    monkeypatch.setenv("DATABASE_URL", app_login_url(url))
    monkeypatch.delenv("DATABASE_OWNER_URL", raising=False)
    yield url, user_id, plaintext
    dispose_engines()
    drop_database(server, name)


def test_without_the_owner_the_app_says_how_to_upgrade(old_database):
    with pytest.raises(ConfigurationError, match="DATABASE_OWNER_URL"):
        build_runtime()
    result = CliRunner().invoke(cli, ["list-users"], catch_exceptions=False)
    assert result.exit_code == 1 and "init-db" in result.output
    url, _, _ = old_database
    assert current_revision(create_engine(url)) == OLD_HEAD  # nothing half-applied


def test_with_the_owner_the_upgrade_keeps_users_and_keys(old_database, monkeypatch):
    url, user_id, plaintext = old_database
    monkeypatch.setenv("DATABASE_OWNER_URL", url)
    runtime = build_runtime()
    assert current_revision(runtime.engine) == head_revision()
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        assert sign_in(session, "old@example.com", PASSWORD,
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS).user_id == user_id
    assert "old@example.com\tadmin" in CliRunner().invoke(
        cli, ["list-users"], catch_exceptions=False).output
    pool = KeyPool(runtime)
    try:
        assert pool.acquire().api_key == plaintext
    finally:
        pool.close()
