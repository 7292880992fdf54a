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
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db.session import Actor, session_scope
from lib.crypto import KeyDecryptionError, MasterKey, decrypt_api_key
from lib.errors import GeminiKeysError
from lib.pool_policy import (
    DEFAULT_POLICY,
    FailurePolicy,
    Verdict,
    apply_cooldown,
    auto_disable,
    disable_reason,
    finite_latency,
    judge,
    to_gemini_error,
)

__all__ = ["ACQUIRE_SQL", "FailurePolicy", "KeyDecryptionError", "KeyPool", "Lease",
           "NoKeyAvailable", "POOL_ACTOR", "pool_status"]

log = logging.getLogger("gemini_keys.pool")
POOL_ACTOR = Actor.service("pool")

_NOW = "(now() AT TIME ZONE 'UTC')"
_POOL_FILTER = ("is_active IS TRUE AND archived_at IS NULL AND deleted_at IS NULL"
                f" AND (cooldown_until IS NULL OR cooldown_until <= {_NOW})")
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
    "gk_pool_acquire": _ACQUIRE.format(now=_NOW, filter=_POOL_FILTER, skip="SKIP LOCKED"),
    # All candidates locked by concurrent acquirers: wait for one instead of failing.
    # Rows changed meanwhile are re-checked against the filter, so this too never returns
    # a key that is cooling down or inactive.
    "gk_pool_acquire_wait": _ACQUIRE.format(now=_NOW, filter=_POOL_FILTER, skip=""),
    # $1 key, $2 success, $3 failure, $4 rate limited (0/1 each), $5 latency ms,
    # $6 consecutive failures: -1 reset, +1 count, 0 leave.
    "gk_pool_record": f"""
WITH stats AS (
  INSERT INTO gemini_key_usage_stats AS s
    (key_id, date, request_count, success_count, failure_count, rate_limit_count,
     avg_response_time)
  VALUES ($1, {_NOW}::date, 1, $2, $3, $4, $5)
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
_ARGS = {"gk_pool_record": "(%s, %s, %s, %s, %s, %s)"}
_SERVICE = "SET LOCAL ROLE service_role; SET LOCAL synchronous_commit = off; "
_AVAILABILITY = f"""
SELECT count(*),
       count(*) FILTER (WHERE cooldown_until IS NULL OR cooldown_until <= {_NOW}),
       min(cooldown_until) FILTER (WHERE cooldown_until > {_NOW})
  FROM gemini_api_keys WHERE is_active IS TRUE AND archived_at IS NULL AND deleted_at IS NULL
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


@dataclass(eq=False)
class Lease:
    """One key, handed out for one call. api_key lives only in memory (never in repr)."""

    key_id: uuid.UUID
    name: str
    api_key: str = field(repr=False)
    priority: int
    group_label: str | None
    recorded: bool = field(default=False, repr=False)


class _Connections:
    """A few autocommit connections kept for the pool's one-round-trip statements.

    Taken from the engine (so db/ still makes every connection) and detached from its
    pool: no pre-ping and no isolation-level switch per call, which would cost more round
    trips than the statement itself. A connection that fails is closed, never reused; an
    idle one found dead is replaced once (the statement never reached the server).
    """

    def __init__(self, engine: Engine, keep: int = 8) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[tuple[Any, set[str]]] = []
        self._lock = threading.Lock()

    def _new(self) -> tuple[Any, set[str]]:
        fairy = self._engine.raw_connection()
        fairy.detach()
        connection = fairy.dbapi_connection
        connection.autocommit = True
        return connection, set()

    @contextmanager
    def get(self) -> Iterator[tuple[Any, set[str]]]:
        with self._lock:
            entry = self._idle.pop() if self._idle else None
        if entry is not None and entry[0].closed:
            entry = None
        stale_possible = entry is not None
        entry = entry or self._new()
        try:
            yield entry
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            entry[0].close()
            if not stale_possible:
                raise
            # One retry on a fresh connection belongs to the caller; see KeyPool._execute.
            raise _StaleConnection from None
        except BaseException:
            if entry[0].closed or entry[0].status != psycopg2.extensions.STATUS_READY:
                entry[0].close()
            else:
                self._put(entry)
            raise
        else:
            self._put(entry)

    def _put(self, entry: tuple[Any, set[str]]) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(entry)
                return
        entry[0].close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()


class _StaleConnection(Exception):
    """An idle connection had died (server restart, idle timeout)."""


