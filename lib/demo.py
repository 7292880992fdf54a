"""Demo data: clearly labelled fake keys, realistic daily stats and audit history.

Everything it makes is recognisable: keys are named ``demo-<batch>-NNN`` in groups
``demo-project-a|b|c``; the history rows it writes carry ``"demo": true`` in their details.
The keys are random strings shaped like Gemini keys of both families (they work nowhere),
encrypted like real ones through the key service. The stats show a weekly rhythm, growth,
latency drift, one key failing today (then auto-disabled), one key that keeps hitting 429s
(cooling down now) and one key that was never used.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from db.models import ApiKey, AuditLog, UsageStat
from lib.audit.log import Action, audit_row
from lib.crypto.sealed import MasterKey, seal
from lib.errors import InvalidInput
from lib.key_format import AUTHORIZATION_PREFIX, STANDARD_PREFIX, ApiKeyText, KeyKind
from lib.keys.writes import add_key

MAX_KEYS = 5000
MAX_DAYS = 3650
MAX_AUDIT_ROWS = 1_000_000
KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
GROUPS = ("demo-project-a", "demo-project-b", "demo-project-c")
WEEKDAY_FACTOR = (1.0, 1.05, 1.0, 0.98, 0.9, 0.55, 0.45)  # Monday … Sunday
HISTORY_ACTIONS = (  # (verb, weight) for the extra audit history
    (Action.KEY_CHECKED, 6), (Action.KEY_COOLDOWN, 3), (Action.KEY_PRIORITY_CHANGED, 1),
    (Action.KEY_DEACTIVATED, 1), (Action.KEY_ACTIVATED, 1))


def fake_gemini_key(kind: KeyKind = "standard") -> str:
    """A random text shaped like a Gemini key of `kind`, valid nowhere: ``AIza`` + 35
    characters, or ``AQ.`` + 53 (authorization keys, AI Studio's default since May 2026)."""
    if kind == "authorization":
        body = "".join(secrets.choice(KEY_ALPHABET) for _ in range(53))
        return AUTHORIZATION_PREFIX + "Ab" + body[2:]
    return STANDARD_PREFIX + "".join(secrets.choice(KEY_ALPHABET) for _ in range(35))


@dataclass(frozen=True)
class KeyProfile:
    key_id: uuid.UUID
    name: str
    role: str  # normal | failing | rate_limited | idle
    base_requests: float
    base_latency_ms: float
    failure_rate: float


@dataclass(frozen=True)
class DemoSummary:
    batch: str
    keys: int
    stats_rows: int
    audit_rows: int
    start: dt.date
    end: dt.date
    failing_key: str | None
    rate_limited_key: str | None
    idle_key: str | None


def _role(index: int, count: int) -> str:
    if count >= 2 and index == 0:
        return "failing"
    if count >= 3 and index == 1:
        return "rate_limited"
    if count >= 5 and index == count - 1:
        return "idle"
    return "normal"


def daily_stats(profile: KeyProfile, start: dt.date, days: int,
                rng: random.Random) -> Iterator[dict[str, Any]]:
    """One stats row per day for a key; success + failure + rate-limited = requests."""
    if profile.role == "idle":
        return
    for j in range(days):
        day = start + dt.timedelta(days=j)
        progress = j / max(days - 1, 1)
        requests = int(profile.base_requests * WEEKDAY_FACTOR[day.weekday()]
                       * (1 + 0.3 * progress) * rng.uniform(0.85, 1.15))
        fail_rate = profile.failure_rate * rng.uniform(0.5, 1.5)
        latency = profile.base_latency_ms * (1 + 0.4 * progress) * rng.uniform(0.9, 1.1)
        limited_share = 0.0
        if profile.role == "failing" and j >= days - 3:
            fail_rate = (0.35, 0.6, 0.9)[j - (days - 3)]
            latency *= 2.5
        if profile.role == "rate_limited":
            limited_share = rng.uniform(0.15, 0.35) if day.weekday() < 5 else rng.uniform(0, .05)
        failures = round(requests * fail_rate)
        limited = min(round(requests * limited_share), requests - failures)
        yield {"key_id": profile.key_id, "date": day, "request_count": requests,
               "success_count": requests - failures - limited, "failure_count": failures,
               "rate_limit_count": limited,
               "avg_response_time": round(latency, 1) if requests else None}


def check_demo_size(keys: int, days: int, audit_rows: int) -> None:
    """Refuse sizes outside what seed-demo makes (before anything is connected)."""
    if not 1 <= keys <= MAX_KEYS:
        raise InvalidInput(f"--keys must be between 1 and {MAX_KEYS}")
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"--days must be between 1 and {MAX_DAYS}")
    if not 0 <= audit_rows <= MAX_AUDIT_ROWS:
        raise InvalidInput(f"--audit-rows must be between 0 and {MAX_AUDIT_ROWS}")


