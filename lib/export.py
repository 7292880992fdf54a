"""Streamed CSV exports: rows leave PostgreSQL through a server-side cursor, in batches, and
leave this module as text chunks, so a large export never sits in memory as rows.

Reusable pieces (the audit export builds on them too):
- `stream_query(session, stmt, params, batch=...)`: iterate a query's rows in batches.
- `stream_csv(rows, header)`: CSV text chunks (header first), cells made spreadsheet-safe.
- `write_chunks(chunks, fileobj)`: write text chunks to a text or binary file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, Literal

from sqlalchemy import Executable, text
from sqlalchemy.orm import Session

from lib.stats import StatsFilter, key_conditions, stats_source, sums_sql

ExportPer = Literal["day", "key-day"]
DEFAULT_BATCH = 5000
# Spreadsheets run cells starting with these as formulas (CSV injection); names are
# admin-controlled text, so prefix such cells with a quote to keep them inert.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def stream_query(session: Session, stmt: Executable | str,
                 params: dict[str, Any] | None = None, *,
                 batch: int = DEFAULT_BATCH) -> Iterator[Any]:
    """Yield a query's rows, fetched `batch` at a time through a server-side cursor.

    Consume the iterator inside the session's transaction (psycopg2's named cursors live
    only as long as the transaction).
    """
    if isinstance(stmt, str):
        stmt = text(stmt)
    result = session.execute(stmt, params or {}, execution_options={"yield_per": batch})
    try:
        for partition in result.partitions(batch):
            yield from partition
    finally:
        result.close()


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: text that a spreadsheet would run as a formula gets a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def stream_csv(rows: Iterable[Sequence[Any]], header: Sequence[str], *,
               rows_per_chunk: int = 1000) -> Iterator[str]:
    """CSV text in chunks of up to `rows_per_chunk` lines, the header line first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    pending = 0
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def write_chunks(chunks: Iterable[str], fileobj: IO[Any]) -> int:
    """Write text chunks to a text or binary file object (UTF-8); returns bytes written."""
    written = 0
    binary = not isinstance(fileobj, io.TextIOBase)
    for chunk in chunks:
        data = chunk.encode("utf-8")
        fileobj.write(data if binary else chunk)
        written += len(data)
    return written


# -- usage statistics -------------------------------------------------------------------------

KEY_DAY_HEADER = ("date", "key_id", "key_name", "group_label", "request_count",
                  "success_count", "failure_count", "rate_limit_count", "avg_response_time_ms")
DAY_HEADER = ("date", "request_count", "success_count", "failure_count", "rate_limit_count",
              "avg_response_time_ms")


def stats_file_name(f: StatsFilter, per: ExportPer = "key-day") -> str:
    """e.g. gemini-usage_2026-01-01_2026-01-31.csv (per-day totals add _daily)."""
    suffix = "_daily" if per == "day" else ""
    return f"gemini-usage_{f.start.isoformat()}_{f.end.isoformat()}{suffix}.csv"


def stats_export_rows(session: Session, f: StatsFilter, per: ExportPer = "key-day", *,
                      batch: int = DEFAULT_BATCH) -> Iterator[tuple[Any, ...]]:
    """Rows for the CSV, streamed.

    key-day: one row per stats row in the range (keys on days without a row are omitted,
    so a year of 5,000 mostly idle keys stays small); latency is the stored per-key mean.
    day: one row per day of the range, zeros on quiet days; latency weighted by requests.
    """
    if per == "key-day":
        source, params = stats_source(f)
        sql = (f"SELECT s.date, s.key_id, k.name, k.group_label, "
               f"coalesce(s.request_count, 0), coalesce(s.success_count, 0), "
               f"coalesce(s.failure_count, 0), coalesce(s.rate_limit_count, 0), "
               f"s.avg_response_time {source} ORDER BY s.date, s.key_id")
        yield from (tuple(r) for r in stream_query(session, sql, params, batch=batch))
        return
    if per != "day":
        raise ValueError(f"per must be 'day' or 'key-day', not {per!r}")
    conditions, params = key_conditions(f)
    sql = f"""
WITH agg AS (
  SELECT s.date AS day, {sums_sql()}
  FROM gemini_key_usage_stats s LEFT JOIN gemini_api_keys k ON k.id = s.key_id
  WHERE s.date BETWEEN :start AND :end AND {conditions} GROUP BY s.date)
SELECT d.day::date, coalesce(requests, 0), coalesce(successes, 0), coalesce(failures, 0),
       coalesce(rate_limited, 0), round(avg_latency_ms::numeric, 3)
FROM generate_series(CAST(:start AS date), CAST(:end AS date), interval '1 day') AS d(day)
LEFT JOIN agg ON agg.day = d.day::date ORDER BY d.day"""
    params.update(start=f.start, end=f.end)
    yield from (tuple(r) for r in stream_query(session, sql, params, batch=batch))


def stats_csv(session: Session, f: StatsFilter, per: ExportPer = "key-day", *,
              batch: int = DEFAULT_BATCH) -> Iterator[str]:
    """The usage CSV as text chunks (header row first); never contains key material."""
    header = KEY_DAY_HEADER if per == "key-day" else DAY_HEADER
    return stream_csv(stats_export_rows(session, f, per, batch=batch), header)
