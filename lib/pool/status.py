"""Every stored key as the pool sees it, with today's counters (`pool-status`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.clock import utc_now
from lib.keys.status import NOT_DELETED, KeyStatus, key_status
from lib.pool.keypool import NOW_SQL


@dataclass(frozen=True)
class KeyState:
    """One stored key as the pool sees it (for `pool-status`)."""

    key_id: uuid.UUID
    name: str
    priority: int
    group_label: str | None
    is_active: bool
    archived: bool
    cooldown_until: datetime | None  # naive UTC
    disabled_reason: str | None
    consecutive_failures: int
    last_used: datetime | None
    requests_today: int
    failures_today: int
    rate_limited_today: int
    avg_ms_today: float | None

    @property
    def state(self) -> KeyStatus:
        return key_status(deleted=False, archived=self.archived, is_active=self.is_active,
                          disabled_reason=self.disabled_reason,
                          cooldown_until=self.cooldown_until, now=utc_now())


def pool_status(session: Session) -> list[KeyState]:
    """Every non-deleted key in pool order, with today's (UTC) counters."""
    rows = session.execute(text(f"""
SELECT k.id, k.name, k.priority, k.group_label, k.is_active IS TRUE, k.archived_at IS NOT NULL,
       k.cooldown_until, k.disabled_reason, k.consecutive_failures, k.last_used,
       COALESCE(s.request_count, 0), COALESCE(s.failure_count, 0),
       COALESCE(s.rate_limit_count, 0), s.avg_response_time
  FROM gemini_api_keys k
  LEFT JOIN gemini_key_usage_stats s ON s.key_id = k.id AND s.date = {NOW_SQL}::date
 WHERE {NOT_DELETED.sql('k')}
 ORDER BY k.archived_at IS NOT NULL, k.is_active IS NOT TRUE, k.priority DESC,
          k.last_used ASC NULLS FIRST, lower(k.name)""")).all()
    return [KeyState(*row) for row in rows]