def seed_demo(session: Session, master: MasterKey, *, keys: int, days: int,
              audit_rows: int = 0, now: dt.datetime | None = None,
              seed: int | None = None) -> DemoSummary:
    """Add `keys` demo keys, `days` days of stats ending today (UTC) and audit history."""
    check_demo_size(keys, days, audit_rows)
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    end = now.date()
    start = end - dt.timedelta(days=days - 1)
    batch = secrets.token_hex(2)
    profiles = []
    for i in range(keys):
        name = f"demo-{batch}-{i + 1:03d}"
        # Both families, as a team has them today: most keys new authorization keys.
        kind: KeyKind = "standard" if i % 3 == 2 else "authorization"
        row = add_key(session, master, name=name, api_key=fake_gemini_key(kind),
                      priority=2 if i < max(1, keys // 3) else 1, group_label=GROUPS[i % 3])
        role = _role(i, keys)
        profiles.append(KeyProfile(row.id, name, role, rng.lognormvariate(6.0, 0.6),
                                   rng.uniform(300, 900), rng.uniform(0.005, 0.03)))
    rows = [r for p in profiles for r in daily_stats(p, start, days, rng)]
    for chunk in range(0, len(rows), 5000):
        session.execute(insert(UsageStat), rows[chunk:chunk + 5000])
    _sync_key_counters(session, [p.key_id for p in profiles], now)
    by_role = {p.role: p for p in reversed(profiles)}
    history = _lifecycle_events(session, by_role, now)
    history += _history_rows(session, profiles, start, now, audit_rows - len(history), rng)
    if history:
        session.execute(insert(AuditLog), history)
    session.flush()
    return DemoSummary(batch, keys, len(rows), len(history), start, end,
                       *(by_role[r].name if r in by_role else None
                         for r in ("failing", "rate_limited", "idle")))


def _sync_key_counters(session: Session, key_ids: list[uuid.UUID], now: dt.datetime) -> None:
    """The key rows' usage_count / failure_count / last_used, consistent with the stats."""
    session.flush()
    session.execute(text("""
UPDATE gemini_api_keys k SET usage_count = a.requests, failure_count = a.failures,
  last_used = least(CAST(:now AS timestamp), a.last_day + time '17:30')
FROM (SELECT key_id, sum(request_count) AS requests, sum(failure_count) AS failures,
             max(date) AS last_day
      FROM gemini_key_usage_stats WHERE key_id = ANY(CAST(:ids AS uuid[])) GROUP BY key_id) a
WHERE k.id = a.key_id"""), {"ids": [str(k) for k in key_ids], "now": now})


def _audit_row(session: Session, action: str, key_id: uuid.UUID, at: dt.datetime,
               details: dict[str, Any]) -> dict[str, Any]:
    """An audit row as write_audit shapes it, dated in the past and marked demo."""
    return {"id": uuid.uuid4(), "created_at": at,
            **audit_row(session, action=action, key_id=key_id, details={"demo": True, **details})}


def _lifecycle_events(session: Session, by_role: dict[str, KeyProfile],
                      now: dt.datetime) -> list[dict[str, Any]]:
    """The failing key is auto-disabled, the 429 key cools down: as the key pool would do."""
    events = []
    if "failing" in by_role:
        key = by_role["failing"]
        # As the pool would: 503s never count against a key, failures the key causes do.
        reason = "demo: 5 consecutive failures (last: 401 UNAUTHENTICATED)"
        session.execute(text("UPDATE gemini_api_keys SET is_active = false, consecutive_failures"
                             " = 5, disabled_reason = :r WHERE id = :id"),
                        {"r": reason, "id": key.key_id})
        events.append(_audit_row(session, Action.KEY_AUTO_DISABLED, key.key_id,
                                 now - dt.timedelta(minutes=20), {"reason": reason}))
    if "rate_limited" in by_role:
        key = by_role["rate_limited"]
        until = now + dt.timedelta(minutes=30)
        session.execute(text("UPDATE gemini_api_keys SET cooldown_until = :u WHERE id = :id"),
                        {"u": until, "id": key.key_id})
        events.append(_audit_row(session, Action.KEY_COOLDOWN, key.key_id,
                                 now - dt.timedelta(minutes=5),
                                 {"reason": "demo: 429 RESOURCE_EXHAUSTED (per-minute quota)",
                                  "cooldown_until": until.isoformat()}))
    return events


def _history_rows(session: Session, profiles: list[KeyProfile], start: dt.date,
                  now: dt.datetime, count: int, rng: random.Random) -> list[dict[str, Any]]:
    actions = [a for a, _ in HISTORY_ACTIONS]
    weights = [w for _, w in HISTORY_ACTIONS]
    span = max((now - dt.datetime.combine(start, dt.time())).total_seconds(), 1)
    rows = []
    for _ in range(max(count, 0)):
        profile = rng.choice(profiles)
        at = now - dt.timedelta(seconds=rng.uniform(60, span))
        action = rng.choices(actions, weights)[0]
        details: dict[str, Any] = {"name": profile.name}
        if action == Action.KEY_CHECKED:
            details["result"] = rng.choice(["ok"] * 9 + ["rate_limited"])
        elif action == Action.KEY_PRIORITY_CHANGED:
            details.update(before={"priority": 1}, after={"priority": 2})
        elif action == Action.KEY_COOLDOWN:
            details["reason"] = "demo: 429 RESOURCE_EXHAUSTED (per-minute quota)"
        rows.append(_audit_row(session, action, profile.key_id, at, details))
    return rows


def bulk_demo_keys(session: Session, master: MasterKey, count: int, *,
                   batch: str | None = None) -> list[uuid.UUID]:
    """Many encrypted demo keys in one executemany (benchmarks): no per-key audit row."""
    batch = batch or secrets.token_hex(2)
    rows, ids = [], []
    for i in range(count):
        key_id = uuid.uuid4()
        rows.append({"id": key_id, "name": f"demo-{batch}-{i + 1:05d}",
                     **seal(master, key_id, ApiKeyText(fake_gemini_key())).columns(),
                     "group_label": GROUPS[i % 3], "priority": 2 if i % 10 == 0 else 1,
                     "is_active": True})
        ids.append(key_id)
    for chunk in range(0, count, 2000):
        session.execute(insert(ApiKey), rows[chunk:chunk + 2000])
    return ids
