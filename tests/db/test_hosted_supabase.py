"""On a database shaped like hosted Supabase (tests/support/supabase.py), as the `postgres`
login Supabase hands out and as the recommended least-privilege login: migrations leave
Supabase's auth schema as it was, and the CLI, sign-in, the key pool and every page work."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from streamlit.testing.v1 import AppTest

from db.engine import REPO_ROOT, dispose_engines
from db.migrate import head_revision
from db.roles import API_ROLES, APP_LOGIN
from db.session import Actor, session_scope
from lib.cli import cli
from lib.pool import KeyPool
from lib.runtime import build_runtime
from lib.ui.identity import SESSION_USER
from lib.users.signin import sign_in
from tests.support.databases import SERVERS, TEST_BCRYPT_ROUNDS, TEST_MASTER_KEY
from tests.support.keys import fake_key
from tests.support.supabase import (
    GOTRUE_EMAIL,
    GOTRUE_PASSWORD,
    SUPABASE_POSTGRES,
    SupabaseProject,
    auth_shape,
    create_project,
    drop_project,
    enable_app_login,
)

ADMIN = "ada@example.com"
PASSWORD = "correct horse battery staple"
PAGES = sorted(p.name for p in (REPO_ROOT / "pages").glob("*.py"))


def run_cli(*args: str, input: str | None = None, ok: bool = True):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def superuser_rows(project: SupabaseProject, sql: str, **params) -> list:
    engine = create_engine(project.superuser_url)
    with engine.connect() as connection:
        rows = connection.execute(text(sql), params).all()
    engine.dispose()
    return rows


@pytest.fixture(params=SERVERS)
def project(request, monkeypatch, tmp_path):
    """A fresh project with nothing of ours in it; the process configured like a deployment
    (no DATABASE_URL yet: the tests choose the login)."""
    project = create_project(request.param, f"gk_supabase_{os.getpid()}")
    for name in ("DATABASE_URL", "DATABASE_OWNER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("GEMINI_KEYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GEMINI_KEYS_LOGIN_SLEEP_SECONDS", "0")
    monkeypatch.setenv("GEMINI_KEYS_BCRYPT_ROUNDS", str(TEST_BCRYPT_ROUNDS))
    yield project
    dispose_engines()
    drop_project(project)


@pytest.fixture
def as_postgres(project, monkeypatch) -> SupabaseProject:
    """DATABASE_URL alone, as the Supabase dashboard hands it out; schema migrated."""
    monkeypatch.setenv("DATABASE_URL", project.postgres_url)
    run_cli("init-db")
    return project


@pytest.fixture(params=["postgres", "app login"])
def either_login(request, project, monkeypatch) -> SupabaseProject:
    """Migrated as `postgres`; the app then logs in as `postgres` (DATABASE_URL alone) or as
    the recommended login (DATABASE_URL = gemini_app, DATABASE_OWNER_URL = postgres)."""
    monkeypatch.setenv("DATABASE_URL", project.postgres_url)
    run_cli("init-db")
    if request.param == "app login":
        enable_app_login(project)
        monkeypatch.setenv("DATABASE_URL", project.app_url)
        monkeypatch.setenv("DATABASE_OWNER_URL", project.postgres_url)
    return project


def test_init_db_as_postgres_leaves_supabase_auth_as_it_was(project, monkeypatch):
    before = auth_shape(project)
    monkeypatch.setenv("DATABASE_URL", project.postgres_url)
    assert f"upgraded to revision {head_revision()}" in run_cli("init-db").output
    assert auth_shape(project) == before  # columns, owner, grants, RLS, indexes, functions
    assert "already at revision" in run_cli("init-db").output
    owners = {owner for (owner,) in superuser_rows(project, (
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relname LIKE 'gemini_%'"))}
    assert owners == {SUPABASE_POSTGRES}


def test_the_grants_supabase_hands_out_by_default_are_taken_back(as_postgres):
    """Supabase's default privileges give the API roles ALL on what `postgres` creates."""
    facts = dict(superuser_rows(as_postgres, """
        SELECT r || ' ' || t || ' ' || p, has_table_privilege(r, t, p)
          FROM unnest(ARRAY['anon', 'authenticated', 'service_role']) r,
               unnest(ARRAY['gemini_api_keys', 'gemini_key_audit_log',
                            'gemini_key_usage_stats', 'gemini_master_key_check',
                            'gemini_sign_in_attempts', 'alembic_version']) t,
               unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                            'REFERENCES', 'TRIGGER']) p"""))
    granted = {fact for fact, yes in facts.items() if yes}
    assert not {f for f in granted if f.startswith("anon ")}
    assert not {f for f in granted if f.split()[-1] in ("TRUNCATE", "REFERENCES", "TRIGGER")}
    assert {f for f in granted if "gemini_master_key_check" in f and "authenticated" in f} == {
        "authenticated gemini_master_key_check SELECT"}
    assert not {f for f in granted if "sign_in_attempts" in f and "authenticated" in f}
    assert {f for f in granted if "alembic_version" in f} == {
        "service_role alembic_version SELECT"}
    executable = superuser_rows(as_postgres, """
        SELECT p.proname, r FROM pg_proc p, unnest(ARRAY['anon', 'authenticated']) r
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'gemini_%'
           AND has_function_privilege(r, p.oid, 'EXECUTE') ORDER BY 1, 2""")
    assert [tuple(row) for row in executable] == [
        ("gemini_is_admin", "authenticated"), ("gemini_user_directory", "authenticated")]


