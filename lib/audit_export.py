"""Exporting the filtered audit log as CSV or JSON lines, streamed row by row.

Rows come from lib.audit_queries.iter_entries (a server-side cursor), are turned into text
chunks here, and are written as they come: memory stays flat whatever the size of the log.
csv_chunks/jsonl_chunks are generic (any header + rows) so other exports can share them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Literal

from sqlalchemy.orm import Session

from lib.audit_queries import AuditEntry, AuditFilter, iter_entries

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
MIME_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
COLUMNS = ("created_at", "id", "action", "key_id", "key_name", "key_deleted", "user_id",
           "actor", "details")
# A cell starting with one of these is a formula to Excel / LibreOffice (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: str) -> str:
    """Prefix a quote to a text cell a spreadsheet would run as a formula (OWASP advice)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]], *,
               rows_per_chunk: int = 500) -> Iterator[str]:
    """CSV text in chunks: the header, then rows; None is empty, text cells are defused."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    pending = 0
    for row in rows:
        writer.writerow(["" if v is None else neutralise_formula(v) if isinstance(v, str) else v
                         for v in row])
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


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


def entry_record(entry: AuditEntry) -> dict[str, Any]:
    """An entry as plain JSON-able values (times ISO 8601 with Z: they are UTC)."""
    return {
        "created_at": entry.created_at.isoformat() + "Z",
        "id": str(entry.id),
        "action": entry.action,
        "key_id": str(entry.key_id) if entry.key_id else None,
        "key_name": entry.key_name,
        "key_deleted": entry.key_deleted,
        "user_id": str(entry.user_id) if entry.user_id else None,
        "actor": entry.actor,
        "details": entry.details,
    }


def entry_row(entry: AuditEntry) -> list[Any]:
    record = entry_record(entry)
    record["details"] = json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
    record["key_deleted"] = "true" if entry.key_deleted else "false"
    return [record[c] for c in COLUMNS]


def entry_chunks(entries: Iterable[AuditEntry], fmt: Format) -> Iterator[str]:
    """Entries as text chunks of the format."""
    if fmt == "csv":
        return csv_chunks(COLUMNS, (entry_row(e) for e in entries))
    if fmt == "jsonl":
        return jsonl_chunks(entry_record(e) for e in entries)
    raise ValueError(f"unknown export format {fmt!r}")


def write_export(session: Session, flt: AuditFilter, fmt: Format, out: BinaryIO) -> int:
    """Stream the filtered log, newest first, into a binary file; returns the entry count."""
    count = 0

    def counted(entries: Iterable[AuditEntry]) -> Iterator[AuditEntry]:
        nonlocal count
        for entry in entries:
            count += 1
            yield entry

    for chunk in entry_chunks(counted(iter_entries(session, flt)), fmt):
        out.write(chunk.encode("utf-8"))
    return count
