"""Writing audit rows: every change calls write_audit inside the change's own transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from db.models import AuditLog
from db.session import actor_of


def write_audit(session: Session, *, action: str, key_id: uuid.UUID | None = None,
                details: dict[str, Any] | None = None) -> AuditLog:
    """Add one audit row for the session's actor; flushed so a failure aborts the change."""
    if len(action) > 50:
        raise ValueError(f"audit action {action!r} is longer than 50 characters")
    actor = actor_of(session)
    row = AuditLog(
        key_id=key_id,
        action=action,
        user_id=actor.user_id,
        details={"source": actor.source, "actor_email": actor.email, **(details or {})},
    )
    session.add(row)
    session.flush()
    return row
