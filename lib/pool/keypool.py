"""The key pool: services get the best Gemini key and report each call's outcome.

    pool = KeyPool()                       # same configuration as the app, acts as "pool"
    with pool.lease() as lease:            # times the call; an exception records a failure
        call_gemini(lease.api_key)
    # or by hand:
    lease = pool.acquire()
    pool.record(lease, "rate_limited", 812.0, error=(429, response_body))

Selection: active, non-archived, non-deleted keys that are not cooling down; the highest
priority first, within a tier the least recently used (a key just out of a cooldown counts
as used when the cooldown ended). acquire() and record() are each ONE
round trip (a prepared statement per pooled connection), safe under any number of threads
and processes: acquire is `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`, record
one `INSERT … ON CONFLICT (key_id, date) DO UPDATE` that keeps exact counts and an exact
running mean, plus the key's counters, in the same statement.

Stats rows are per UTC day (`date` = the UTC date when the call was recorded), like every
timestamp in the schema. Both statements commit with synchronous_commit = off: a database
crash may forget the last instants of usage counters (it never corrupts them); audited
changes (cooldowns, deactivations) commit normally. What failures do to keys is the
FailurePolicy in lib/pool_policy.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg2
from sqlalchemy import Engine, text

from db.session import Actor, role_prelude, session_scope
from lib.crypto.sealed import KeyDecryptionError, MasterKey, unseal
from lib.errors import GeminiKeysError
from lib.keys.status import ENABLED, USABLE
from lib.keys.writes import apply_cooldown, auto_disable
from lib.pool.connections import Connections, StaleConnection
from lib.pool.gemini_errors import GeminiError, to_gemini_error
from lib.pool.policy import (
    DEFAULT_POLICY,
    FailurePolicy,
    Verdict,
    disable_reason,
    error_details,
    finite_latency,
    judge,
)
from lib.runtime import build_runtime

log = logging.getLogger("gemini_keys.pool")
POOL_ACTOR = Actor.service("pool")

NOW_SQL = "(now() AT TIME ZONE 'UTC')"
_POOL_FILTER = USABLE.sql(None, now=NOW_SQL)
# Walks idx_gemini_keys_pool (priority DESC, GREATEST(last_used, cooldown_until) ASC NULLS
# FIRST, partial on the first three conditions; migration 0004): keys usable now sort
# before keys still cooling, so the first unlocked row is normally the one handed out.
_ACQUIRE = """
UPDATE gemini_api_keys SET last_used = {now}, usage_count = COALESCE(usage_count, 0) + 1
 WHERE id = (SELECT id FROM gemini_api_keys WHERE {filter}
             ORDER BY priority DESC, GREATEST(last_used, cooldown_until) ASC NULLS FIRST
             LIMIT 1 FOR UPDATE {skip})
 RETURNING id, name, encrypted_key, encryption_iv, encryption_tag, master_key_version,
           priority, group_label
"""
_STATEMENTS = {
    "gk_pool_acquire": _ACQUIRE.format(now=NOW_SQL, filter=_POOL_FILTER, skip="SKIP LOCKED"),
    # All candidates locked by concurrent acquirers: wait for one instead of failing.
    # Rows changed meanwhile are re-checked against the filter, so this too never returns
    # a key that is cooling down or inactive.
    "gk_pool_acquire_wait": _ACQUIRE.format(now=NOW_SQL, filter=_POOL_FILTER, skip=""),
    # $1 key, $2 success, $3 failure, $4 rate limited (0/1 each), $5 latency ms,
    # $6 consecutive failures: -1 reset, +1 count, 0 leave.
    "gk_pool_record": f"""
WITH stats AS (
  INSERT INTO gemini_key_usage_stats AS s
    (key_id, date, request_count, success_count, failure_count, rate_limit_count,
     avg_response_time)
  VALUES ($1, {NOW_SQL}::date, 1, $2, $3, $4, $5)
  ON CONFLICT (key_id, date) DO UPDATE SET
    request_count = COALESCE(s.request_count, 0) + 1,
    success_count = COALESCE(s.success_count, 0) + excluded.success_count,
    failure_count = COALESCE(s.failure_count, 0) + excluded.failure_count,
    rate_limit_count = COALESCE(s.rate_limit_count, 0) + excluded.rate_limit_count,
    -- exact running mean, from the row's own values under its row lock
    avg_response_time = CASE
      WHEN s.avg_response_time IS NULL OR COALESCE(s.request_count, 0) <= 0
        THEN excluded.avg_response_time
      ELSE s.avg_response_time
           + (excluded.avg_response_time - s.avg_response_time) / (s.request_count + 1)
    END
  RETURNING request_count
), k AS (
  UPDATE gemini_api_keys SET
    failure_count = COALESCE(failure_count, 0) + $3,
    consecutive_failures = CASE WHEN $6 < 0 THEN 0 ELSE consecutive_failures + $6 END
  -- a success on a key without failures leaves the key row alone
  WHERE id = $1 AND ($3 > 0 OR $6 > 0 OR ($6 < 0 AND consecutive_failures <> 0))
  RETURNING consecutive_failures
)
SELECT stats.request_count, (SELECT consecutive_failures FROM k) FROM stats
""",
}
ACQUIRE_SQL = _STATEMENTS["gk_pool_acquire"]
_PARAM_TYPES = {"gk_pool_record": "(uuid, int, int, int, float8, int)"}
_PRELUDE, _PRELUDE_PARAMS = role_prelude(POOL_ACTOR)
_ARGS = {"gk_pool_record": "(%s, %s, %s, %s, %s, %s)"}
_AVAILABILITY = f"""
SELECT count(*),
       count(*) FILTER (WHERE cooldown_until IS NULL OR cooldown_until <= {NOW_SQL}),
       min(cooldown_until) FILTER (WHERE cooldown_until > {NOW_SQL})
  FROM gemini_api_keys WHERE {ENABLED.sql(None)}
