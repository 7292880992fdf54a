"""The Overview page's numbers and the alerts an admin must act on (each one SQL query).

"Live" keys are in service (neither archived nor deleted); "usable" ones are also active and
not cooling down, i.e. what the key pool may hand out right now (lib.keys.status).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.analytics.stats import StatsFilter, Totals, totals
from lib.audit.log import Action
from lib.clock import utc_now
from lib.keys import status
from lib.keys.status import ARCHIVED, COOLING, ENABLED, IN_SERVICE
from lib.quotas.reads import NEAR_LIMIT, QuotaToday, pressures, quota_usage_today

Severity = Literal["error", "warning", "info"]
LIVE = IN_SERVICE.sql("k")
USABLE = status.USABLE.sql("k", now=":now")
MAX_NAMES = 10


@dataclass(frozen=True)
class AlertSettings:
    min_usable_keys: int = 2          # fewer usable keys than this is an error
    recent_days: int = 7              # how far back auto-disable/archive events count
    spike_factor: float = 3.0         # today's failure rate vs the key's 7-day rate
    spike_min_rate: float = 0.2       # ... and at least this rate
    spike_min_requests: int = 20      # ... over at least this many requests today
    quota_near_fraction: float = NEAR_LIMIT  # a group × model at this share of a limit


@dataclass(frozen=True)
class Alert:
    severity: Severity
    kind: str
    title: str
    items: list[str] = field(default_factory=list)
    icon: str | None = None  # a Material icon (":material/name:"); None: the severity's


@dataclass(frozen=True)
class KeyCounts:
    live: int
    usable: int
    inactive: int
    cooling_down: int
    archived: int



def overview_totals(session: Session, today: dt.date) -> tuple[Totals, Totals]:
    """Totals for today and for the last 7 days (today included), all keys."""
    return (totals(session, StatsFilter(today, today)),
            totals(session, StatsFilter.last_days(7, today=today)))


def key_counts(session: Session, now: dt.datetime) -> KeyCounts:
    row = session.execute(text(f"""
SELECT count(*) FILTER (WHERE {LIVE}) AS live,
       count(*) FILTER (WHERE {USABLE}) AS usable,
       count(*) FILTER (WHERE {LIVE} AND k.is_active IS NOT TRUE) AS inactive,
       count(*) FILTER (WHERE {ENABLED.sql("k")} AND {COOLING.sql("k")})
         AS cooling_down,
       count(*) FILTER (WHERE {ARCHIVED.sql("k")}) AS archived
FROM gemini_api_keys k"""), {"now": now}).one()
    return KeyCounts(**row._mapping)


def _names(names: list[str]) -> list[str]:
    if len(names) <= MAX_NAMES:
        return names
    return [*names[:MAX_NAMES], f"… and {len(names) - MAX_NAMES} more"]


def recent_retirements(session: Session, now: dt.datetime, days: int) -> list[Alert]:
    """Keys auto-disabled or archived recently that are still out of service."""
    rows = session.execute(text("""
SELECT DISTINCT ON (a.key_id, a.action) a.action, a.created_at, k.name,
       coalesce(a.details->>'reason', k.disabled_reason) AS reason
FROM gemini_key_audit_log a JOIN gemini_api_keys k ON k.id = a.key_id
WHERE a.action IN (:auto, :archived) AND a.created_at >= :since AND k.deleted_at IS NULL
  AND ((a.action = :auto AND k.is_active IS NOT TRUE AND k.archived_at IS NULL)
       OR (a.action = :archived AND k.archived_at IS NOT NULL))
ORDER BY a.key_id, a.action, a.created_at DESC"""), {
        "auto": Action.KEY_AUTO_DISABLED.value, "archived": Action.KEY_ARCHIVED.value,
        "since": now - dt.timedelta(days=days)}).all()
    alerts = []
    for action, severity, title in (
            (Action.KEY_AUTO_DISABLED, "error", "Keys disabled automatically in the last {d} "
                                                "days (still inactive)"),
            (Action.KEY_ARCHIVED, "warning", "Keys archived in the last {d} days")):
        hits = sorted((r for r in rows if r.action == action.value),
                      key=lambda r: r.created_at, reverse=True)
        if hits:
            items = [f"{r.name} — {r.created_at:%Y-%m-%d %H:%M} UTC"
                     + (f" — {r.reason}" if r.reason else "") for r in hits]
            alerts.append(Alert(severity, action.value, title.format(d=days), _names(items)))
    return alerts


def failure_spikes(session: Session, today: dt.date, s: AlertSettings) -> Alert | None:
    """Keys whose failure rate today is far above their own previous 7 days."""
    rows = session.execute(text(f"""
WITH norm AS (
  SELECT key_id, sum(request_count) AS r, sum(failure_count) AS f
  FROM gemini_key_usage_stats
  WHERE date BETWEEN CAST(:today AS date) - 7 AND CAST(:today AS date) - 1 GROUP BY key_id)
