"""The key pool: services get the best Gemini key and report each call's outcome.

    pool = KeyPool()                       # same configuration as the app, acts as "pool"
    with pool.lease("gemini-2.5-flash") as lease:  # times the call; an exception = failure
        response = call_gemini(lease.api_key, model=lease.model)
        lease.usage = response["usageMetadata"]    # optional: counted by record
    # or by hand:
    lease = pool.acquire("gemini-2.5-flash", exclude=already_tried)
    pool.record(lease, "rate_limited", 812.0, error=(429, response_body), usage=None)

Selection: active, non-archived, non-deleted keys that are not cooling down; the highest
priority first, within a tier the key with the fewest calls in flight, then the least
recently used. With a model, keys whose project (group) is cooling down for that model,
has no quota for it, or has reached an admin's rpm / tpm / rpd limit are skipped, and the
request is counted against the project's minute and Pacific day (lib/pool/quota_sql.py).
acquire() and record() are each ONE round trip (a prepared statement per pooled
connection), safe under any number of threads and processes.

Stats rows are per UTC day. Both statements commit with synchronous_commit = off: a
database crash may forget the last instants of usage counters (it never corrupts them);
audited changes (cooldowns, deactivations) commit normally. What failures do to keys is
the FailurePolicy in lib/pool/policy.py.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg2
from sqlalchemy import Engine, text

from db.models import project_of
from db.session import Actor, role_prelude, session_scope
from lib import notify
from lib.clock import pacific_day_start, utc_minute_start
from lib.crypto.sealed import KeyDecryptionError, MasterKey, MasterKeyMismatch, unseal
from lib.keys.status import ENABLED
from lib.keys.writes import apply_cooldown, auto_disable
from lib.notify.events import QUOTA_NEAR_LIMIT
from lib.pool.availability import NoKeyAvailable, explain
from lib.pool.connections import ConnectionLost, Connections
from lib.pool.fail_closed import row_fault
from lib.pool.gemini_errors import GeminiError, to_gemini_error
from lib.pool.model_cooldowns import cool_model
from lib.pool.policy import (
    DEFAULT_POLICY,
    FailurePolicy,
    Verdict,
    disable_reason,
    error_details,
    finite_latency,
    judge,
)
from lib.pool.quota_sql import ARGS, MINUTE_GIVE_BACK, NOW_SQL, PARAM_TYPES, STATEMENTS
from lib.pool.usage import parse_usage
from lib.quotas.reads import limits_near
from lib.runtime import build_runtime

log = logging.getLogger("gemini_keys.pool")
POOL_ACTOR = Actor.service("pool")
DEADLOCK_RETRIES = 5
ACQUIRE_SQL = STATEMENTS["gk_pool_acquire"]
DEFAULT_LEASE_TTL = timedelta(minutes=10)
SWEEP_EVERY_S = 30.0
_PRELUDE, _PRELUDE_PARAMS = role_prelude(POOL_ACTOR)
_ACTIVE = f"SELECT count(*) FROM gemini_api_keys WHERE {ENABLED.sql(None)}"


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
    """One key, handed out for one call. api_key lives only in memory (never in repr).

    project: the key's Google Cloud project (its group, or the key alone). usage: set it
    to the response's usageMetadata (or OpenAI usage) inside lease(); record() counts it.
    """

    key_id: uuid.UUID
    name: str
    api_key: str = field(repr=False)
    priority: int
    group_label: str | None
    model: str | None = None
    project: str = ""
    usage: Any = field(default=None, repr=False)
    acquired_at: float = field(default_factory=time.monotonic, repr=False)
    recorded: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.project = self.project or project_of(self.key_id, self.group_label)


class KeyPool:
    """Thread-safe; share one per process. Connects as the service identity, not a user."""

    def __init__(self, runtime: Any | None = None, *, policy: FailurePolicy | None = None,
                 engine: Engine | None = None, master_key: MasterKey | None = None,
                 lease_ttl: timedelta = DEFAULT_LEASE_TTL, connections: int = 8) -> None:
        """runtime: a lib.runtime.Runtime; by default built from the app's configuration
        (without migrating: a service never changes the schema). lease_ttl: after this, a
        lease never recorded (its caller died) no longer counts as in flight. connections:
        idle connections kept; more threads than this calling at once open and close extra
        ones."""
        if engine is None or master_key is None:
            if runtime is None:
                runtime = build_runtime(apply_migrations=False)
            engine = engine or runtime.engine
            master_key = master_key or runtime.master_key
        self.engine: Engine = engine
        self._master = master_key
        self.policy = policy or DEFAULT_POLICY
        self.lease_ttl = lease_ttl
        self._connections = Connections(engine, keep=connections)
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"KeyPool({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- one round trip ----------------------------------------------------------------------

    def _execute(self, name: str | None, params: tuple = ()) -> list[tuple]:
        """Run a prepared statement as service_role in its own short transaction (one
        round trip); name None runs the baseline SELECT 1 the same way. A lost connection
        (server restart, crash) is retried once on a fresh one; a deadlock or serialization
        failure (processes racing on the same counters) rolled the whole statement back and
        is run again, up to DEADLOCK_RETRIES times."""
        for rerun in range(DEADLOCK_RETRIES + 1):
            try:
                return self._execute_once(name, params)
            except psycopg2.extensions.TransactionRollbackError as error:
                if rerun == DEADLOCK_RETRIES:
                    raise
                log.info("key pool: %s, running %s again", type(error).__name__, name)
                time.sleep(random.uniform(0.001, 0.01) * (rerun + 1))
        raise AssertionError("unreachable")

    def _execute_once(self, name: str | None, params: tuple) -> list[tuple]:
        for attempt in (1, 2):
            try:
                with self._connections.get(fresh=attempt == 2) as (connection, prepared), \
                        connection.cursor() as cursor:
                    if name is None:
                        cursor.execute("SELECT 1")
                        return cursor.fetchall()
                    if name not in prepared:
                        cursor.execute(f"PREPARE {name}{PARAM_TYPES.get(name, '')} AS "
                                       + STATEMENTS[name])
                        prepared.add(name)
                    # Several statements in one message run as one implicit transaction,
                    # so SET LOCAL applies to the EXECUTE and ends with it.
                    cursor.execute(f"{_PRELUDE}; SET LOCAL synchronous_commit = off; "
                                   f"EXECUTE {name}{ARGS.get(name, '')}",
                                   _PRELUDE_PARAMS + tuple(params))
                    return cursor.fetchall() if cursor.description else []
            except ConnectionLost as lost:
                if attempt == 2:
                    raise psycopg2.OperationalError(
                        f"lost the database connection: {lost.__cause__}") from None
                log.warning("key pool: database connection lost (%s); retrying once",
                            type(lost.__cause__).__name__)
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """The benchmark's baseline: SELECT 1 through exactly the same connections."""
        self._execute(None)

    def release_expired(self) -> None:
        """Stop counting leases whose callers never recorded them (past lease_ttl), and
        delete quota windows nothing reads any more (quota_sql.SWEEP). Run by acquire at most
        every SWEEP_EVERY_S seconds per pool, off the one-round-trip path."""
        self._next_sweep = time.monotonic() + SWEEP_EVERY_S
        self._execute("gk_pool_sweep")
        self._announce_quota_pressure()

    def _announce_quota_pressure(self) -> None:
        """Webhooks' "quota near limit": budgets at >= 90 %, read on the sweep's schedule
        (one aggregate query every SWEEP_EVERY_S at most), never on the acquire path."""
        if not notify.wants(QUOTA_NEAR_LIMIT):
            return
        try:
            with session_scope(POOL_ACTOR, engine=self.engine) as session:
                pressures = limits_near(session, fraction=notify.NEAR_LIMIT_SHARE)
            for p in pressures:
                notify.quota_near_limit(p.group_label, p.model, p.limit, p.used,
                                        p.limit_value, p.resets_at)
        except Exception:  # noqa: BLE001 - a notification must never fail an acquire
            log.exception("key pool: could not read quota pressure for the webhooks")

    def close(self) -> None:
        """Close the connections this pool keeps (it opens new ones if used again)."""
        self._connections.close()

    # -- acquire -----------------------------------------------------------------------------

    def acquire(self, model: str | None = None, *, exclude: Iterable[uuid.UUID | str] = ()
                ) -> Lease:
        """The best key now (for `model`, if given); NoKeyAvailable says why not and when.

        exclude: ids of keys not to hand out (those a retrying caller already tried).
        A key that fails to decrypt is never handed out: once the database's check value
        proves this process's master key right, the row is at fault and is deactivated
        (audited) and skipped; otherwise MasterKeyMismatch stops here and nothing is
        disabled. After policy.max_decryption_failures bad rows, KeyDecryptionError.
        """
        model = model or None
        if model is not None and len(model) > 128:
            raise ValueError("model names are at most 128 characters")
        skip = [str(k) for k in exclude]
        ttl = self.lease_ttl.total_seconds()
        if time.monotonic() >= self._next_sweep:
            self.release_expired()
        failures = retries = 0
        while True:
            now = datetime.now(UTC)
            if model is None:
                params: tuple = (skip, ttl)
                names = ("gk_pool_acquire", "gk_pool_acquire_wait")
            else:
                params = (model, skip, ttl, utc_minute_start(now), pacific_day_start(now))
                names = ("gk_pool_acquire_model", "gk_pool_acquire_model_wait")
            rows = self._taken(model, params, self._execute(names[0], params))
            rows = rows or self._taken(model, params, self._execute(names[1], params))
            if not rows:
                refusal = self._refusal(model, skip, now)
                if refusal is None and retries < 3:  # one freed up (or a race was lost)
                    retries += 1
                    continue
                raise refusal or NoKeyAvailable(active=1, next_available_at=None, model=model)
            row = _AcquiredRow(*rows[0])
            try:
                api_key = unseal(self._master, row)
            except (KeyDecryptionError, MasterKeyMismatch) as error:
                failures += 1
                self._disable_undecryptable(row, error)
                skip.append(str(row.id))
                if failures >= self.policy.max_decryption_failures:
                    if isinstance(error, KeyDecryptionError):
                        raise
                    raise KeyDecryptionError(row.id, row.name, str(error)) from None
                continue
            return Lease(row.id, row.name, api_key, row.priority, row.group_label, model)

    def _taken(self, model: str | None, params: tuple, rows: list[tuple]) -> list[tuple]:
        """The key row handed out, if any; gives back a minute its day refused."""
        if model is None or not rows:
            return rows
        *key, give_back = rows[0]
        if key[0] is not None:
            return [tuple(key)]
        if give_back is not None:
            with session_scope(POOL_ACTOR, engine=self.engine) as session:
                session.execute(text(MINUTE_GIVE_BACK), {
                    "project": give_back, "model": model, "minute": params[3]})
        return []

    def _disable_undecryptable(self, row: _AcquiredRow,
                               error: KeyDecryptionError | MasterKeyMismatch) -> None:
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            fault = row_fault(session, self._master, error)  # raises if the process is wrong
            log.error("key pool: cannot decrypt key %r (%s): %s; key deactivated",
                      row.name, row.id, fault)
            auto_disable(session, row.id, reason="decryption failed", trigger="acquire",
                         note=fault)

    def _refusal(self, model: str | None, exclude: list[str],
                 now: datetime) -> NoKeyAvailable | None:
        """Why nothing was handed out (only then, so the common path stays one round trip);
        None when a key is usable again."""
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            active = session.scalar(text(_ACTIVE))
            if not active:
                return NoKeyAvailable(active=0, next_available_at=None, model=model)
            return explain(session, model=model, exclude=exclude, active=active, now=now)

    # -- record ------------------------------------------------------------------------------

    def record(self, lease: Lease, outcome: str, latency_ms: float,
               error: Any = None, usage: Any = None) -> Verdict:
        """Count one call of `lease`'s key: outcome success / failure / rate_limited / invalid.

        error may be a GeminiError, an exception, an HTTP status, or (status, body): it is
        classified and may refine the outcome (a 429 counts as rate_limited, a 400
        API_KEY_INVALID as invalid). usage: Gemini's usageMetadata or OpenAI's usage (else
        lease.usage). One statement writes the spec's daily stats, the per-model stats with
        tokens, the project's token windows and the key's counters, and releases the lease;
        any automatic change (cooldown, deactivation) follows in its own audited transaction.
        """
        if lease.recorded:
            raise ValueError(f"lease of key {lease.name!r} was already recorded")
        latency = finite_latency(latency_ms)
        now = datetime.now(UTC)
        verdict = judge(outcome, to_gemini_error(error), policy=self.policy, now=now)
        tokens = parse_usage(usage if usage is not None else lease.usage)
        bucket = verdict.outcome
        alive = time.monotonic() - lease.acquired_at < self.lease_ttl.total_seconds()
        params = (str(lease.key_id), int(bucket == "success"),
                  int(bucket in ("failure", "invalid")), int(bucket == "rate_limited"),
                  latency, verdict.consecutive, lease.model or "", lease.project,
                  tokens.prompt, tokens.output, tokens.thoughts, tokens.cached, tokens.total,
                  tokens.quota_tokens, utc_minute_start(now), pacific_day_start(now),
                  int(alive))
        rows = self._execute("gk_pool_record", params)
        lease.recorded = True
        consecutive = rows[0][1] if rows else None
        self._apply(lease, verdict, consecutive)
        return verdict

    def _apply(self, lease: Lease, verdict: Verdict, consecutive: int | None) -> None:
        limit = self.policy.max_consecutive_failures
        over_limit = (verdict.consecutive > 0 and limit is not None
                      and consecutive is not None and consecutive >= limit)
        error = verdict.error
        per_model = error is not None and error.kind == "rate_limited" and bool(error.model)
        if not (verdict.disable_reason or over_limit or verdict.cooldown_until
                or (per_model and error.no_quota)):
            return
        with session_scope(POOL_ACTOR, engine=self.engine) as session:
            details = error_details(error)
            if verdict.disable_reason:
                auto_disable(session, lease.key_id, reason=verdict.disable_reason,
                             error=details)
            elif over_limit:
                last = disable_reason(error) if error else "failure"
                auto_disable(session, lease.key_id,
                             reason=f"{limit} consecutive failures (last: {last})",
                             error=details, min_consecutive_failures=limit)
            if per_model:
                # Gemini's quotas are per project x model: the model rests, not the key.
                cool_model(session, key_id=lease.key_id, project=lease.project,
                           model=error.model, until=verdict.cooldown_until,
                           no_quota=error.no_quota, scope=error.quota_scope or "minute",
                           error=details)
            elif verdict.cooldown_until:
                apply_cooldown(session, lease.key_id, until=verdict.cooldown_until,
                               group_label=lease.group_label,
                               whole_group=verdict.cooldown_group,
                               scope=(error.quota_scope if error else None) or "minute",
                               error=details)

    @contextmanager
    def lease(self, model: str | None = None, *, exclude: Iterable[uuid.UUID | str] = ()
              ) -> Iterator[Lease]:
        """acquire(), time the body, record success, or failure if the body raises.

        The body may call record() itself (e.g. for a 429 it handled); then nothing more
        is recorded. Set lease.usage in the body to count the call's tokens.
        """
        lease = self.acquire(model, exclude=exclude)
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


__all__ = ["ACQUIRE_SQL", "NOW_SQL", "POOL_ACTOR", "KeyPool", "Lease", "NoKeyAvailable"]
