"""Why no key can be handed out, and when one frees up (only asked when acquire found none).

Per project: all its keys cooling down, the model cooling down or without quota, or an
rpm / tpm / rpd limit reached. A project frees up when its last block ends; the pool when
its first project does. NoKeyAvailable carries that moment and a retry-after in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.clock import next_pacific_midnight, pacific_day_start, utc_minute_start
from lib.errors import GeminiKeysError
from lib.keys.status import ENABLED
from lib.pool.quota_sql import NOW_SQL, PROJECT

_PROJECTS = text(f"""
WITH keys AS (
  SELECT {PROJECT} AS project, NULLIF(k.group_label, '') AS grp,
         (k.cooldown_until IS NULL OR k.cooldown_until <= {NOW_SQL}) AS ready, k.cooldown_until
    FROM gemini_api_keys k WHERE {ENABLED.sql('k')} AND k.id <> ALL(CAST(:exclude AS uuid[]))
), p AS (
  SELECT project, grp, count(*) FILTER (WHERE ready) AS ready,
         min(cooldown_until) FILTER (WHERE NOT ready) AS keys_until
    FROM keys GROUP BY project, grp
)
SELECT p.project, p.grp, p.ready, p.keys_until, c.no_quota,
       CASE WHEN c.cooldown_until > {NOW_SQL} THEN c.cooldown_until END AS model_until,
       l.rpm, l.tpm, l.rpd, um.requests AS minute_requests, um.tokens AS minute_tokens,
       ud.requests AS day_requests
  FROM p
  LEFT JOIN gemini_model_cooldowns c ON c.project = p.project AND c.model = :model
  LEFT JOIN gemini_quota_limits l ON l.group_label = p.grp AND l.model = :model
  LEFT JOIN gemini_quota_usage um ON um.project = p.project AND um.model = :model
        AND um.window_kind = 'm' AND um.window_start = :minute
  LEFT JOIN gemini_quota_usage ud ON ud.project = p.project AND ud.model = :model
        AND ud.window_kind = 'd' AND ud.window_start = :day
""")
NEVER = None  # a block only an admin (or a new tier) lifts


@dataclass(frozen=True)
class Block:
    project: str
    why: str
    until: datetime | None  # aware UTC; None: not by itself


def blocks_of(session: Session, model: str | None, exclude: Sequence[str],
              now: datetime) -> tuple[int, list[list[Block]]]:
    """(projects considered, each blocked project's blocks); a project without blocks is
    usable now (it freed up since acquire looked)."""
    rows = session.execute(_PROJECTS, {
        "model": model or "", "exclude": list(exclude), "minute": utc_minute_start(now),
        "day": pacific_day_start(now)}).all()
    minute_end = (utc_minute_start(now) + timedelta(minutes=1)).replace(tzinfo=UTC)
    day_end = next_pacific_midnight(now)
    result = []
    for r in rows:
        blocks = []
        if not r.ready:
            blocks.append(Block(r.project, "all its keys are cooling down",
                                r.keys_until.replace(tzinfo=UTC)))
        if model:
            if r.no_quota:
                blocks.append(Block(r.project, f"no quota for {model} (Google said limit: 0)",
                                    NEVER))
            elif r.model_until:
                blocks.append(Block(r.project, f"{model} is cooling down after a 429",
                                    r.model_until.replace(tzinfo=UTC)))
            for name, limit, used, end in (("rpm", r.rpm, r.minute_requests, minute_end),
                                           ("tpm", r.tpm, r.minute_tokens, minute_end),
                                           ("rpd", r.rpd, r.day_requests, day_end)):
                if limit == 0:
                    blocks.append(Block(r.project, f"{name} limit for {model} is 0", NEVER))
                elif limit is not None and (used or 0) >= limit:
                    blocks.append(Block(r.project, f"{name} limit for {model} reached "
                                                   f"({used}/{limit})", end))
        result.append(blocks)
    return len(rows), result


class NoKeyAvailable(GeminiKeysError):
    """No key can be handed out now. next_available_at (aware UTC) says when one frees up
    (None: unknown, or only an admin can lift it); retry_after is that in whole seconds,
    for an HTTP Retry-After; reasons name each blocked project's limits."""

    def __init__(self, *, active: int, next_available_at: datetime | None,
                 now: datetime | None = None, model: str | None = None,
                 reasons: Sequence[str] = ()) -> None:
        now = now or datetime.now(UTC)
        self.active = active
        self.next_available_at = next_available_at
        self.model = model
        self.reasons = list(reasons)
        self.retry_after: int | None = None
        if next_available_at is not None:
            self.retry_after = max(1, math.ceil((next_available_at - now).total_seconds()))
        subject = f"no Gemini API key available for {model}" if model else \
            "no Gemini API key available"
        if active == 0:
            message = (f"{subject}: no active key (add one, or reactivate one on the Keys "
                       "page)")
        elif self.reasons:
            message = f"{subject}: " + "; ".join(self.reasons[:5])
            if len(self.reasons) > 5:
                message += f"; and {len(self.reasons) - 5} more"
        elif next_available_at is None:
            message = f"{subject} right now; try again shortly"
        else:
            message = f"{subject}: all {active} active keys are cooling down"
        if next_available_at is not None:
            wait = max(0, round((next_available_at - now).total_seconds()))
            message += (f"; the next one frees up at {next_available_at:%Y-%m-%d %H:%M:%S} "
                        f"UTC (in {_duration(wait)})")
        elif active and self.reasons:
            message += "; none frees up by itself (see the Quotas tab)"
        super().__init__(message)


def explain(session: Session, *, model: str | None, exclude: Sequence[str],
            active: int, now: datetime) -> NoKeyAvailable | None:
    """The NoKeyAvailable to raise, or None when a project is usable again."""
    _, projects = blocks_of(session, model, exclude, now)
    if any(not blocks for blocks in projects):
        return None
    frees = []
    reasons = []
    for blocks in projects:
        ends = [b.until for b in blocks]
        frees.append(None if any(e is None for e in ends) else max(ends))
        reasons.append(f"project {blocks[0].project!r}: " + ", ".join(b.why for b in blocks))
    known = [f for f in frees if f is not None]
    next_free = min(known) if known else None
    only_key_cooldowns = all(b.why.startswith("all its keys") for bl in projects for b in bl)
    return NoKeyAvailable(active=active, next_available_at=next_free, now=now, model=model,
                          reasons=[] if only_key_cooldowns else reasons)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
