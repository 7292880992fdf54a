"""The migrations produce exactly the spec's schema, on an empty and a Supabase-shaped database."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from db.migrate import current_revision, head_revision, upgrade
from tests.support.databases import SERVERS, create_database, drop_database

# (column, data_type, nullable, default or None) exactly as the spec writes them.
SPEC_COLUMNS = {
    "gemini_api_keys": [
        ("id", "uuid", "NO", "uuid_generate_v4()"),
        ("name", "character varying(255)", "NO", None),
        ("encrypted_key", "text", "NO", None),
        ("encryption_iv", "character varying(255)", "NO", None),
        ("encryption_tag", "character varying(255)", "NO", None),
        ("is_active", "boolean", "YES", "true"),
        ("priority", "integer", "YES", "1"),
        ("created_by", "uuid", "YES", None),
        ("created_at", "timestamp without time zone", "YES", "now()"),
        ("updated_at", "timestamp without time zone", "YES", "now()"),
        ("last_used", "timestamp without time zone", "YES", None),
        ("usage_count", "integer", "YES", "0"),
        ("failure_count", "integer", "YES", "0"),
    ],
    "gemini_key_audit_log": [
        ("id", "uuid", "NO", "uuid_generate_v4()"),
        ("key_id", "uuid", "YES", None),
        ("action", "character varying(50)", "NO", None),
        ("user_id", "uuid", "YES", None),
        ("created_at", "timestamp without time zone", "YES", "now()"),
        ("details", "jsonb", "YES", None),
    ],
    "gemini_key_usage_stats": [
        ("id", "uuid", "NO", "uuid_generate_v4()"),
        ("key_id", "uuid", "YES", None),
        ("date", "date", "NO", None),
        ("request_count", "integer", "YES", "0"),
        ("success_count", "integer", "YES", "0"),
        ("failure_count", "integer", "YES", "0"),
        ("rate_limit_count", "integer", "YES", "0"),
        ("avg_response_time", "double precision", "YES", None),
        ("created_at", "timestamp without time zone", "YES", "now()"),
    ],
    "user_profiles": [("is_admin", "boolean", "YES", "false")],
}
SPEC_INDEXES = {
    "idx_gemini_keys_active": "gemini_api_keys USING btree (is_active)",
    "idx_gemini_keys_priority": "gemini_api_keys USING btree (priority DESC)",
    "idx_audit_log_key_id": "gemini_key_audit_log USING btree (key_id)",
    "idx_usage_stats_key_date": "gemini_key_usage_stats USING btree (key_id, date)",
}
SPEC_FOREIGN_KEYS = {
    ("gemini_api_keys", "created_by", "users", "NO ACTION"),
    ("gemini_key_audit_log", "key_id", "gemini_api_keys", "CASCADE"),
    ("gemini_key_audit_log", "user_id", "users", "NO ACTION"),
    ("gemini_key_usage_stats", "key_id", "gemini_api_keys", "CASCADE"),
}
RLS_TABLES = ("gemini_api_keys", "gemini_key_audit_log", "gemini_key_usage_stats")

# What a Supabase project already has before our migrations run.
SUPABASE_SHAPE = """
CREATE SCHEMA auth;
DO $$ BEGIN  -- roles are cluster-wide: an earlier database may have made them already
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT; END IF;
END $$;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email varchar(255),
  encrypted_password varchar(255), created_at timestamptz, last_sign_in_at timestamptz,
  aud varchar(255));
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
DO $$ BEGIN
  CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
EXCEPTION WHEN OTHERS THEN  -- the embedded server has no uuid-ossp
  CREATE FUNCTION public.uuid_generate_v4() RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()';
END $$;
CREATE TABLE public.user_profiles (user_id uuid PRIMARY KEY REFERENCES auth.users(id),
  display_name text);
"""


def normalise_default(default: str | None) -> str | None:
    if default is None:
        return None
    return default.replace("public.", "").replace("CURRENT_TIMESTAMP", "now()")


def column_facts(connection, table: str) -> dict[str, tuple[str, str, str | None]]:
    rows = connection.execute(text("""
        SELECT a.attname, format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"""),
        {"t": table})
    return {name: (typ, null, normalise_default(default)) for name, typ, null, default in rows}


def assert_spec_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        for table, columns in SPEC_COLUMNS.items():
            facts = column_facts(connection, table)
            for name, typ, nullable, default in columns:
                assert facts[name] == (typ, nullable, default), (table, name, facts[name])
        indexes = dict(connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'")).all())
        for name, definition in SPEC_INDEXES.items():
            assert indexes[name].endswith(f"ON public.{definition}"), indexes[name]
        unique = connection.execute(text("""
            SELECT pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = 'gemini_key_usage_stats'::regclass AND contype = 'u'""")).scalars()
        assert list(unique) == ["UNIQUE (key_id, date)"]
        fks = set(connection.execute(text("""
            SELECT c.conrelid::regclass::text, a.attname, r.relname,
                   CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'a' THEN 'NO ACTION' END
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            JOIN pg_class r ON r.oid = c.confrelid
            WHERE c.contype = 'f' AND c.conrelid::regclass::text LIKE 'gemini_%'""")).all())
        assert fks >= SPEC_FOREIGN_KEYS
        for table in RLS_TABLES:
            enabled, forced = connection.execute(text(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = "
                "CAST(:t AS regclass)"), {"t": table}).one()
            assert enabled and forced, table
            policies = connection.execute(text(
                "SELECT qual, with_check, roles::text FROM pg_policies WHERE tablename = :t "
                "AND policyname LIKE 'Admin only access%'"), {"t": table}).all()
            assert len(policies) == 1, table
            qual, with_check, roles = policies[0]
            for expression in (qual, with_check):
                assert "auth.uid()" in expression and "is_admin = true" in expression
            assert roles == "{public}"
    engine.dispose()


@pytest.mark.parametrize("server", SERVERS)
def test_migrations_on_empty_database_give_spec_schema(server):
    name = f"gk_schema_empty_{os.getpid()}"
    url = create_database(server, name)
    try:
        assert upgrade(create_engine(url)) is True
        assert_spec_schema(url)
    finally:
        drop_database(server, name)


@pytest.mark.parametrize("server", SERVERS)
def test_migrations_on_supabase_shaped_database_give_spec_schema(server):
    name = f"gk_schema_supabase_{os.getpid()}"
    url = create_database(server, name)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(SUPABASE_SHAPE))
        assert upgrade(engine) is True
        assert_spec_schema(url)
        with engine.connect() as connection:
            # Supabase's own auth.uid() and user_profiles were kept, not replaced.
            assert "display_name" in column_facts(connection, "user_profiles")
            assert "aud" in column_facts(connection, "auth.users")
    finally:
        engine.dispose()
        drop_database(server, name)


def test_init_db_twice_changes_nothing(db):
    assert current_revision(db.engine) == head_revision()
    assert upgrade(db.engine) is False


def test_updated_at_moves_on_update(db):
    with db.engine.begin() as connection:
        connection.execute(text("SET LOCAL ROLE service_role"))
        key_id = connection.scalar(text(
            "INSERT INTO gemini_api_keys (name, encrypted_key, encryption_iv, encryption_tag, "
            "updated_at) VALUES ('k', 'x', 'y', 'z', now() - interval '1 day') RETURNING id"))
        before = connection.scalar(text("SELECT updated_at FROM gemini_api_keys"))
        connection.execute(text("UPDATE gemini_api_keys SET priority = 5 WHERE id = :i"),
                           {"i": key_id})
        after = connection.scalar(text("SELECT updated_at FROM gemini_api_keys"))
    assert after > before
