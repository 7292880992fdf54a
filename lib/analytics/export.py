"""The usage CSV: daily statistics streamed out of PostgreSQL (never key material)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from sqlalchemy.orm import Session

from lib.analytics.stats import (
    MODEL_TABLE,
    TOKEN_COLUMNS,
    StatsFilter,
    key_conditions,
    model_condition,
    source_table,
    stats_source,
    sums_sql,
)
from lib.streaming import DEFAULT_BATCH, stream_csv, stream_query

ExportPer = Literal["day", "key-day", "key-model-day"]
PERS: tuple[ExportPer, ...] = ("key-day", "day", "key-model-day")

# -- usage statistics -------------------------------------------------------------------------

KEY_DAY_HEADER = ("date", "key_id", "key_name", "group_label", "request_count",
                  "success_count", "failure_count", "rate_limit_count", "avg_response_time_ms")
KEY_MODEL_DAY_HEADER = (*KEY_DAY_HEADER[:4], "model", *KEY_DAY_HEADER[4:], *TOKEN_COLUMNS)
DAY_HEADER = ("date", "request_count", "success_count", "failure_count", "rate_limit_count",
              "avg_response_time_ms")


def stats_file_name(f: StatsFilter, per: ExportPer = "key-day") -> str:
    """e.g. gemini-usage_2026-01-01_2026-01-31.csv (per-day totals add _daily, per-model
    rows _models)."""
    suffix = {"day": "_daily", "key-model-day": "_models"}.get(per, "")
    return f"gemini-usage_{f.start.isoformat()}_{f.end.isoformat()}{suffix}.csv"


def stats_export_rows(session: Session, f: StatsFilter, per: ExportPer = "key-day", *,
                      batch: int = DEFAULT_BATCH) -> Iterator[tuple[Any, ...]]:
    """Rows for the CSV, streamed.

    key-day: one row per stats row in the range (keys on days without a row are omitted,
    so a year of 5,000 mostly idle keys stays small); latency is the stored per-key mean.
    day: one row per day of the range, zeros on quiet days; latency weighted by requests.
    key-model-day: one row per per-model stats row (model '' = recorded without a model),
    with its token counts.
    With the filter's model set, key-day and day read that model's rows of the per-model
    table.
    """
    if per == "key-model-day":
        conditions, params = key_conditions(f)
        model, model_params = model_condition(f)
        tokens = ", ".join(f"s.{c}" for c in TOKEN_COLUMNS)
        sql = (f"SELECT s.date, s.key_id, k.name, k.group_label, s.model, s.request_count, "
               f"s.success_count, s.failure_count, s.rate_limit_count, s.avg_response_time, "
               f"{tokens} FROM {MODEL_TABLE} s LEFT JOIN gemini_api_keys k ON k.id = s.key_id "
               f"WHERE s.date BETWEEN :start AND :end AND {conditions} AND {model} "
               f"ORDER BY s.date, s.key_id, s.model")
        params.update(model_params, start=f.start, end=f.end)
        yield from (tuple(r) for r in stream_query(session, sql, params, batch=batch))
        return
    if per == "key-day":
        source, params = stats_source(f)
        sql = (f"SELECT s.date, s.key_id, k.name, k.group_label, "
               f"coalesce(s.request_count, 0), coalesce(s.success_count, 0), "
               f"coalesce(s.failure_count, 0), coalesce(s.rate_limit_count, 0), "
               f"s.avg_response_time {source} ORDER BY s.date, s.key_id")
        yield from (tuple(r) for r in stream_query(session, sql, params, batch=batch))
        return
    if per != "day":
        raise ValueError(f"per must be one of {', '.join(PERS)}, not {per!r}")
    conditions, params = key_conditions(f)
    model, model_params = model_condition(f)
    sql = f"""
WITH agg AS (
  SELECT s.date AS day, {sums_sql()}
  FROM {source_table(f)} s LEFT JOIN gemini_api_keys k ON k.id = s.key_id
  WHERE s.date BETWEEN :start AND :end AND {conditions} AND {model} GROUP BY s.date)
SELECT d.day::date, coalesce(requests, 0), coalesce(successes, 0), coalesce(failures, 0),
       coalesce(rate_limited, 0), round(avg_latency_ms::numeric, 3)
FROM generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS d(day)
LEFT JOIN agg ON agg.day = d.day::date ORDER BY d.day"""
    params.update(model_params, start=f.start, end=f.end)
    yield from (tuple(r) for r in stream_query(session, sql, params, batch=batch))


def stats_csv(session: Session, f: StatsFilter, per: ExportPer = "key-day", *,
              batch: int = DEFAULT_BATCH) -> Iterator[str]:
    """The usage CSV as text chunks (header row first); never contains key material."""
    header = {"key-day": KEY_DAY_HEADER, "key-model-day": KEY_MODEL_DAY_HEADER}.get(
        per, DAY_HEADER)
    return stream_csv(stats_export_rows(session, f, per, batch=batch), header)
