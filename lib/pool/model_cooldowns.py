"""Cooldowns of one project x model: a 429 that named the model, or no quota at all.

Gemini's quotas are per project and model, so a per-day 429 on one model must leave the
project's other models usable. A burst of 429s writes one row change and one audit row: a
cooldown already lasting at least as long is left alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.audit.log import Action, write_audit
from lib.clock import naive_utc
from lib.notify import hooks

_UPSERT = text("""
INSERT INTO gemini_model_cooldowns AS c (project, model, cooldown_until, no_quota, reason)
VALUES (:project, :model, :until, :no_quota, :reason)
ON CONFLICT (project, model) DO UPDATE SET
  cooldown_until = GREATEST(c.cooldown_until, excluded.cooldown_until),
  no_quota = c.no_quota OR excluded.no_quota, reason = excluded.reason
 WHERE (excluded.no_quota AND NOT c.no_quota)
    OR excluded.cooldown_until > COALESCE(c.cooldown_until, '-infinity'::timestamp)
RETURNING (SELECT b.cooldown_until FROM gemini_model_cooldowns b
            WHERE b.project = c.project AND b.model = c.model) AS before
""")


def cool_model(session: Session, *, key_id: uuid.UUID, project: str, model: str,
               until: datetime | None, no_quota: bool, scope: str,
               error: dict[str, Any] | None = None, trigger: str = "pool") -> bool:
    """Cool (project, model) until `until` (aware UTC), or mark it without quota; audited
    on the key that was told. False when nothing changed."""
    if no_quota:  # not a cooldown: it lasts until an admin clears it (a new tier)
        until = None
        reason = f"no quota for {model} (Google said limit: 0)"
    elif scope == "day":
        reason = f"per-day quota for {model} exhausted"
    else:
        reason = f"rate limited on {model}"
    row = session.execute(_UPSERT, {
        "project": project, "model": model, "no_quota": no_quota, "reason": reason,
        "until": naive_utc(until) if until else None}).first()
    if row is None:
        return False
    write_audit(session, action=Action.MODEL_COOLDOWN, key_id=key_id, details={
        "project": project, "model": model, "scope": scope, "reason": reason,
        "trigger": trigger, "no_quota": no_quota,
        "before": {"cooldown_until": row.before.isoformat() if row.before else None},
        "after": {"cooldown_until": naive_utc(until).isoformat() if until else None},
        "error": error,
    })
    hooks.model_cooled(session, project=project, model=model, until=until, scope=scope,
                       no_quota=no_quota, caused_by=key_id)
    return True