SELECT k.name, t.request_count AS r, t.failure_count::float8 / t.request_count AS rate,
       n.f::float8 / nullif(n.r, 0) AS norm_rate
FROM gemini_key_usage_stats t
JOIN gemini_api_keys k ON k.id = t.key_id
LEFT JOIN norm n ON n.key_id = t.key_id
WHERE t.date = :today AND {LIVE} AND t.request_count >= :min_requests
  AND t.failure_count::float8 / t.request_count
      >= greatest(:min_rate, :factor * coalesce(n.f::float8 / nullif(n.r, 0), 0))
ORDER BY rate DESC, k.name"""), {"today": today, "min_requests": s.spike_min_requests,
                                  "min_rate": s.spike_min_rate, "factor": s.spike_factor}).all()
    if not rows:
        return None
    items = [f"{r.name}: {r.rate:.0%} failures today over {r.r} requests (7-day norm "
             + (f"{r.norm_rate:.1%})" if r.norm_rate is not None else "unknown: no traffic)")
             for r in rows]
    return Alert("error", "failure_spike", "Failure rate today far above the 7-day norm",
                 _names(items))


def top_tier_unavailable(session: Session, now: dt.datetime) -> Alert | None:
    """Every live key of the highest priority is inactive or cooling down."""
    row = session.execute(text(f"""
WITH live AS (SELECT k.* FROM gemini_api_keys k WHERE {LIVE}),
     tier AS (SELECT * FROM live k WHERE coalesce(k.priority, 1) =
                (SELECT max(coalesce(priority, 1)) FROM live))
SELECT (SELECT max(coalesce(priority, 1)) FROM live) AS priority, count(*) AS total,
       count(*) FILTER (WHERE {USABLE}) AS usable,
       count(*) FILTER (WHERE {ENABLED.sql("k")} AND {COOLING.sql("k")}) AS cooling
FROM tier k"""), {"now": now}).one()
    if not row.total or row.usable:
        return None
    return Alert("warning", "top_tier_unavailable",
                 f"Every key of the top priority tier ({row.priority}) is unavailable",
                 [f"{row.cooling} cooling down, {row.total - row.cooling} inactive — "
                  "requests fall back to lower-priority keys"])


def too_few_usable(counts: KeyCounts, minimum: int) -> Alert | None:
    if counts.usable >= minimum:
        return None
    return Alert("error", "few_usable_keys",
                 f"Only {counts.usable} usable key{'s' if counts.usable != 1 else ''} "
                 f"(minimum {minimum})",
                 [f"{counts.live} live keys: {counts.inactive} inactive, "
                  f"{counts.cooling_down} cooling down. Add or re-activate keys."])


def never_used(session: Session) -> Alert | None:
    names = list(session.scalars(text(f"""
SELECT k.name FROM gemini_api_keys k
WHERE {LIVE} AND k.is_active IS TRUE AND k.last_used IS NULL
  AND NOT EXISTS (SELECT 1 FROM gemini_key_usage_stats s
                  WHERE s.key_id = k.id AND s.request_count > 0)
ORDER BY lower(k.name) LIMIT 1000""")))
    if not names:
        return None
    return Alert("info", "never_used", f"{len(names)} active key(s) never used", _names(names))


QUOTA_NEAR_LIMIT = "quota_near_limit"


def quota_near_limit(quotas: QuotaToday, s: AlertSettings) -> Alert | None:
    """Groups × models at 90 % (quota_near_fraction) or more of an rpm, tpm or rpd limit."""
    near = pressures(quotas, s.quota_near_fraction)
    if not near:
        return None
    reached = any(p.fraction >= 1 for p in near)
    return Alert("error" if reached else "warning", QUOTA_NEAR_LIMIT,
                 f"Quotas at {s.quota_near_fraction:.0%} or more of a limit"
                 + (" (the pool holds back keys that reached one)" if reached else ""),
                 _names([p.describe() for p in near]), icon=":material/speed:")


def overview_alerts(session: Session, *, now: dt.datetime | None = None,
                    settings: AlertSettings = AlertSettings(), counts: KeyCounts | None = None,
                    quotas: QuotaToday | None = None) -> list[Alert]:
    """Every alert, most severe first. counts and quotas: what the page read already at
    `now` (key_counts, quota_usage_today), so they are not read twice."""
    now = now or utc_now()
    counts = key_counts(session, now) if counts is None else counts
    quotas = quota_usage_today(session, now=now) if quotas is None else quotas
    found = [
        *recent_retirements(session, now, settings.recent_days),
        failure_spikes(session, now.date(), settings),
        top_tier_unavailable(session, now),
        too_few_usable(counts, settings.min_usable_keys),
        never_used(session),
        quota_near_limit(quotas, settings),
    ]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted((a for a in found if a is not None), key=lambda a: order[a.severity])
