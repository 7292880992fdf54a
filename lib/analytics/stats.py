"""Usage analytics over gemini_key_usage_stats, aggregated in SQL.

Conventions every query here shares:
- `date` is the UTC day the key pool recorded the request on; ranges are inclusive.
- success + failure + rate_limited = requests (the pool records exactly one outcome).
- Average latency is weighted by request count: sum(avg * requests) / sum(requests), over the
  rows that carry a latency. The mean of per-key means would let a key with 3 requests weigh
  as much as one with 30,000.
- Daily series cover every day of the range: a day without traffic is a row of zeros (its
  latency and success rate are None, since there is nothing to average), never a gap.
- Filters: keys (ids), group label, and whether archived or tombstoned keys count. Archived
  keys count by default, so archiving a key does not rewrite the history of past days.
- Models: with `model` set, every query reads the per-model table
  gemini_key_model_usage_stats (migration 0009) for that model instead of the spec's table;
  model '' is a call recorded without a model ("unspecified"). Tokens live only there.
- Speed: the exact rollups of migration 0013 answer the heavy reads: sums per day over all
  keys come from a striped day rollup, sums per key over any range from running totals per
  key (two index probes per key). Only the daily series under a key/group/archive filter
  read the stats rows themselves. Same numbers either way.
All reads run in the caller's session, so RLS applies to the signed-in admin.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.clock import utc_now, utc_today
from lib.errors import InvalidInput
from lib.keys.status import IN_SERVICE, RETIRED, KeyStatus, key_status
from lib.token_counts import Tokens

MAX_RANGE_DAYS = 3660  # ten years: a typo like 2206 for 2026 should fail, not run for minutes
KeySort = Literal["failures", "rate_limit_share", "failure_rate", "requests", "latency"]
HeatmapMetric = Literal["requests", "failures", "rate_limited", "failure_rate"]



@dataclass(frozen=True)
class StatsFilter:
    """What to aggregate: an inclusive UTC date range plus optional key/group filters."""

    start: dt.date
    end: dt.date
    key_ids: tuple[uuid.UUID, ...] = ()
    group: str | None = None
    include_archived: bool = True
    model: str | None = None  # None: every model (the spec's table); '' is "unspecified"

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise InvalidInput(f"the range starts ({self.start}) after it ends ({self.end})")
        if self.days > MAX_RANGE_DAYS:
            raise InvalidInput(f"the range covers {self.days} days; at most {MAX_RANGE_DAYS}")

    @classmethod
    def last_days(cls, days: int, *, today: dt.date | None = None, **filters: Any) -> StatsFilter:
        end = today or utc_today()
        return cls(end - dt.timedelta(days=days - 1), end, **filters)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def by_key(self) -> bool:
        """Whether the filter restricts keys (then the per-day rollups cannot answer)."""
        return bool(self.key_ids) or self.group is not None or not self.include_archived

    def previous(self) -> StatsFilter:
        """The period of equal length just before this one (for KPI deltas)."""
        return replace(self, start=self.start - dt.timedelta(days=self.days),
                       end=self.start - dt.timedelta(days=1))


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    rate_limited: int = 0
    avg_latency_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def rate_limit_share(self) -> float | None:
        return self.rate_limited / self.requests if self.requests else None


@dataclass(frozen=True)
class DayRow(Totals):
    day: dt.date = field(default=dt.date.min)


@dataclass(frozen=True)
class KeyRow(Totals):
    key_id: uuid.UUID | None = None
    name: str = ""
    group_label: str | None = None
    priority: int | None = None
    is_active: bool = True
    archived: bool = False
    deleted: bool = False
    disabled_reason: str | None = None
    cooldown_until: dt.datetime | None = None

    def status(self, now: dt.datetime | None = None) -> KeyStatus:
        return key_status(deleted=self.deleted, archived=self.archived, is_active=self.is_active,
                          disabled_reason=self.disabled_reason,
                          cooldown_until=self.cooldown_until, now=now or utc_now())


# -- SQL building blocks ---------------------------------------------------------------------

def sums_sql(where: str = "TRUE", prefix: str = "", *, latency_parts: bool = False) -> str:
    """The aggregate columns over stats rows `s`, restricted to `where`.

    Latency: sum(avg × requests) skips rows without a latency by itself (NULL product), and
    the denominator counts only the requests of rows that have one. With latency_parts, the
    numerator and denominator come as lat_num / lat_den instead of their quotient.
    """
    cond = "" if where == "TRUE" else f" FILTER (WHERE {where})"
    has_latency = f"({where}) AND " if where != "TRUE" else ""
    counters = [("request_count", "requests"), ("success_count", "successes"),
                ("failure_count", "failures"), ("rate_limit_count", "rate_limited")]
    parts = [f"coalesce(sum(s.{col}){cond}, 0)::bigint AS {prefix}{name}"
             for col, name in counters]
    numerator = f"sum(s.avg_response_time * s.request_count){cond}"
    denominator = (f"sum(s.request_count) FILTER (WHERE {has_latency}"
                   "s.avg_response_time IS NOT NULL)")
    if latency_parts:
        parts += [f"{numerator} AS {prefix}lat_num", f"{denominator} AS {prefix}lat_den"]
    else:
        parts.append(f"{numerator} / nullif({denominator}, 0) AS {prefix}avg_latency_ms")
    return ",\n  ".join(parts)


SUMS = sums_sql()
TOTAL_COLUMNS = ("requests", "successes", "failures", "rate_limited", "avg_latency_ms")


def key_conditions(f: StatsFilter, alias: str = "k") -> tuple[str, dict[str, Any]]:
    """SQL conditions on the keys table (alias `alias`) for the filter's key/group/archive."""
    clauses, params = [], {}
    if f.key_ids:
        clauses.append(f"{alias}.id = ANY(CAST(:key_ids AS uuid[]))")
        params["key_ids"] = [str(k) for k in f.key_ids]
    if f.group is not None:
        clauses.append(f"{alias}.group_label = :group_label")
        params["group_label"] = f.group
    if not f.include_archived:
        # A stats row whose key_id is NULL has no key to be archived: it passes this test.
        clauses.append(IN_SERVICE.sql(alias))
    return (" AND ".join(clauses) or "TRUE"), params


