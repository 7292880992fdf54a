"""The pool's one-round-trip statements: acquire (with and without a model) and record.

acquire walks idx_gemini_keys_pool (priority DESC, in_flight ASC, GREATEST(last_used,
cooldown_until) ASC NULLS FIRST; migration 0012): within a tier the idle keys come first,
least recently used first; keys still cooling sort behind the usable ones of their
in-flight count. With a model it also skips keys whose project is cooling down for the
model, has no quota for it, or has reached an rpm / tpm / rpd limit, and counts the request
in the project's minute and Pacific-day windows in the same statement.

Budgets are exact for requests under any number of processes: the window rows are
incremented by a conditional upsert (`... DO UPDATE ... WHERE requests < limit`), which
PostgreSQL evaluates on the latest row version under its lock, and the key is handed out
only if both windows counted it. A race lost that way hands out nothing (the caller
retries with a fresh snapshot); a minute counted for a request its day then refused is
given back by the caller. Tokens are only known at record, so tpm can be exceeded by the
calls in flight.
"""

from __future__ import annotations

from db.models import PROJECT_SQL
from lib.keys.status import USABLE

NOW_SQL = "(now() AT TIME ZONE 'UTC')"
PROJECT = PROJECT_SQL.format(k="k.")
_USABLE = USABLE.sql("k", now=NOW_SQL)
_ORDER = "k.priority DESC, k.in_flight ASC, GREATEST(k.last_used, k.cooldown_until) ASC NULLS FIRST"
_RETURNING = """RETURNING k.id, k.name, k.encrypted_key, k.encryption_iv, k.encryption_tag,
           k.master_key_version, k.priority, k.group_label"""
# A count whose leases all expired (their callers died) starts again from this lease.
_TAKE = f"""last_used = {NOW_SQL}, usage_count = COALESCE(k.usage_count, 0) + 1,
      in_flight = CASE WHEN k.lease_expires_at < {NOW_SQL} THEN 1 ELSE k.in_flight + 1 END,
      lease_expires_at = {NOW_SQL} + make_interval(secs => {{ttl}})"""

# $1 exclude uuid[], $2 lease ttl (s)
_PLAIN = f"""
UPDATE gemini_api_keys k SET {_TAKE.format(ttl="$2")}
 WHERE k.id = (SELECT k.id FROM gemini_api_keys k WHERE {_USABLE} AND k.id <> ALL($1)
               ORDER BY {_ORDER} LIMIT 1 FOR UPDATE {{skip}})
 {_RETURNING}
"""


def _used(kind: str, column: str, start: str) -> str:
    return (f"COALESCE((SELECT u.{column} FROM gemini_quota_usage u WHERE u.project = {PROJECT}"
            f" AND u.model = $1 AND u.window_kind = '{kind}' AND u.window_start = {start}), 0)")


