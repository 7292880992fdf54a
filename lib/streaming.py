"""Streaming rows out: a query's rows through a server-side cursor, in batches, turned into
text chunks (CSV or JSON lines), so a large export never sits in memory as rows.

    stream_query(session, stmt, params, batch=...)   iterate a query's rows in batches
    stream_csv(rows, header)                         CSV text chunks, cells spreadsheet-safe
    jsonl_chunks(records)                            JSON lines text chunks
    write_chunks(chunks, fileobj)                    write text chunks to a text or binary file
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from sqlalchemy import Executable, text
from sqlalchemy.orm import Session

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


def jsonl_chunks(records: Iterable[dict[str, Any]], *, rows_per_chunk: int = 500
                 ) -> Iterator[str]:
    """One JSON object per line (UTF-8 as is, no ASCII escaping), in chunks."""
    lines: list[str] = []
    for record in records:
        lines.append(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        if len(lines) >= rows_per_chunk:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)