class KeyPool:
    """Thread-safe; share one per process. Connects as the service identity, not a user."""

    def __init__(self, runtime: Any | None = None, *, policy: FailurePolicy | None = None,
                 engine: Engine | None = None, master_key: MasterKey | None = None) -> None:
        """runtime: a lib.runtime.Runtime; by default built from the app's configuration
        (without migrating: a service never changes the schema)."""
        if engine is None or master_key is None:
            if runtime is None:
                from lib.runtime import build_runtime

                runtime = build_runtime(apply_migrations=False)
            engine = engine or runtime.engine
            master_key = master_key or runtime.master_key
        self.engine: Engine = engine
        self._master = master_key
        self.policy = policy or DEFAULT_POLICY
        self._connections = _Connections(engine)

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
                    cursor.execute(_SERVICE + f"EXECUTE {name}{_ARGS.get(name, '')}", params)
                    return cursor.fetchall()
            except _StaleConnection:
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

    def acquire(self) -> Lease:
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
            key_id, name, encrypted_key, iv, tag, version, priority, group_label = rows[0]
            key_id = key_id if isinstance(key_id, uuid.UUID) else uuid.UUID(str(key_id))
            try:
                api_key = decrypt_api_key(
                    self._master, key_id=key_id, key_name=name, encrypted_key=encrypted_key,
                    encryption_iv=iv, encryption_tag=tag, master_key_version=version)
            except KeyDecryptionError as error:
                failures += 1
                self._disable_undecryptable(key_id, error)
                if failures >= self.policy.max_decryption_failures:
                    raise
                continue
            return Lease(key_id, name, api_key, priority, group_label)

    def _disable_undecryptable(self, key_id: uuid.UUID, error: KeyDecryptionError) -> None:
        log.error("key pool: %s; key deactivated", error)
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            auto_disable(session, key_id, reason="decryption failed", trigger="acquire",
                         note=error.reason)

    def _availability(self) -> tuple[int, int, datetime | None]:
        """(active keys, of which ready now, earliest cooldown end): only when none was
        handed out, so the common path stays one round trip."""
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SET LOCAL ROLE service_role")
            row = conn.exec_driver_sql(_AVAILABILITY).one()
            conn.rollback()
        return row[0], row[1], row[2]

    # -- record ------------------------------------------------------------------------------

    def record(self, lease: Lease, outcome: str, latency_ms: float,
               error: Any = None) -> Verdict:
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
            if verdict.disable_reason:
                auto_disable(session, lease.key_id, reason=verdict.disable_reason,
                             error=verdict.error)
            elif over_limit:
                last = disable_reason(verdict.error) if verdict.error else "failure"
                auto_disable(session, lease.key_id,
                             reason=f"{limit} consecutive failures (last: {last})",
                             error=verdict.error, min_consecutive_failures=limit)
            if verdict.cooldown_until:
                apply_cooldown(session, lease.key_id, until=verdict.cooldown_until,
                               group_label=lease.group_label,
                               whole_group=verdict.cooldown_group, error=verdict.error)

    @contextmanager
    def lease(self) -> Iterator[Lease]:
        """acquire(), time the body, record success, or failure if the body raises.

        The body may call record() itself (e.g. for a 429 it handled); then nothing more
        is recorded. The exception is classified like record()'s error argument.
        """
        lease = self.acquire()
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
    from lib.gemini import GeminiError

    # KeyboardInterrupt, cancellation...: counted as a failure, never held against the key.
    return GeminiError(kind="network_error", message=f"interrupted: {type(exc).__name__}")


@dataclass(frozen=True)
class KeyState:
    """One live key as the pool sees it (for `pool-status` and pages)."""

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
    def state(self) -> str:
        if self.archived:
            return "archived"
        if not self.is_active:
            return "disabled"
        if self.cooldown_until and self.cooldown_until > datetime.now(UTC).replace(tzinfo=None):
            return "cooling"
        return "ready"


def pool_status(session: Session) -> list[KeyState]:
    """Every non-deleted key in pool order, with today's (UTC) counters."""
    rows = session.execute(text(f"""
SELECT k.id, k.name, k.priority, k.group_label, k.is_active IS TRUE, k.archived_at IS NOT NULL,
       k.cooldown_until, k.disabled_reason, k.consecutive_failures, k.last_used,
       COALESCE(s.request_count, 0), COALESCE(s.failure_count, 0),
       COALESCE(s.rate_limit_count, 0), s.avg_response_time
  FROM gemini_api_keys k
  LEFT JOIN gemini_key_usage_stats s ON s.key_id = k.id AND s.date = {_NOW}::date
 WHERE k.deleted_at IS NULL
 ORDER BY k.archived_at IS NOT NULL, k.is_active IS NOT TRUE, k.priority DESC,
          k.last_used ASC NULLS FIRST, lower(k.name)""")).all()
    return [KeyState(*row) for row in rows]
