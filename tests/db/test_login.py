"""The app's database login (db.roles.APP_LOGIN): not a superuser, owns nothing, no BYPASSRLS,
nothing stronger than service_role to become; so only the owner can empty the audit log or
unhook its trigger. The embedded default logs in the same way, and its server's environment
holds none of the process's secrets."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.engine import dispose_engines
from db.roles import API_ROLES, APP_LOGIN
from lib.cli import cli
from lib.crypto.sealed import generate_master_key_b64
from lib.pool import KeyPool
from lib.runtime import build_runtime
from tests.support.databases import make_user, stop_embedded_postgres

LOGIN_FACTS = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
       r.rolreplication,
       (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)
         + (SELECT count(*) FROM pg_proc p WHERE p.proowner = r.oid)
         + (SELECT count(*) FROM pg_namespace n WHERE n.nspowner = r.oid) AS owned,
       ARRAY(SELECT DISTINCT b.rolname::text FROM pg_auth_members m
               JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid
              ORDER BY 1) AS member_of
  FROM pg_roles r WHERE r.rolname = session_user
"""
LEAST_PRIVILEGE = (APP_LOGIN, False, False, False, False, False, False, 0, sorted(API_ROLES))

# What would erase or rewrite the audit log without its trigger noticing.
UNHOOKING = {
    "truncate": "TRUNCATE gemini_key_audit_log",
    "truncate through the keys": "TRUNCATE gemini_api_keys CASCADE",
    "disable its trigger": "ALTER TABLE gemini_key_audit_log DISABLE TRIGGER "
                           "gemini_audit_append_only",
    "disable every trigger": "ALTER TABLE gemini_key_audit_log DISABLE TRIGGER ALL",
    "drop its trigger": "DROP TRIGGER gemini_audit_append_only ON gemini_key_audit_log",
    "replace its trigger function": "CREATE OR REPLACE FUNCTION gemini_audit_append_only() "
                                    "RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END'",
    "skip triggers for the session": "SET LOCAL session_replication_role = replica",
    "switch off RLS": "ALTER TABLE gemini_key_audit_log NO FORCE ROW LEVEL SECURITY",
    "take the table": f"ALTER TABLE gemini_key_audit_log OWNER TO {APP_LOGIN}",
    "delete rows": "DELETE FROM gemini_key_audit_log",
}


def login_facts(engine) -> tuple:
    with engine.connect() as connection:
        row = connection.execute(text(LOGIN_FACTS)).one()
    return tuple(row[:-1]) + (sorted(row[-1]),)


def audit_count(db) -> int:
    with db.engine.connect() as connection:
        return connection.scalar(text("SELECT count(*) FROM gemini_key_audit_log"))


def test_the_app_cli_and_pool_log_in_as_the_least_privilege_login(db):
    runtime = build_runtime()
    assert login_facts(runtime.engine) == LEAST_PRIVILEGE
    pool = KeyPool(runtime)
    assert pool.engine.url.username == APP_LOGIN
    result = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert f"{APP_LOGIN}@" in result.output
    assert "login: the database login has least privilege" in result.output


@pytest.mark.parametrize("role", [None, *API_ROLES])
def test_nothing_the_app_login_can_become_may_empty_or_unhook_the_audit_log(db, role):
    admin = make_user(db, "admin@example.com", admin=True)  # writes one audit row
    before = audit_count(db)
    claims = f'{{"role": "service_role", "sub": "{admin.user_id}"}}'  # the strongest claims
    for what, statement in UNHOOKING.items():
        with pytest.raises(DBAPIError, match="permission denied|must be owner"), \
                db.app_engine.begin() as connection:
            if role:
                connection.execute(text(f"SET LOCAL ROLE {role}"))
            connection.execute(text("SELECT set_config('request.jwt.claims', :c, true)"),
                               {"c": claims})
            connection.execute(text(statement))
            pytest.fail(f"{role or APP_LOGIN} could {what}")
    assert audit_count(db) == before


def test_only_the_owner_may_truncate_the_audit_log(db):
    make_user(db, "admin@example.com", admin=True)
    with db.engine.connect() as connection, connection.begin() as transaction:
        connection.execute(text("TRUNCATE gemini_key_audit_log"))
        assert connection.scalar(text("SELECT count(*) FROM gemini_key_audit_log")) == 0
        transaction.rollback()
    assert audit_count(db) == 1


def test_reset_role_leads_back_to_a_login_with_no_rights_of_its_own(db):
    with db.engine.connect() as connection:
        owner = connection.scalar(text(
            "SELECT pg_get_userbyid(relowner) FROM pg_class "
            "WHERE oid = 'gemini_key_audit_log'::regclass"))
    with db.app_engine.connect() as connection:
        connection.execute(text("SET ROLE service_role"))
        connection.execute(text("RESET ROLE"))
        assert connection.scalar(text("SELECT current_user")) == APP_LOGIN
        for table in ("gemini_api_keys", "gemini_key_audit_log", "alembic_version",
                      "auth.users", "user_profiles"):
            with pytest.raises(DBAPIError, match="permission denied"):
                connection.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))
            connection.rollback()
        for stronger in {owner, "postgres"}:
            with pytest.raises(DBAPIError, match="permission denied"):
                connection.execute(text(f'SET ROLE "{stronger}"'))
            connection.rollback()


@pytest.fixture
def embedded_default(tmp_path, monkeypatch):
    """Nothing configured but secrets: the process starts the embedded server itself."""
    planted = {"GEMINI_KEYS_MASTER_KEY": generate_master_key_b64(),
               "GEMINI_KEYS_COOKIE_KEY": secrets.token_urlsafe(48),
               "GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64(),
               "PGPASSWORD": secrets.token_urlsafe(16),
               "OTHER_DATABASE_URL": f"postgresql://u:{secrets.token_urlsafe(12)}@db/x"}
    for name in ("DATABASE_URL", "DATABASE_OWNER_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("GEMINI_KEYS_DATA_DIR", str(data_dir))
    yield data_dir, planted
    dispose_engines()
    stop_embedded_postgres(data_dir / "pg")


@pytest.mark.one_server
def test_the_embedded_default_logs_in_as_the_app_login(embedded_default):
    runtime = build_runtime()
    assert login_facts(runtime.engine) == LEAST_PRIVILEGE
    assert "login: the database login has least privilege" in CliRunner().invoke(
        cli, ["status"], catch_exceptions=False).output


@pytest.mark.one_server
def test_the_embedded_server_holds_none_of_the_process_secrets(embedded_default):
    data_dir, planted = embedded_default
    build_runtime()
    pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"PATH=" in environ  # what it needs is still there
    for name, value in planted.items():
        assert value.encode() not in environ, name
    for name in (b"GEMINI_KEYS_", b"DATABASE_URL", b"PGPASSWORD"):
        assert name not in environ

