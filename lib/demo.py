"""Demo data: clearly labelled fake keys, realistic daily stats and audit history.

Everything it makes is recognisable: keys are named ``demo-<batch>-NNN`` in groups
``demo-project-a|b|c``; the history rows it writes carry ``"demo": true`` in their details.
The keys are random strings shaped like Gemini keys of both families (they work nowhere),
encrypted like real ones through the key service. The stats show a weekly rhythm, growth,
latency drift, one key failing today (then auto-disabled), one key that keeps hitting 429s
(cooling down now) and one key that was never used. Each key's day is split over three
models (DEMO_MODELS) with their token counts, in the per-model table; the spec's row is
their sum, as the key pool records them. One project (DEMO_QUOTA) is at its daily limit
for one model: a requests-per-day limit equal to what the pool counted today (Pacific day).
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

from db.models import ApiKey, AuditLog, ModelUsageStat, UsageStat
from lib.audit.log import Action, audit_row
from lib.clock import pacific_day_start
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
# model: (share of requests, latency factor, prompt, output and thinking tokens per request,
# share of prompt tokens served from the cache)
DEMO_MODELS = {
    "gemini-2.5-flash": (0.6, 1.0, 900, 260, 80, 0.2),
    "gemini-2.5-pro": (0.25, 1.8, 2200, 620, 340, 0.3),
    "gemini-2.5-flash-lite": (0.15, 0.6, 450, 120, 0, 0.0),
}
DEMO_QUOTA = ("demo-project-a", "gemini-2.5-pro")  # (project = group, model) at its rpd
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
    model_rows: int
    audit_rows: int
    start: dt.date
    end: dt.date
    failing_key: str | None
    rate_limited_key: str | None
    idle_key: str | None
    quota_at_limit: tuple[str, str, int] | None = None  # (project, model, rpd)


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


def _split(count: int, shares: list[float], rng: random.Random) -> list[int]:
    """`count` split by `shares` (jittered), summing to exactly `count`."""
    weights = [share * rng.uniform(0.8, 1.2) for share in shares]
    parts = [int(count * w / sum(weights)) for w in weights]
    parts[0] += count - sum(parts)
    return parts


def model_stats(row: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """A spec stats row split over DEMO_MODELS, with tokens; rewrites the row's latency as
    the request-weighted mean of the models' (as the pool's two tables keep it)."""
    shares = [m[0] for m in DEMO_MODELS.values()]
    split = {c: _split(row[c], shares, rng)
             for c in ("success_count", "failure_count", "rate_limit_count")}
    out, weighted = [], 0.0
    for i, (model, (_, slower, prompt, output, thoughts, cached)) in enumerate(
            DEMO_MODELS.items()):
        ok, fail, limited = (split[c][i] for c in split)
        requests = ok + fail + limited
        if not requests:
            continue
        latency = (round(row["avg_response_time"] * slower * rng.uniform(0.9, 1.1), 1)
                   if row["avg_response_time"] is not None else None)
        weighted += (latency or 0) * requests
        answered = ok  # failed and rate-limited calls carry no tokens
        p = int(answered * prompt * rng.uniform(0.7, 1.3))
        o = int(answered * output * rng.uniform(0.7, 1.3))
        t = int(answered * thoughts * rng.uniform(0.5, 1.5))
        out.append({"key_id": row["key_id"], "date": row["date"], "model": model,
                    "request_count": requests, "success_count": ok, "failure_count": fail,
                    "rate_limit_count": limited, "avg_response_time": latency,
                    "prompt_tokens": p, "output_tokens": o, "thoughts_tokens": t,
                    "cached_tokens": int(p * cached * rng.uniform(0.5, 1.5)),
                    "total_tokens": p + o + t})
    if row["request_count"] and row["avg_response_time"] is not None:
        row["avg_response_time"] = weighted / row["request_count"]
    return out


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
    per_model = [m for r in rows for m in model_stats(r, rng)]
    for chunk in range(0, len(rows), 5000):
        session.execute(insert(UsageStat), rows[chunk:chunk + 5000])
    for chunk in range(0, len(per_model), 5000):
        session.execute(insert(ModelUsageStat), per_model[chunk:chunk + 5000])
    _sync_key_counters(session, [p.key_id for p in profiles], now)
    by_role = {p.role: p for p in reversed(profiles)}
    history = _lifecycle_events(session, by_role, now)
    quota, quota_audit = _quota_at_limit(session, per_model, profiles, now)
    history += quota_audit
    history += _history_rows(session, profiles, start, now, audit_rows - len(history), rng)
    if history:
        session.execute(insert(AuditLog), history)
    session.flush()
    return DemoSummary(batch, keys, len(rows), len(per_model), len(history), start, end,
                       *(by_role[r].name if r in by_role else None
                         for r in ("failing", "rate_limited", "idle")), quota)


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


def _quota_at_limit(session: Session, per_model: list[dict[str, Any]],
                    profiles: list[KeyProfile], now: dt.datetime
                    ) -> tuple[tuple[str, str, int] | None, list[dict[str, Any]]]:
    """DEMO_QUOTA's project at its requests-per-day limit for its model: the pool's count
    for the current Pacific day (gemini_quota_usage, window 'd' from Pacific midnight as
    naive UTC) is today's traffic of that project and model, and the limit equals it."""
    project, model = DEMO_QUOTA
    ids = {p.key_id for i, p in enumerate(profiles) if GROUPS[i % 3] == project}
    if not ids:
        return None, []
    today = [r for r in per_model if r["key_id"] in ids and r["model"] == model
             and r["date"] == now.date()]
    requests = max(sum(r["request_count"] for r in today), 1)
    tokens = sum(r["total_tokens"] for r in today)
    window = pacific_day_start(now.replace(tzinfo=dt.UTC))
    session.execute(text("""
INSERT INTO gemini_quota_limits (group_label, model, rpd) VALUES (:g, :m, :rpd)
ON CONFLICT (group_label, model) DO UPDATE SET rpd = excluded.rpd, updated_at = now()"""),
                    {"g": project, "m": model, "rpd": requests})
    session.execute(text("""
INSERT INTO gemini_quota_usage (project, model, window_kind, window_start, requests, tokens)
VALUES (:p, :m, 'd', :w, :r, :t)
ON CONFLICT (project, model, window_kind, window_start)
  DO UPDATE SET requests = excluded.requests, tokens = excluded.tokens"""),
                    {"p": project, "m": model, "w": window, "r": requests, "t": tokens})
    audit = []
    quota_set = getattr(Action, "QUOTA_SET", None)  # lib/quotas' verb, where it is merged
    if quota_set is not None:
        audit.append({"id": uuid.uuid4(), "created_at": now, **audit_row(
            session, action=quota_set, details={
                "demo": True, "group_label": project, "model": model, "before": None,
                "after": {"rpm": None, "tpm": None, "rpd": requests}})})
    return (project, model, requests), audit


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