def test_the_cli_manages_users_in_supabase_auth(either_login):
    project = either_login
    run_cli("create-user", "--email", ADMIN, "--admin", "--password-stdin",
            input=PASSWORD + "\n")
    listed = run_cli("list-users").output
    assert f"{ADMIN}\tadmin" in listed and f"{GOTRUE_EMAIL}\tuser" in listed
    assert "is now an admin" in run_cli("grant-admin", "--email", GOTRUE_EMAIL).output
    assert "is no longer an admin" in run_cli("revoke-admin", "--email", GOTRUE_EMAIL,
                                              "--actor", ADMIN).output
    run_cli("reset-password", "--email", GOTRUE_EMAIL, "--password-stdin", "--actor", ADMIN,
            input="a new passphrase for supabase\n")
    assert "users: 2" in run_cli("status").output
    # The row create-user wrote looks like one Supabase Auth wrote.
    [row] = superuser_rows(project, """
        SELECT instance_id::text, aud, role, email_confirmed_at IS NOT NULL AS confirmed,
               raw_app_meta_data ->> 'provider', confirmation_token, recovery_token,
               email_change_token_new, email_change, encrypted_password LIKE '$2%' AS bcrypt,
               is_sso_user, is_anonymous
          FROM auth.users WHERE email = :e""", e=ADMIN)
    assert tuple(row) == ("00000000-0000-0000-0000-000000000000", "authenticated",
                          "authenticated", True, "email", "", "", "", "", True, False, False)
    [(updated,)] = superuser_rows(project, "SELECT updated_at > created_at FROM auth.users "
                                           "WHERE email = :e", e=GOTRUE_EMAIL)
    assert updated


def test_a_user_signed_up_through_supabase_auth_signs_in(either_login):
    runtime = build_runtime(apply_migrations=False)
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        wrong = sign_in(session, GOTRUE_EMAIL, "not what they typed",
                        bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        right = sign_in(session, GOTRUE_EMAIL.upper(), GOTRUE_PASSWORD,
                        bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert not wrong.ok and right.ok and right.user_id == either_login.gotrue_user_id
    [(hashed, signed_in)] = superuser_rows(
        either_login, "SELECT encrypted_password, last_sign_in_at IS NOT NULL FROM auth.users "
                      "WHERE email = :e", e=GOTRUE_EMAIL)
    assert hashed.startswith("$2a$10$") and signed_in  # the hash is left as GoTrue wrote it


def test_the_key_pool_hands_out_and_records_keys(either_login):
    secret = fake_key()
    run_cli("add-key", "--name", "first", input=secret + "\n")
    pool = KeyPool()
    try:
        with pool.lease() as lease:
            assert lease.api_key == secret
    finally:
        pool.close()
    [(requests,)] = superuser_rows(either_login,
                                   "SELECT request_count FROM gemini_key_usage_stats")
    assert requests == 1


def test_the_recommended_login_is_least_privilege_on_supabase(either_login):
    status = run_cli("status").output
    if os.environ["DATABASE_URL"] == either_login.app_url:
        assert "login: the database login has least privilege" in status
        [(members,)] = superuser_rows(either_login, """
            SELECT array_agg(DISTINCT b.rolname::text) FROM pg_auth_members m
              JOIN pg_roles b ON b.oid = m.roleid
             WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = :l)""", l=APP_LOGIN)
        assert members == sorted(API_ROLES)
    else:  # DATABASE_URL alone still works, and says what it costs
        assert "has BYPASSRLS" in status and "owns the tables" in status


@pytest.mark.one_server
def test_sign_in_and_every_page_work_on_supabase(either_login):
    run_cli("create-user", "--email", ADMIN, "--password-stdin", input=PASSWORD + "\n")
    run_cli("grant-admin", "--email", GOTRUE_EMAIL)
    run_cli("add-key", "--name", "shown", "--actor", GOTRUE_EMAIL, input=fake_key() + "\n")
    at = AppTest.from_file("../../dashboard.py", default_timeout=60).run()
    at.text_input(key="gk_sign_in_email").input(GOTRUE_EMAIL)
    at.text_input(key="gk_sign_in_password").input(GOTRUE_PASSWORD)
    at = at.button(key="FormSubmitter:gk_sign_in-Sign in").click().run()
    assert not at.exception
    user = at.session_state[SESSION_USER]
    # Signed in with a live session row (its id rides along; lib.users.sessions).
    assert {k: v for k, v in user.items() if k != "session"} == {
        "id": str(either_login.gotrue_user_id), "email": GOTRUE_EMAIL}
    assert user["session"]
    for page in PAGES:
        page_run = AppTest.from_file(f"../../pages/{page}", default_timeout=60)
        page_run.session_state[SESSION_USER] = user
        page_run = page_run.run()
        assert not page_run.exception, (page, page_run.exception)
        broken = [e.value for e in page_run.error if "went wrong" in e.value]
        assert not broken, (page, broken)
        assert page_run.title, page  # the page itself, not the sign-in form or "No access"
        assert page_run.title[0].value not in ("Gemini Key Manager", "No access"), page
    audit = AppTest.from_file("../../pages/audit.py", default_timeout=60)
    audit.session_state[SESSION_USER] = user
    audit = audit.run()
    # The actor filter lists every user: the user directory reads auth.users (via 0005).
    actors = audit.selectbox(key="audit_actor").options
    assert GOTRUE_EMAIL in actors and ADMIN in actors