SPEC_TABLE = "gemini_key_usage_stats"
MODEL_TABLE = "gemini_key_model_usage_stats"
TOKEN_COLUMNS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens",
                 "total_tokens")
# Day rollups of migration 0013 (striped) of each source table.
DAY_ROLLUP = {SPEC_TABLE: "gemini_usage_day_rollup", MODEL_TABLE: "gemini_model_usage_day_rollup"}


def source_table(f: StatsFilter) -> str:
    return SPEC_TABLE if f.model is None else MODEL_TABLE


def model_condition(f: StatsFilter, alias: str = "s") -> tuple[str, dict[str, Any]]:
    if f.model is None:
        return "TRUE", {}
    return f"{alias}.model = :model", {"model": f.model}


def stats_source(f: StatsFilter) -> tuple[str, dict[str, Any]]:
    """FROM/WHERE selecting the stats rows of the filter (alias s; keys joined as k): the
    spec's table, or the per-model table for the filter's model."""
    conditions, params = key_conditions(f)
    model, model_params = model_condition(f)
    sql = f"""
FROM {source_table(f)} s
LEFT JOIN gemini_api_keys k ON k.id = s.key_id
WHERE s.date BETWEEN :start AND :end AND {conditions} AND {model}"""
    return sql, {"start": f.start, "end": f.end, **params, **model_params}


def _part_columns(tokens: bool, *, raw: bool) -> str:
    """Counter columns, latency parts (lat_num, lat_den) and optionally tokens of rows `s`:
    raw stats rows, or rollup rows (which store the parts already)."""
    counters = ("request_count", "success_count", "failure_count", "rate_limit_count")
    cols = [f"coalesce(s.{c}, 0) AS {c}" if raw else f"s.{c}" for c in counters]
    if raw:
        cols += ["s.avg_response_time * s.request_count AS lat_num",
                 "CASE WHEN s.avg_response_time IS NOT NULL THEN s.request_count END AS lat_den"]
    else:
        cols += ["s.lat_num", "s.lat_den"]
    if tokens:
        cols += [f"s.{c}" for c in TOKEN_COLUMNS]
    return ", ".join(cols)


