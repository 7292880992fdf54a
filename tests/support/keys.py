"""Shared helpers for the key tests: fake keys, owner-level table dumps, session shortcuts."""

from __future__ import annotations

from sqlalchemy import text

from lib.demo import fake_gemini_key
from lib.key_format import KeyKind
from tests.support.databases import APP_TABLES


def fake_key(kind: KeyKind = "standard") -> str:
    """A random text shaped like a Gemini key of `kind` (never a real one)."""
    return fake_gemini_key(kind)


KINDS: tuple[KeyKind, ...] = ("standard", "authorization")


def dump_tables(db) -> dict[str, list[str]]:
    """Every row of every app table as text, read as the owner (no RLS), sorted."""
    dump: dict[str, list[str]] = {}
    with db.engine.connect() as connection:
        for table in APP_TABLES:
            rows = connection.execute(text(f"SELECT t::text FROM {table} t")).scalars()
            dump[table] = sorted(rows)
    return dump


def dump_text(db) -> str:
    return "\n".join(row for rows in dump_tables(db).values() for row in rows)


def every_table_as_text(db) -> str:
    """Every row of every table in the public and auth schemas, read as the owner: what a
    pg_dump would hold, including tables added after this was written."""
    with db.engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE' AND table_schema IN ('public', 'auth')"
        )).scalars().all()
        assert "public.gemini_api_keys" in tables and "auth.users" in tables
        return "\n".join(row for table in tables for row in connection.execute(
            text(f"SELECT t::text FROM {table} t")).scalars())


def audit_rows(db, action: str | None = None) -> list[dict]:
    query = "SELECT action, key_id, user_id, details FROM gemini_key_audit_log"
    if action:
        query += " WHERE action = :action"
    query += " ORDER BY created_at, id"
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text(query), {"action": action})]


def key_audit_rows(db) -> list[dict]:
    return [r for r in audit_rows(db) if r["action"] != "user_created"]
