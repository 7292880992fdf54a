"""Helpers shared by the analytics tests: keys and stats rows written straight to the tables.

The keys carry dummy ciphertext: analytics never decrypts, and this keeps the tests
independent of the key service.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.support.databases import record_check_value

D0 = dt.date(2026, 3, 2)  # a Monday


def day(n: int) -> dt.date:
    return D0 + dt.timedelta(days=n)


def insert_key(session: Session, name: str, *, group: str | None = None, priority: int = 1,
               active: bool = True, archived: bool = False, deleted: bool = False,
               cooldown_minutes: int | None = None, last_used: dt.datetime | None = None
               ) -> uuid.UUID:
    record_check_value(session)  # as start-up would have, before any key
    return session.scalar(text("""
INSERT INTO gemini_api_keys (name, encrypted_key, encryption_iv, encryption_tag, group_label,
  priority, is_active, archived_at, deleted_at, cooldown_until, last_used)
VALUES (:name, 'x', 'y', 'z', :group, :priority, :active,
  CASE WHEN :archived THEN now() END, CASE WHEN :deleted THEN now() END,
  now() + make_interval(mins => :cooldown), :last_used)
RETURNING id"""), {"name": name, "group": group, "priority": priority, "active": active,
                   "archived": archived, "deleted": deleted, "cooldown": cooldown_minutes,
                   "last_used": last_used})


def insert_stat(session: Session, key_id: uuid.UUID | None, date: dt.date, *, ok: int = 0,
                fail: int = 0, rl: int = 0, latency: float | None = None) -> None:
    session.execute(text("""
INSERT INTO gemini_key_usage_stats (key_id, date, request_count, success_count, failure_count,
  rate_limit_count, avg_response_time)
VALUES (:key_id, :date, :req, :ok, :fail, :rl, :latency)"""), {
        "key_id": key_id, "date": date, "req": ok + fail + rl, "ok": ok, "fail": fail,
        "rl": rl, "latency": latency})


def insert_stats(session: Session, rows: list[tuple]) -> None:
    """Many (key_id, date, ok, fail, rl, latency) rows in one multi-row INSERT."""
    from sqlalchemy import insert

    from db.models import UsageStat

    session.execute(insert(UsageStat), [
        {"key_id": k, "date": d, "request_count": ok + fail + rl, "success_count": ok,
         "failure_count": fail, "rate_limit_count": rl, "avg_response_time": latency}
        for k, d, ok, fail, rl, latency in rows])


MODEL_COLUMNS = ("request_count", "success_count", "failure_count", "rate_limit_count",
                 "avg_response_time", "prompt_tokens", "output_tokens", "thoughts_tokens",
                 "cached_tokens", "total_tokens")


def insert_usage(session: Session, key_id: uuid.UUID, date: dt.date,
                 per_model: dict[str, tuple]) -> None:
    """A key's day as the pool records it: one per-model row per model (ok, fail, rl,
    latency, prompt, output[, thoughts, cached]) and the spec's row as their sum (latency
    weighted by requests). total_tokens = prompt + output + thoughts."""
    total = {"ok": 0, "fail": 0, "rl": 0}
    weighted, weight = 0.0, 0
    for model, values in per_model.items():
        ok, fail, rl, latency, prompt, output, *rest = values
        thoughts, cached = (*rest, 0, 0)[:2]
        requests = ok + fail + rl
        session.execute(text(f"""
INSERT INTO gemini_key_model_usage_stats (key_id, date, model, {", ".join(MODEL_COLUMNS)})
VALUES (:key_id, :date, :model, :req, :ok, :fail, :rl, :latency, :prompt, :output, :thoughts,
        :cached, :total)"""), {
            "key_id": key_id, "date": date, "model": model, "req": requests, "ok": ok,
            "fail": fail, "rl": rl, "latency": latency, "prompt": prompt, "output": output,
            "thoughts": thoughts, "cached": cached, "total": prompt + output + thoughts})
        total["ok"] += ok
        total["fail"] += fail
        total["rl"] += rl
        if latency is not None:
            weighted += latency * requests
            weight += requests
    insert_stat(session, key_id, date, **total, latency=weighted / weight if weight else None)