def _part_sums(tokens: bool) -> str:
    """Sums over part rows `p`: requests … rate_limited, lat_num, lat_den (, tokens)."""
    cols = ["coalesce(sum(p.request_count), 0)::bigint AS requests",
            "coalesce(sum(p.success_count), 0)::bigint AS successes",
            "coalesce(sum(p.failure_count), 0)::bigint AS failures",
            "coalesce(sum(p.rate_limit_count), 0)::bigint AS rate_limited",
            "coalesce(sum(p.lat_num), 0)::float8 AS lat_num",
            "coalesce(sum(p.lat_den), 0)::bigint AS lat_den"]
    if tokens:
        cols += [f"coalesce(sum(p.{c}), 0)::bigint AS {c}" for c in TOKEN_COLUMNS]
    return ",\n  ".join(cols)


def day_parts_source(f: StatsFilter, *, tokens: bool = False, by_model: bool = False
                     ) -> tuple[str, dict[str, Any]]:
    """A subquery of rows (date, counters, latency parts[, tokens]) whose sums per date are
    the filter's: the striped day rollup when no key filter applies, else the stats rows.
    Tokens and by_model (a model column) read the per-model table."""
    table = MODEL_TABLE if tokens or by_model else source_table(f)
    model, model_params = model_condition(f)
    keys = "s.date, s.model" if by_model else "s.date"
    params = {"start": f.start, "end": f.end, **model_params}
    if not f.by_key:
        return (f"SELECT {keys}, {_part_columns(tokens, raw=False)} FROM {DAY_ROLLUP[table]} s"
                f" WHERE s.date BETWEEN :start AND :end AND {model}"), params
    conditions, key_params = key_conditions(f)
    return (f"SELECT {keys}, {_part_columns(tokens, raw=True)} FROM {table} s"
            f" LEFT JOIN gemini_api_keys k ON k.id = s.key_id"
            f" WHERE s.date BETWEEN :start AND :end AND {conditions} AND {model}"
            ), {**params, **key_params}


RUNNING = {"spec": "gemini_usage_key_running", "model": "gemini_model_usage_key_running",
           "all_models": "gemini_model_usage_key_running_all"}
_RUNNING_COLUMNS = (("request_count", "requests"), ("success_count", "successes"),
                    ("failure_count", "failures"), ("rate_limit_count", "rate_limited"),
                    ("lat_num", "lat_num"), ("lat_den", "lat_den"))


def key_range_sql(f: StatsFilter, *, tokens: bool = False) -> tuple[str, str, dict[str, Any]]:
    """Per key of `gemini_api_keys k`: its sums over the range, as (select list, joins,
    params). From the running totals of migration 0013: the row at or before the range's
    end minus the row before its start, two index probes per key whatever the range.
    Columns: requests, successes, failures, rate_limited, lat_num, lat_den (, tokens)."""
    if f.model is not None:
        table, model, params = RUNNING["model"], " AND r.model = :model", {"model": f.model}
    else:
        table, model, params = RUNNING["all_models" if tokens else "spec"], "", {}
    cols = list(_RUNNING_COLUMNS) + ([(c, c) for c in TOKEN_COLUMNS] if tokens else [])
    cast = {"lat_num": "float8"}
    select = ", ".join(f"(coalesce(e.{c}, 0) - coalesce(b.{c}, 0))::{cast.get(c, 'bigint')}"
                       f" AS {name}" for c, name in cols)
    joins = f"""
LEFT JOIN LATERAL (SELECT * FROM {table} r WHERE r.key_id = k.id{model} AND r.date <= :end
                   ORDER BY r.date DESC LIMIT 1) e ON true
LEFT JOIN LATERAL (SELECT * FROM {table} r WHERE r.key_id = k.id{model} AND r.date < :start
                   ORDER BY r.date DESC LIMIT 1) b ON true"""
    return select, joins, {**params, "start": f.start, "end": f.end}


