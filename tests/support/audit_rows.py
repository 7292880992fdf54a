"""Seeding audit rows with chosen times, for the audit tests (pages, filters, exports)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

from sqlalchemy import text

from db.session import Actor, session_scope
from tests.support.databases import record_check_value

ACTIONS = ("key_added", "key_renamed", "key_checked", "key_cooldown", "admin_granted")
BASE_TIME = dt.datetime(2026, 3, 1, 12, 0, 0)


@dataclass
class Seeded:
    key_ids: list[uuid.UUID]
    deleted_key_id: uuid.UUID
    user_ids: list[uuid.UUID]
    rows: list[dict]  # as inserted, newest first by (created_at, id)


def insert_key(session, name: str, *, deleted: bool = False) -> uuid.UUID:
    record_check_value(session)  # as start-up would have, before any key
    return session.scalar(text(
        "INSERT INTO gemini_api_keys (name, encrypted_key, encryption_iv, encryption_tag,"
        " deleted_at) VALUES (:n, 'x', 'y', 'z', CASE WHEN :d THEN now() END) RETURNING id"),
        {"n": name, "d": deleted})


def insert_rows(db, rows: list[dict]) -> None:
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        session.execute(text(
            "INSERT INTO gemini_key_audit_log (id, key_id, action, user_id, created_at, details)"
            " VALUES (:id, :key_id, :action, :user_id, :created_at, CAST(:details AS jsonb))"),
            [{**r, "details": json.dumps(r["details"])} for r in rows])


def make_rows(count: int, key_ids, user_ids, *, start: dt.datetime = BASE_TIME,
              same_time_every: int = 3) -> list[dict]:
    """Rows one minute apart going back from `start`; `same_time_every` rows share a time
    (as rows written in one transaction do)."""
    rows = []
    for i in range(count):
        key_id = key_ids[i % len(key_ids)] if i % 4 else None
        user_id = user_ids[i % len(user_ids)] if i % 5 else None
        note = "100%_sure" if i % 7 == 0 else f"note {i}"
        rows.append({
            "id": uuid.uuid4(),
            "key_id": key_id,
            "action": ACTIONS[i % len(ACTIONS)],
            "user_id": user_id,
            "created_at": start - dt.timedelta(minutes=i // same_time_every),
            "details": {"source": "app" if user_id else "pool", "n": i, "note": note,
                        "after": {"priority": i}},
        })
    return rows


def newest_first(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)


def seed(db, admin_actor, count: int = 120, *, other_user_id: uuid.UUID | None = None) -> Seeded:
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        key_ids = [insert_key(session, f"seed-key-{i}") for i in range(3)]
        deleted = insert_key(session, "gone-key", deleted=True)
    user_ids = [admin_actor.user_id] + ([other_user_id] if other_user_id else [])
    rows = make_rows(count, [*key_ids, deleted], user_ids)
    insert_rows(db, rows)
    return Seeded(key_ids, deleted, user_ids, newest_first(rows))