"""


class NoKeyAvailable(GeminiKeysError):
    """No key can be handed out now; next_available_at (aware UTC) says when one frees up."""

    def __init__(self, *, active: int, next_available_at: datetime | None,
                 now: datetime | None = None) -> None:
        self.active = active
        self.next_available_at = next_available_at
        if active == 0:
            message = ("no Gemini API key available: no active key (add one, or reactivate "
                       "one on the Keys page)")
        elif next_available_at is None:
            message = "no Gemini API key available right now; try again shortly"
        else:
            now = now or datetime.now(UTC)
            wait = max(0, round((next_available_at - now).total_seconds()))
            message = (f"no Gemini API key available: all {active} active keys are cooling "
                       f"down; the next one frees up at "
                       f"{next_available_at:%Y-%m-%d %H:%M:%S} UTC (in {_duration(wait)})")
        super().__init__(message)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class _AcquiredRow(NamedTuple):
    """What the acquire statement returns (the columns unseal() reads, and the lease's)."""

    id: uuid.UUID
    name: str
    encrypted_key: str
    encryption_iv: str
    encryption_tag: str
    master_key_version: int
    priority: int
    group_label: str | None


@dataclass(eq=False)
class Lease:
    """One key, handed out for one call. api_key lives only in memory (never in repr)."""

    key_id: uuid.UUID
    name: str
    api_key: str = field(repr=False)
    priority: int
    group_label: str | None
    model: str | None = None
    recorded: bool = field(default=False, repr=False)


class KeyPool:
    """Thread-safe; share one per process. Connects as the service identity, not a user."""

    def __init__(self, runtime: Any | None = None, *, policy: FailurePolicy | None = None,
                 engine: Engine | None = None, master_key: MasterKey | None = None) -> None:
        """runtime: a lib.runtime.Runtime; by default built from the app's configuration
        (without migrating: a service never changes the schema)."""
        if engine is None or master_key is None:
            if runtime is None:
                runtime = build_runtime(apply_migrations=False)
            engine = engine or runtime.engine
            master_key = master_key or runtime.master_key
        self.engine: Engine = engine
        self._master = master_key
        self.policy = policy or DEFAULT_POLICY
        self._connections = Connections(engine)

    def __repr__(self) -> str:
        return f"KeyPool({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- one round trip ----------------------------------------------------------------------

    def _execute(self, name: str | None, params: tuple = ()) -> list[tuple]:
        """Run a prepared statement as service_role in its own short transaction (one
        round trip); name None runs the baseline SELECT 1 the same way."""
        for attempt in (1, 2):
            try:
                with self._connections.get() as (connection, prepared), \
                        connection.cursor() as cursor:
                    if name is None:
                        cursor.execute("SELECT 1")
                        return cursor.fetchall()
                    if name not in prepared:
                        cursor.execute(f"PREPARE {name}{_PARAM_TYPES.get(name, '')} AS "
                                       + _STATEMENTS[name])
                        prepared.add(name)
                    # Several statements in one message run as one implicit transaction,
                    # so SET LOCAL applies to the EXECUTE and ends with it.
                    cursor.execute(f"{_PRELUDE}; SET LOCAL synchronous_commit = off; "
                                   f"EXECUTE {name}{_ARGS.get(name, '')}",
                                   _PRELUDE_PARAMS + tuple(params))
                    return cursor.fetchall()
            except StaleConnection:
                if attempt == 2:
                    raise psycopg2.OperationalError("lost the database connection") from None
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """The benchmark's baseline: SELECT 1 through exactly the same connections."""
        self._execute(None)

    def close(self) -> None:
        """Close the connections this pool keeps (it opens new ones if used again)."""
        self._connections.close()

    # -- acquire -----------------------------------------------------------------------------

    def acquire(self, model: str | None = None) -> Lease:
        """The best key now; NoKeyAvailable (saying when one frees up) if there is none.

        A key that fails to decrypt is never handed out: it is deactivated (audited,
        reason "decryption failed") and the next key is tried; after
        policy.max_decryption_failures such keys in one call, KeyDecryptionError is raised.
        """
        failures = retries = 0
        while True:
            rows = self._execute("gk_pool_acquire") or self._execute("gk_pool_acquire_wait")
            if not rows:
                active, ready, next_free = self._availability()
                if ready and retries < 3:  # one freed up since: try again
                    retries += 1
                    continue
                raise NoKeyAvailable(
                    active=active,
                    next_available_at=next_free.replace(tzinfo=UTC) if next_free else None)
            row = _AcquiredRow(*rows[0])
            try:
                api_key = unseal(self._master, row)
            except KeyDecryptionError as error:
                failures += 1
                self._disable_undecryptable(row.id, error)
                if failures >= self.policy.max_decryption_failures:
                    raise
                continue
            return Lease(row.id, row.name, api_key, row.priority, row.group_label, model)

    def _disable_undecryptable(self, key_id: uuid.UUID, error: KeyDecryptionError) -> None:
        log.error("key pool: %s; key deactivated", error)
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            auto_disable(session, key_id, reason="decryption failed", trigger="acquire",
                         note=error.reason)

    def _availability(self) -> tuple[int, int, datetime | None]:
        """(active keys, of which ready now, earliest cooldown end): only when none was
        handed out, so the common path stays one round trip."""
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            row = session.execute(text(_AVAILABILITY)).one()
        return row[0], row[1], row[2]

    # -- record ------------------------------------------------------------------------------

    def record(self, lease: Lease, outcome: str, latency_ms: float,
               error: Any = None, usage: dict[str, Any] | None = None) -> Verdict:
        """Count one call of `lease`'s key: outcome success / failure / rate_limited / invalid.

        error may be a GeminiError, an exception, an HTTP status, or (status, body): it is
        classified (lib.gemini.classify_error) and may refine the outcome (a 429 counts as
        rate_limited, a 400 API_KEY_INVALID as invalid). Returns what was decided. The
        stats row, failure_count and consecutive_failures change in one statement; any
        automatic change (cooldown, deactivation) follows in its own audited transaction.
        """
        if lease.recorded:
            raise ValueError(f"lease of key {lease.name!r} was already recorded")
        latency = finite_latency(latency_ms)
        verdict = judge(outcome, to_gemini_error(error), policy=self.policy,
                        now=datetime.now(UTC))
        bucket = verdict.outcome
        params = (str(lease.key_id), int(bucket == "success"),
                  int(bucket in ("failure", "invalid")), int(bucket == "rate_limited"),
                  latency, verdict.consecutive)
        rows = self._execute("gk_pool_record", params)
        lease.recorded = True
        consecutive = rows[0][1] if rows else None
        self._apply(lease, verdict, consecutive)
        return verdict

    def _apply(self, lease: Lease, verdict: Verdict, consecutive: int | None) -> None:
        limit = self.policy.max_consecutive_failures
        over_limit = (verdict.consecutive > 0 and limit is not None
                      and consecutive is not None and consecutive >= limit)
        if not (verdict.disable_reason or over_limit or verdict.cooldown_until):
            return
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            details = error_details(verdict.error)
            if verdict.disable_reason:
                auto_disable(session, lease.key_id, reason=verdict.disable_reason,
                             error=details)
            elif over_limit:
                last = disable_reason(verdict.error) if verdict.error else "failure"
                auto_disable(session, lease.key_id,
                             reason=f"{limit} consecutive failures (last: {last})",
                             error=details, min_consecutive_failures=limit)
            if verdict.cooldown_until:
                apply_cooldown(session, lease.key_id, until=verdict.cooldown_until,
                               group_label=lease.group_label,
                               whole_group=verdict.cooldown_group,
                               scope=(verdict.error.quota_scope if verdict.error else None)
                               or "minute", error=details)

    @contextmanager
    def lease(self, model: str | None = None) -> Iterator[Lease]:
        """acquire(), time the body, record success, or failure if the body raises.

        The body may call record() itself (e.g. for a 429 it handled); then nothing more
        is recorded. The exception is classified like record()'s error argument.
        """
        lease = self.acquire(model)
        started = time.perf_counter()
        try:
            yield lease
        except BaseException as exc:
            if not lease.recorded:
                error = exc if isinstance(exc, Exception) else None
                try:
                    self.record(lease, "failure", (time.perf_counter() - started) * 1000,
                                error=error if error is not None else _interrupted(exc))
                except Exception:  # never hide the caller's exception behind ours
                    log.exception("key pool: could not record the failure of %r", lease)
            raise
        if not lease.recorded:
            self.record(lease, "success", (time.perf_counter() - started) * 1000)


def _interrupted(exc: BaseException) -> Any:
    # KeyboardInterrupt, cancellation...: counted as a failure, never held against the key.
    return GeminiError(kind="network_error", message=f"interrupted: {type(exc).__name__}")