# $1 model, $2 exclude uuid[], $3 lease ttl (s), $4 this UTC minute, $5 this Pacific day
_MODEL = f"""
WITH pick AS (
  SELECT k.id, {PROJECT} AS project, l.rpm, l.rpd
    FROM gemini_api_keys k
    LEFT JOIN gemini_quota_limits l ON l.group_label = NULLIF(k.group_label, '') AND l.model = $1
   WHERE {_USABLE} AND k.id <> ALL($2)
     AND NOT EXISTS (SELECT 1 FROM gemini_model_cooldowns c
                      WHERE c.project = {PROJECT} AND c.model = $1
                        AND (c.no_quota OR c.cooldown_until > {NOW_SQL}))
     AND (l.group_label IS NULL OR (
           (l.rpm IS NULL OR {_used('m', 'requests', '$4')} < l.rpm)
       AND (l.tpm IS NULL OR (l.tpm > 0 AND {_used('m', 'tokens', '$4')} < l.tpm))
       AND (l.rpd IS NULL OR {_used('d', 'requests', '$5')} < l.rpd)))
   ORDER BY {_ORDER} LIMIT 1 FOR UPDATE OF k {{skip}}
), minute AS (
  INSERT INTO gemini_quota_usage AS u (project, model, window_kind, window_start, requests)
  SELECT project, $1, 'm', $4, 1 FROM pick
  ON CONFLICT (project, model, window_kind, window_start) DO UPDATE SET requests = u.requests + 1
   WHERE (SELECT rpm FROM pick) IS NULL OR u.requests < (SELECT rpm FROM pick)
  RETURNING u.project
), day AS (
  INSERT INTO gemini_quota_usage AS u (project, model, window_kind, window_start, requests)
  SELECT project, $1, 'd', $5, 1 FROM minute
  ON CONFLICT (project, model, window_kind, window_start) DO UPDATE SET requests = u.requests + 1
   WHERE (SELECT rpd FROM pick) IS NULL OR u.requests < (SELECT rpd FROM pick)
  RETURNING u.project
), taken AS (
  UPDATE gemini_api_keys k SET {_TAKE.format(ttl="$3")}
   WHERE k.id = (SELECT id FROM pick) AND EXISTS (SELECT 1 FROM day)
   {_RETURNING}
)
-- One row always: the key (NULLs when none), and the project whose minute was counted
-- although its day refused (the caller gives that request back; see MINUTE_GIVE_BACK).
SELECT taken.*, CASE WHEN taken.id IS NULL THEN (SELECT project FROM minute) END
  FROM (SELECT 1) AS one LEFT JOIN taken ON true
"""
# A minute counted for a request its day refused: given back (only on that rare path).
MINUTE_GIVE_BACK = """
UPDATE gemini_quota_usage SET requests = requests - 1
 WHERE project = :project AND model = :model AND window_kind = 'm'
   AND window_start = :minute AND requests > 0
"""

_STATS_COUNTS = """
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
    END"""


def _quota_tokens(kind: str, start: str) -> str:
    return f"""
  INSERT INTO gemini_quota_usage AS u (project, model, window_kind, window_start, tokens)
  SELECT $8, $7, '{kind}', {start}, $14 WHERE $7 <> '' AND $14 > 0
  ON CONFLICT (project, model, window_kind, window_start)
    DO UPDATE SET tokens = u.tokens + excluded.tokens
  RETURNING 1"""


# $1 key, $2 success, $3 failure, $4 rate limited (0/1 each), $5 latency ms,
# $6 consecutive failures (-1 reset, +1 count, 0 leave), $7 model ('' none), $8 project,
# $9..$13 prompt, output, thoughts, cached, total tokens, $14 quota (input) tokens,
# $15 this UTC minute, $16 this Pacific day, $17 in-flight calls to release (0/1).
RECORD = f"""
WITH stats AS (
  INSERT INTO gemini_key_usage_stats AS s
    (key_id, date, request_count, success_count, failure_count, rate_limit_count,
     avg_response_time)
  VALUES ($1, {NOW_SQL}::date, 1, $2, $3, $4, $5)
  ON CONFLICT (key_id, date) DO UPDATE SET {_STATS_COUNTS}
  RETURNING request_count
), model_stats AS (
  INSERT INTO gemini_key_model_usage_stats AS s
    (key_id, date, model, request_count, success_count, failure_count, rate_limit_count,
     avg_response_time, prompt_tokens, output_tokens, thoughts_tokens, cached_tokens,
     total_tokens)
  VALUES ($1, {NOW_SQL}::date, $7, 1, $2, $3, $4, $5, $9, $10, $11, $12, $13)
  ON CONFLICT (key_id, date, model) DO UPDATE SET {_STATS_COUNTS},
    prompt_tokens = s.prompt_tokens + excluded.prompt_tokens,
    output_tokens = s.output_tokens + excluded.output_tokens,
    thoughts_tokens = s.thoughts_tokens + excluded.thoughts_tokens,
    cached_tokens = s.cached_tokens + excluded.cached_tokens,
    total_tokens = s.total_tokens + excluded.total_tokens
  RETURNING 1
), minute_tokens AS ({_quota_tokens('m', '$15')}
), day_tokens AS ({_quota_tokens('d', '$16')}
), k AS (
  UPDATE gemini_api_keys SET
    failure_count = COALESCE(failure_count, 0) + $3,
    consecutive_failures = CASE WHEN $6 < 0 THEN 0 ELSE consecutive_failures + $6 END,
    in_flight = GREATEST(in_flight - $17, 0)
  -- a success on a key without failures and nothing to release leaves the key row alone
  WHERE id = $1 AND ($3 > 0 OR $6 > 0 OR ($6 < 0 AND consecutive_failures <> 0)
                     OR ($17 > 0 AND in_flight > 0))
  RETURNING consecutive_failures
)
SELECT stats.request_count, (SELECT consecutive_failures FROM k) FROM stats
"""

