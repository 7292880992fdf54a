"""Shared by the pool and health tests: keys added through lib.keys, owner-level reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from db.session import Actor, session_scope
from lib.keys.writes import add_key
from tests.support.keys import fake_key

LA = ZoneInfo("America/Los_Angeles")


def add(runtime, name: str, *, priority: int = 1,
        group: str | None = None) -> tuple[uuid.UUID, str]:
    """Store a new fake key the normal way; returns (id, plaintext)."""
    api_key = fake_key()
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        row = add_key(session, runtime.master_key, name=name, api_key=api_key,
                      priority=priority, group_label=group)
        return row.id, api_key


def key_row(db, key_id: uuid.UUID) -> dict[str, Any]:
    with db.engine.connect() as connection:
        return dict(connection.execute(
            text("SELECT * FROM gemini_api_keys WHERE id = :id"), {"id": key_id}).one()._mapping)


def set_columns(db, key_id: uuid.UUID, sql_assignments: str, **params: Any) -> None:
    """UPDATE as the owner, e.g. set_columns(db, k, "cooldown_until = now() + interval '1h'")."""
    with db.engine.begin() as connection:
        connection.execute(text(f"UPDATE gemini_api_keys SET {sql_assignments} WHERE id = :id"),
                           {"id": key_id, **params})


def stats_rows(db, key_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    query = "SELECT * FROM gemini_key_usage_stats"
    if key_id is not None:
        query += " WHERE key_id = :id"
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text(query), {"id": key_id})]


def call_fake(base_url: str, api_key: str, model: str = "gemini-2.0-flash"
              ) -> tuple[int, bytes]:
    """POST generateContent to the fake like a service would; (status, body)."""
    request = urllib.request.Request(  # noqa: S310 - a local http URL in tests
        f"{base_url}/v1beta/models/{model}:generateContent",
        data=json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode(),
        headers={"x-goog-api-key": api_key, "Content-Type": "application/json"},
        method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()

def corrupt(db, victim: uuid.UUID, donor: uuid.UUID) -> None:
    """Copy another row's ciphertext: AES-GCM's row-bound AAD must refuse it."""
    with db.engine.begin() as connection:
        connection.execute(text(
            "UPDATE gemini_api_keys v SET encrypted_key = d.encrypted_key,"
            " encryption_iv = d.encryption_iv, encryption_tag = d.encryption_tag"
            " FROM gemini_api_keys d WHERE v.id = :victim AND d.id = :donor"),
            {"victim": victim, "donor": donor})


def next_pacific_midnight() -> datetime:
    day = datetime.now(LA).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=LA).astimezone(UTC).replace(tzinfo=None)


def set_limit(db, group: str, model: str, *, rpm: int | None = None, tpm: int | None = None,
              rpd: int | None = None) -> None:
    """An admin's limit for group x model, written as the owner (lib.quotas is the real way)."""
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO gemini_quota_limits (group_label, model, rpm, tpm, rpd) "
            "VALUES (:g, :m, :rpm, :tpm, :rpd) ON CONFLICT (group_label, model) DO UPDATE "
            "SET rpm = excluded.rpm, tpm = excluded.tpm, rpd = excluded.rpd"),
            {"g": group, "m": model, "rpm": rpm, "tpm": tpm, "rpd": rpd})


def table_rows(db, table: str, order: str = "1") -> list[dict[str, Any]]:
    """Every row of a table, as the owner."""
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(
            text(f"SELECT * FROM {table} ORDER BY {order}"))]
