"""Exporting the filtered audit log as CSV or JSON lines, streamed row by row.

Rows come from lib.audit_queries.iter_entries (a server-side cursor), are turned into text
chunks (CSV through lib.export.stream_csv, shared with the usage export; JSON lines here) and
are written as they come: memory stays flat whatever the size of the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any, Literal

from sqlalchemy.orm import Session

from lib.audit.queries import AuditEntry, AuditFilter, iter_entries
from lib.streaming import jsonl_chunks, stream_csv, write_chunks

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
MIME_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
COLUMNS = ("created_at", "id", "action", "key_id", "key_name", "key_deleted", "user_id",
           "actor", "details")



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
        return stream_csv((entry_row(e) for e in entries), COLUMNS)
    if fmt == "jsonl":
        return jsonl_chunks(entry_record(e) for e in entries)
    raise ValueError(f"unknown export format {fmt!r}")


def write_export(session: Session, flt: AuditFilter, fmt: Format, out: IO[Any]) -> int:
    """Stream the filtered log, newest first, into a text or binary file; returns the count."""
    count = 0

    def counted(entries: Iterable[AuditEntry]) -> Iterator[AuditEntry]:
        nonlocal count
        for entry in entries:
            count += 1
            yield entry

    write_chunks(entry_chunks(counted(iter_entries(session, flt)), fmt), out)
    return count
