"""Reading budgets: the limits, today's use against them (current UTC minute and Pacific day,
summed by the database), and the pool's per-model marks (no quota, cooldowns).

Every read runs in the caller's session, so row-level security applies: only admins (and the
service role) see anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.clock import (
    naive_utc,
    next_pacific_midnight,
    pacific_day_start,
    utc_minute_start,
    utc_now,
)
from lib.keys.status import NOT_DELETED
from lib.quotas.rules import LIMIT_WORDS, Limits

NEAR_LIMIT = 0.9  # the Overview's alert (and the webhook's event) at 90 % of a limit


@dataclass(frozen=True)
class QuotaLimit:
    group_label: str
    model: str
    limits: Limits
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class QuotaWindows:
    """The windows the pool counts in at `now` (naive UTC, as gemini_quota_usage holds them)."""

    now: dt.datetime
    minute_start: dt.datetime  # window_kind 'm'
    day_start: dt.datetime  # window_kind 'd': the Pacific day's midnight
    next_minute: dt.datetime  # when rpm and tpm reset
    next_day: dt.datetime  # when rpd resets (next Pacific midnight)


def quota_windows(now: dt.datetime | None = None) -> QuotaWindows:
    """The current minute and Pacific day at naive-UTC `now` (default: the clock)."""
    now = now or utc_now()
    aware = now.replace(tzinfo=dt.UTC)
    minute_start = utc_minute_start(aware)  # the windows the pool counts in (lib.clock)
    return QuotaWindows(now, minute_start, pacific_day_start(aware),
                        minute_start + dt.timedelta(minutes=1),
                        naive_utc(next_pacific_midnight(aware)))


@dataclass(frozen=True)
class QuotaUse:
    """One group × model with a limit: what it used in the current minute and Pacific day."""

    group_label: str
    model: str
    limits: Limits
    minute_requests: int
    minute_tokens: int
    day_requests: int
    day_tokens: int
    # used / limit per limit name; None when there is no limit, or the limit is 0
    fractions: dict[str, float | None]
    cooldown_until: dt.datetime | None  # the pool's per-model cooldown of this group, if any
    no_quota: bool  # Gemini said `limit: 0` for this group and model
    next_minute: dt.datetime
    next_day: dt.datetime

    def used(self, name: str) -> int:
        return {"rpm": self.minute_requests, "tpm": self.minute_tokens,
                "rpd": self.day_requests}[name]

    def resets_at(self, name: str) -> dt.datetime:
        return self.next_day if name == "rpd" else self.next_minute

    @property
    def highest_fraction(self) -> float | None:
        values = [f for f in self.fractions.values() if f is not None]
        return max(values) if values else None


@dataclass(frozen=True)
class ModelMark:
    """A per-model mark the pool keeps for a project: a cooldown, or no quota at all."""

    project: str  # a group label, or 'key:<id>' for a key without a group
    key_name: str | None  # that key's name, for a project of one key
    model: str
    cooldown_until: dt.datetime | None
    no_quota: bool
    reason: str | None
    updated_at: dt.datetime | None

    @property
    def label(self) -> str:
        """The project as an admin knows it: the group, or the key's name."""
        if self.project.startswith("key:"):
            return f"key {self.key_name or self.project.removeprefix('key:')}"
        return self.project


@dataclass(frozen=True)
class QuotaToday:
    windows: QuotaWindows
    rows: list[QuotaUse]
    marks: list[ModelMark]


@dataclass(frozen=True)
class LimitPressure:
    """A limit at or above a fraction of itself (what the 90 % alert and event report)."""

    group_label: str
    model: str
    limit: str  # rpm, tpm or rpd
    used: int
    limit_value: int
    fraction: float
    resets_at: dt.datetime  # naive UTC

    def describe(self) -> str:
        return (f"{self.group_label} × {self.model}: {self.used:,} of {self.limit_value:,} "
                f"{LIMIT_WORDS[self.limit]} ({self.fraction:.0%}), resets "
                f"{self.resets_at:%Y-%m-%d %H:%M} UTC")


def _limits(row) -> Limits:
    return Limits(row.rpm, row.tpm, row.rpd)


def list_quotas(session: Session) -> list[QuotaLimit]:
    """Every limit, by group and model."""
    rows = session.execute(text(
        "SELECT group_label, model, rpm, tpm, rpd, updated_at FROM gemini_quota_limits"
        " ORDER BY group_label, model")).all()
    return [QuotaLimit(r.group_label, r.model, _limits(r), r.updated_at) for r in rows]


def find_quota(session: Session, group_label: str, model: str, *,
               for_update: bool = False) -> QuotaLimit | None:
    row = session.execute(text(
        "SELECT group_label, model, rpm, tpm, rpd, updated_at FROM gemini_quota_limits"
        " WHERE group_label = :g AND model = :m" + (" FOR UPDATE" if for_update else "")),
        {"g": group_label, "m": model}).first()
    return None if row is None else QuotaLimit(row.group_label, row.model, _limits(row),
                                                row.updated_at)