# Quota windows nothing reads any more go: the pool and the pages read only this minute's
# and this Pacific day's. Minute windows are kept an hour, day windows eight days (for a look
# by hand); each sweep deletes at most PRUNE_BATCH of each kind, so a table left growing is
# emptied over a few sweeps.
MINUTE_WINDOWS_KEPT = "1 hour"
DAY_WINDOWS_KEPT = "8 days"
PRUNE_BATCH = 5000
# In one round trip: leases never recorded (their callers died) stop counting once expired,
# and old quota windows are deleted.
SWEEP = f"""
WITH released AS (
  UPDATE gemini_api_keys SET in_flight = 0
   WHERE in_flight > 0 AND lease_expires_at < {NOW_SQL}
  RETURNING 1
), old AS (
  (SELECT ctid FROM gemini_quota_usage
    WHERE window_kind = 'm' AND window_start < {NOW_SQL} - interval '{MINUTE_WINDOWS_KEPT}'
    LIMIT {PRUNE_BATCH})
  UNION ALL
  (SELECT ctid FROM gemini_quota_usage
    WHERE window_kind = 'd' AND window_start < {NOW_SQL} - interval '{DAY_WINDOWS_KEPT}'
    LIMIT {PRUNE_BATCH})
), pruned AS (
  DELETE FROM gemini_quota_usage WHERE ctid IN (SELECT ctid FROM old) RETURNING 1
)
SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM pruned)
"""

STATEMENTS = {
    "gk_pool_sweep": SWEEP,
    "gk_pool_acquire": _PLAIN.format(skip="SKIP LOCKED"),
    # All candidates locked by concurrent acquirers: wait for one instead of failing.
    # Rows changed meanwhile are re-checked against the filter.
    "gk_pool_acquire_wait": _PLAIN.format(skip=""),
    "gk_pool_acquire_model": _MODEL.format(skip="SKIP LOCKED"),
    "gk_pool_acquire_model_wait": _MODEL.format(skip=""),
    "gk_pool_record": RECORD,
}
PARAM_TYPES = {
    "gk_pool_acquire": "(uuid[], float8)",
    "gk_pool_acquire_wait": "(uuid[], float8)",
    "gk_pool_acquire_model": "(text, uuid[], float8, timestamp, timestamp)",
    "gk_pool_acquire_model_wait": "(text, uuid[], float8, timestamp, timestamp)",
    "gk_pool_record": "(uuid, int, int, int, float8, int, text, text, bigint, bigint, bigint,"
                      " bigint, bigint, bigint, timestamp, timestamp, int)",
}
# psycopg2 sends a list of str as text[]: say which arguments are uuid[].
ARGS = {name: "(" + ", ".join("%s::uuid[]" if t.strip() == "uuid[]" else "%s"
                              for t in types.strip("()").split(",")) + ")"
        for name, types in PARAM_TYPES.items()}