def _totals_of_parts(m: Any) -> dict[str, Any]:
    """Totals' fields from a row of _part_sums (latency from its exact parts)."""
    return {"requests": int(m["requests"]), "successes": int(m["successes"]),
            "failures": int(m["failures"]), "rate_limited": int(m["rate_limited"]),
            "avg_latency_ms": float(m["lat_num"]) / int(m["lat_den"]) if m["lat_den"] else None}


def _totals(row: Any, prefix: str = "") -> dict[str, Any]:
    m = row._mapping
    values = {c: m[prefix + c] for c in TOTAL_COLUMNS}
    return {c: (v if c == "avg_latency_ms" or v is None else int(v)) for c, v in values.items()}


# -- queries ----------------------------------------------------------------------------------

def totals(session: Session, f: StatsFilter) -> Totals:
    """One row of sums for the whole filter."""
    source, params = day_parts_source(f)
    row = session.execute(text(f"SELECT {_part_sums(False)} FROM ({source}) p"), params).one()
    return Totals(**_totals_of_parts(row._mapping))


def totals_with_previous(session: Session, f: StatsFilter) -> tuple[Totals, Totals]:
    """Totals for the range and for the equally long period before it, in one scan."""
    s = summary(session, f)
    return s.current, s.previous


def daily_totals(session: Session, f: StatsFilter) -> list[DayRow]:
    """One row per day of the range (zeros on days without traffic)."""
    return [day for day, _ in _daily_parts(session, f)]


@dataclass(frozen=True)
class Summary:
    """What the Analytics page shows on top: the daily series and the KPI totals."""

    days: list[DayRow]
    current: Totals
    previous: Totals


def summary(session: Session, f: StatsFilter) -> Summary:
    """Daily rows of the range and totals of the range and of the period before it.

    One SQL scan grouped by day over both periods; the day sums (at most 2 × 3,660 rows, not
    raw stats rows) are then added up here, latency through its exact numerator/denominator.
    """
    prev = f.previous()
    parts = _daily_parts(session, replace(f, start=prev.start))
    current = [p for p in parts if p[0].day >= f.start]
    return Summary([d for d, _ in current], _sum_parts(current),
                   _sum_parts([p for p in parts if p[0].day < f.start]))


def _daily_parts(session: Session, f: StatsFilter) -> list[tuple[DayRow, tuple[float, int]]]:
    """Per day: the DayRow and its latency numerator/denominator (for exact re-weighting)."""
    source, params = day_parts_source(f)
    sql = f"""
WITH agg AS (SELECT p.date AS day, {_part_sums(False)} FROM ({source}) p GROUP BY p.date)
SELECT d.day::date AS day,
       coalesce(agg.requests, 0) AS requests, coalesce(agg.successes, 0) AS successes,
       coalesce(agg.failures, 0) AS failures, coalesce(agg.rate_limited, 0) AS rate_limited,
       coalesce(agg.lat_num, 0) AS lat_num, coalesce(agg.lat_den, 0) AS lat_den
FROM generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS d(day)
LEFT JOIN agg ON agg.day = d.day::date
ORDER BY d.day"""
    parts = []
    for r in session.execute(text(sql), params):
        numerator, denominator = float(r.lat_num), int(r.lat_den)
        parts.append((DayRow(day=r.day, requests=int(r.requests), successes=int(r.successes),
                             failures=int(r.failures), rate_limited=int(r.rate_limited),
                             avg_latency_ms=numerator / denominator if denominator else None),
                      (numerator, denominator)))
    return parts


def _sum_parts(parts: list[tuple[DayRow, tuple[float, int]]]) -> Totals:
    numerator = sum(n for _, (n, _) in parts)
    denominator = sum(d for _, (_, d) in parts)
    return Totals(requests=sum(d.requests for d, _ in parts),
                  successes=sum(d.successes for d, _ in parts),
                  failures=sum(d.failures for d, _ in parts),
                  rate_limited=sum(d.rate_limited for d, _ in parts),
                  avg_latency_ms=numerator / denominator if denominator else None)


SORTS: dict[str, str] = {
    "failures": "failures DESC, rate_limited DESC",
    "rate_limit_share": "rate_limited::float8 / nullif(requests, 0) DESC NULLS LAST, "
                        "rate_limited DESC",
    "failure_rate": "failures::float8 / nullif(requests, 0) DESC NULLS LAST, failures DESC",
    "requests": "requests DESC",
    "latency": "avg_latency_ms DESC NULLS LAST",
}