def group_has_keys(session: Session, group_label: str) -> bool:
    """Some stored key (archived ones too) carries this group."""
    return bool(session.scalar(text(
        f"SELECT EXISTS (SELECT 1 FROM gemini_api_keys k WHERE k.group_label = :g"
        f" AND {NOT_DELETED.sql('k')})"), {"g": group_label}))


# One statement: each limit with its minute and day rows (primary-key lookups) and the pool's
# mark for the same project and model; the fractions are computed here too.
_USAGE_SQL = """
SELECT l.group_label, l.model, l.rpm, l.tpm, l.rpd,
       coalesce(m.requests, 0) AS minute_requests, coalesce(m.tokens, 0) AS minute_tokens,
       coalesce(d.requests, 0) AS day_requests, coalesce(d.tokens, 0) AS day_tokens,
       coalesce(m.requests, 0)::float8 / nullif(l.rpm, 0) AS rpm_fraction,
       coalesce(m.tokens, 0)::float8 / nullif(l.tpm, 0) AS tpm_fraction,
       coalesce(d.requests, 0)::float8 / nullif(l.rpd, 0) AS rpd_fraction,
       CASE WHEN c.cooldown_until > :now THEN c.cooldown_until END AS cooldown_until,
       coalesce(c.no_quota, false) AS no_quota
FROM gemini_quota_limits l
LEFT JOIN gemini_quota_usage m ON m.project = l.group_label AND m.model = l.model
  AND m.window_kind = 'm' AND m.window_start = :minute
LEFT JOIN gemini_quota_usage d ON d.project = l.group_label AND d.model = l.model
  AND d.window_kind = 'd' AND d.window_start = :day
LEFT JOIN gemini_model_cooldowns c ON c.project = l.group_label AND c.model = l.model
ORDER BY l.group_label, l.model
"""

# Marks in force: no quota (until an admin clears it or the pool lifts it), or a cooldown that
# has not ended. A project of one key ('key:<uuid>') is shown by that key's name.
_MARKS_SQL = """
SELECT c.project, c.model, c.cooldown_until, c.no_quota, c.reason, c.updated_at,
       (SELECT k.name FROM gemini_api_keys k
        WHERE k.id = CASE WHEN c.project ~ '^key:[0-9a-f-]{36}$'
                          THEN substr(c.project, 5)::uuid END) AS key_name
FROM gemini_model_cooldowns c
WHERE c.no_quota OR c.cooldown_until > :now
ORDER BY c.project, c.model
"""


def model_marks(session: Session, *, now: dt.datetime | None = None) -> list[ModelMark]:
    """The no-quota marks and per-model cooldowns in force at `now` (naive UTC)."""
    rows = session.execute(text(_MARKS_SQL), {"now": now or utc_now()}).all()
    return [ModelMark(r.project, r.key_name, r.model, r.cooldown_until, bool(r.no_quota),
                      r.reason, r.updated_at) for r in rows]


def quota_usage_today(session: Session, *, now: dt.datetime | None = None) -> QuotaToday:
    """Per group × model with a limit: requests and tokens of the current UTC minute and of
    the Pacific day against rpm / tpm / rpd, the fractions, the next resets, and the marks."""
    windows = quota_windows(now)
    rows = session.execute(text(_USAGE_SQL), {
        "now": windows.now, "minute": windows.minute_start, "day": windows.day_start}).all()
    uses = [QuotaUse(
        r.group_label, r.model, _limits(r), r.minute_requests, r.minute_tokens,
        r.day_requests, r.day_tokens,
        {"rpm": r.rpm_fraction, "tpm": r.tpm_fraction, "rpd": r.rpd_fraction},
        r.cooldown_until, bool(r.no_quota), windows.next_minute, windows.next_day)
        for r in rows]
    return QuotaToday(windows, uses, model_marks(session, now=windows.now))


def pressures(today: QuotaToday, fraction: float = NEAR_LIMIT) -> list[LimitPressure]:
    """The limits of `today` at or above `fraction` of themselves, fullest first."""
    found = [LimitPressure(use.group_label, use.model, name, use.used(name),
                           use.limits.as_dict()[name] or 0, value, use.resets_at(name))
             for use in today.rows for name, value in use.fractions.items()
             if value is not None and value >= fraction]
    return sorted(found, key=lambda p: (-p.fraction, p.group_label, p.model, p.limit))


def limits_near(session: Session, *, now: dt.datetime | None = None,
                fraction: float = NEAR_LIMIT) -> list[LimitPressure]:
    """Every limit at or above `fraction` (default 90 %) of itself at `now`, fullest first:
    the source of the Overview alert and of a webhook's "quota near limit" event."""
    return pressures(quota_usage_today(session, now=now), fraction)