def per_key_totals(session: Session, f: StatsFilter, *, sort: KeySort = "failures",
                   limit: int | None = 200) -> list[KeyRow]:
    """One row per key matching the filter (keys without traffic too), sorted, top `limit`."""
    if sort not in SORTS:
        raise InvalidInput(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    conditions, params = key_conditions(f)
    sums, joins, range_params = key_range_sql(f)
    sql = f"""
SELECT *, lat_num / nullif(lat_den, 0) AS avg_latency_ms FROM (
  SELECT k.id AS key_id, k.name, k.group_label, k.priority,
         coalesce(k.is_active, false) AS is_active, k.archived_at IS NOT NULL AS archived,
         k.deleted_at IS NOT NULL AS deleted, k.disabled_reason, k.cooldown_until, {sums}
  FROM gemini_api_keys k {joins}
  WHERE {conditions}) t
ORDER BY {SORTS[sort].replace("avg_latency_ms", "lat_num / nullif(lat_den, 0)")},
         lower(name), key_id
{"LIMIT :limit" if limit else ""}"""
    params.update(range_params, limit=limit)
    return [KeyRow(key_id=r.key_id, name=r.name, group_label=r.group_label, priority=r.priority,
                   is_active=r.is_active, archived=r.archived, deleted=r.deleted,
                   disabled_reason=r.disabled_reason, cooldown_until=r.cooldown_until,
                   **_totals_of_parts(r._mapping))
            for r in session.execute(text(sql), params)]


def count_filtered_keys(session: Session, f: StatsFilter) -> int:
    conditions, params = key_conditions(f)
    return int(session.scalar(text(f"SELECT count(*) FROM gemini_api_keys k WHERE {conditions}"),
                              params))


def key_day_matrix(session: Session, f: StatsFilter, key_ids: Sequence[uuid.UUID],
                   metric: HeatmapMetric = "requests") -> list[tuple[uuid.UUID, dt.date, Any]]:
    """(key, day, value) for the given keys over every day of the range (zeros filled)."""
    expressions = {
        "requests": "coalesce(s.request_count, 0)",
        "failures": "coalesce(s.failure_count, 0)",
        "rate_limited": "coalesce(s.rate_limit_count, 0)",
        "failure_rate": "s.failure_count::float8 / nullif(s.request_count, 0)",
    }
    if metric not in expressions:
        raise InvalidInput(f"unknown metric {metric!r}")
    if not key_ids:
        return []
    # The CTE's explicit filter lets PostgreSQL use the (key_id, date) index; joined straight
    # to the grid, the planner hashed the whole table.
    model, model_params = model_condition(f, source_table(f))
    sql = f"""
WITH s AS MATERIALIZED (
  SELECT * FROM {source_table(f)}
  WHERE key_id = ANY(CAST(:ids AS uuid[])) AND date BETWEEN :start AND :end AND {model})
SELECT kid AS key_id, d.day::date AS day, {expressions[metric]} AS value
FROM unnest(CAST(:ids AS uuid[])) WITH ORDINALITY AS u(kid, n)
CROSS JOIN generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS d(day)
LEFT JOIN s ON s.key_id = u.kid AND s.date = d.day::date
ORDER BY u.n, d.day"""
    rows = session.execute(text(sql), {"ids": [str(k) for k in key_ids],
                                       "start": f.start, "end": f.end, **model_params})
    return [(r.key_id, r.day, r.value) for r in rows]


@dataclass(frozen=True)
class KeyOption:
    key_id: uuid.UUID
    name: str
    group_label: str | None
    retired: bool


def key_options(session: Session, *, include_archived: bool = True) -> list[KeyOption]:
    """Keys for a filter widget (id, name, group); no key material is selected."""
    where = "" if include_archived else f"WHERE {IN_SERVICE.sql(None)}"
    rows = session.execute(text(
        f"SELECT id, name, group_label, {RETIRED.sql(None)} AS retired"
        f" FROM gemini_api_keys {where} ORDER BY lower(name), id"))
    return [KeyOption(r.id, r.name, r.group_label, r.retired) for r in rows]


def group_labels(session: Session) -> list[str]:
    return list(session.scalars(text(
        "SELECT DISTINCT group_label FROM gemini_api_keys WHERE group_label IS NOT NULL "
        "ORDER BY group_label")))


# -- models and tokens (the per-model table) --------------------------------------------------

UNSPECIFIED = ""  # the model of a call recorded without one


def model_label(model: str) -> str:
    return model or "unspecified"


def tokens_of(m: Any) -> Tokens:
    """A row's token columns (TOKEN_COLUMNS) as Tokens."""
    return Tokens(*(int(m[c] or 0) for c in TOKEN_COLUMNS))


@dataclass(frozen=True)
class TokenDay:
    day: dt.date
    tokens: Tokens


@dataclass(frozen=True)
class TokenSummary:
    days: list[TokenDay]
    current: Tokens
    previous: Tokens


@dataclass(frozen=True)
class ModelRow(Totals):
    model: str = ""
    tokens: Tokens = field(default_factory=Tokens)

    @property
    def label(self) -> str:
        return model_label(self.model)


@dataclass(frozen=True)
class KeyTokens:
    key_id: uuid.UUID
    name: str
    group_label: str | None
    tokens: Tokens
    requests: int


def models(session: Session) -> list[str]:
    """Every model with recorded usage (from the per-model day rollup: a few rows per day)."""
    return list(session.scalars(text(
        "SELECT DISTINCT model FROM gemini_model_usage_day_rollup ORDER BY model")))


def token_summary(session: Session, f: StatsFilter) -> TokenSummary:
    """Tokens per day of the range (zeros filled), and for the range and the period before
    it, in one scan (of the day rollup, or of the per-model rows under a key filter)."""
    prev = f.previous()
    source, params = day_parts_source(replace(f, start=prev.start), tokens=True)
    token_sums = ", ".join(f"coalesce(sum(p.{c}), 0)::bigint AS {c}" for c in TOKEN_COLUMNS)
    token_cols = ", ".join(f"coalesce(agg.{c}, 0) AS {c}" for c in TOKEN_COLUMNS)
    sql = f"""
WITH agg AS (SELECT p.date AS day, {token_sums} FROM ({source}) p GROUP BY p.date)
SELECT d.day::date AS day, {token_cols}
FROM generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS d(day)
LEFT JOIN agg ON agg.day = d.day::date ORDER BY d.day"""
    rows = [TokenDay(r.day, tokens_of(r._mapping)) for r in session.execute(text(sql), params)]
    current = [r for r in rows if r.day >= f.start]
    return TokenSummary(current, sum((r.tokens for r in current), Tokens()),
                        sum((r.tokens for r in rows if r.day < f.start), Tokens()))


def model_breakdown(session: Session, f: StatsFilter) -> list[ModelRow]:
    """One row per model in the range: counts, weighted latency and tokens; most requests
    first. Their counts add up to the spec table's totals for the same filter."""
    source, params = day_parts_source(f, tokens=True, by_model=True)
    sql = f"""
SELECT p.model, {_part_sums(True)} FROM ({source}) p GROUP BY p.model
ORDER BY requests DESC, p.model"""
    return [ModelRow(model=r.model, tokens=tokens_of(r._mapping), **_totals_of_parts(r._mapping))
            for r in session.execute(text(sql), params)]


def per_key_tokens(session: Session, f: StatsFilter, *, limit: int = 20) -> list[KeyTokens]:
    """The keys that used the most tokens in the range (ties by name), top `limit`."""
    conditions, params = key_conditions(f)
    sums, joins, range_params = key_range_sql(f, tokens=True)
    sql = f"""
SELECT * FROM (SELECT k.id AS key_id, k.name, k.group_label, {sums}
               FROM gemini_api_keys k {joins} WHERE {conditions}) t
WHERE total_tokens > 0
ORDER BY total_tokens DESC, lower(name), key_id LIMIT :limit"""
    params.update(range_params, limit=limit)
    return [KeyTokens(r.key_id, r.name, r.group_label, tokens_of(r._mapping), int(r.requests))
            for r in session.execute(text(sql), params)]
