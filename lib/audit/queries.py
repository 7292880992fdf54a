"""Reading the audit log: filters, keyset pages (newest first), counts per action.

Pages are keyset pages on (created_at DESC, id DESC), served by the idx_audit_log_*_created
indexes: the cost of a page does not grow with how deep in the history it is (no OFFSET).
created_at is `timestamp without time zone` holding UTC; every datetime here is naive UTC.
Rows written in one transaction share created_at (now() is the transaction's start), so the
cursor is the (created_at, id) pair, never created_at alone.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Text, cast, func, literal_column, select, text, tuple_
from sqlalchemy.orm import Session

from db.models import ApiKey, AuditLog
from lib.errors import InvalidInput, NotFound, refuse_nul
from lib.streaming import stream_query

PAGE_SIZES = (25, 50, 100, 200)
MAX_PAGE_SIZE = 500
MAX_SEARCH_LENGTH = 200


@dataclass(frozen=True)
class AuditFilter:
    """What to show. since is inclusive, until exclusive (naive UTC); empty tuples = any."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    actions: tuple[str, ...] = ()
    key_ids: tuple[uuid.UUID, ...] = ()
    user_ids: tuple[uuid.UUID, ...] = ()
    search: str = ""

    def __post_init__(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is not None:
                raise ValueError("AuditFilter takes naive UTC datetimes")
        if self.since and self.until and self.since >= self.until:
            raise InvalidInput("The start of the date range must be before its end.")
        if len(self.search) > MAX_SEARCH_LENGTH:
            raise InvalidInput(f"Search text is limited to {MAX_SEARCH_LENGTH} characters.")
        refuse_nul(self.search, "search text")


def day_range(first: dt.date | None, last: dt.date | None) -> tuple[dt.datetime | None,
                                                                    dt.datetime | None]:
    """Whole UTC days first..last (both inclusive) as [since, until)."""
    since = dt.datetime.combine(first, dt.time()) if first else None
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time()) if last else None
    return since, until


@dataclass(frozen=True)
class Cursor:
    """A position in the log: the (created_at, id) of one row."""

    created_at: dt.datetime
    id: uuid.UUID


@dataclass(frozen=True)
class AuditEntry:
    id: uuid.UUID
    created_at: dt.datetime
    action: str
    key_id: uuid.UUID | None
    key_name: str | None
    key_deleted: bool
    user_id: uuid.UUID | None
    actor: str  # the user's email, else the email the row recorded, else its source
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.created_at, self.id)

    @property
    def key_label(self) -> str:
        if self.key_id is None:
            return ""
        name = self.key_name or str(self.key_id)
        return f"{name} (deleted)" if self.key_deleted else name


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    has_newer: bool
    has_older: bool

    @property
    def newest(self) -> Cursor | None:
        return self.entries[0].cursor if self.entries else None

    @property
    def oldest(self) -> Cursor | None:
        return self.entries[-1].cursor if self.entries else None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(stmt: Select, flt: AuditFilter, *, with_actions: bool = True) -> Select:
    if flt.since is not None:
        stmt = stmt.where(AuditLog.created_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(AuditLog.created_at < flt.until)
    if with_actions and flt.actions:
        stmt = stmt.where(AuditLog.action.in_(flt.actions))
    if flt.key_ids:
        stmt = stmt.where(AuditLog.key_id.in_(flt.key_ids))
    if flt.user_ids:
        stmt = stmt.where(AuditLog.user_id.in_(flt.user_ids))
    if flt.search.strip():
        # Same expression as idx_audit_log_details_trgm, so the trigram index can serve it.
        pattern = f"%{_escape_like(flt.search.strip())}%"
        stmt = stmt.where(cast(AuditLog.details, Text).ilike(pattern, escape="\\"))
    return stmt


def _entries_query(flt: AuditFilter) -> Select:
    stmt = (select(AuditLog.id, AuditLog.created_at, AuditLog.action, AuditLog.key_id,
                   ApiKey.name, ApiKey.deleted_at.is_not(None), AuditLog.user_id,
                   AuditLog.details)
            .select_from(AuditLog).outerjoin(ApiKey, ApiKey.id == AuditLog.key_id))
    return _where(stmt, flt)


def _to_entry(row: Sequence[Any], emails: dict[uuid.UUID, str]) -> AuditEntry:
    entry_id, created_at, action, key_id, key_name, key_deleted, user_id, details = row
    details = details if isinstance(details, dict) else ({"value": details} if details else {})
    actor = (emails.get(user_id) if user_id else None) or details.get("actor_email") \
        or details.get("source") or ""
    return AuditEntry(entry_id, created_at, action, key_id, key_name, bool(key_deleted),
                      user_id, str(actor), details)


def user_directory(session: Session) -> dict[uuid.UUID, str]:
    """Every user's id → email (admins and the service identity only; others get {})."""
    rows = session.execute(text("SELECT id, email FROM public.gemini_user_directory()"))
    return {user_id: email or "" for user_id, email in rows}


def key_directory(session: Session) -> list[tuple[uuid.UUID, str, bool]]:
    """Every key ever added, tombstoned ones too: (id, name, deleted), by name."""
    rows = session.execute(select(ApiKey.id, ApiKey.name, ApiKey.deleted_at.is_not(None))
                           .order_by(func.lower(ApiKey.name), ApiKey.created_at))
    return [(key_id, name, bool(deleted)) for key_id, name, deleted in rows]


def fetch_page(session: Session, flt: AuditFilter, *, page_size: int = 50,
               older_than: Cursor | None = None, newer_than: Cursor | None = None,
               emails: dict[uuid.UUID, str] | None = None) -> AuditPage:
    """One page, newest first: the newest rows, or those just older / newer than a cursor.

    Going newer and finding less than a full page (new rows may have arrived, or we are back
    at the top) returns the newest page instead, so the top page is always full.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"Page size must be between 1 and {MAX_PAGE_SIZE}.")
    if older_than and newer_than:
        raise ValueError("give older_than or newer_than, not both")
    emails = user_directory(session) if emails is None else emails
    position = tuple_(AuditLog.created_at, AuditLog.id)
    stmt = _entries_query(flt)
    if newer_than is not None:
        stmt = (stmt.where(position > tuple_(newer_than.created_at, newer_than.id))
                .order_by(AuditLog.created_at.asc(), AuditLog.id.asc()).limit(page_size + 1))
        rows = session.execute(stmt).all()
        if len(rows) <= page_size:
            return fetch_page(session, flt, page_size=page_size, emails=emails)
        entries = [_to_entry(r, emails) for r in reversed(rows[:page_size])]
        return AuditPage(entries, has_newer=True, has_older=True)
    if older_than is not None:
        stmt = stmt.where(position < tuple_(older_than.created_at, older_than.id))
    stmt = stmt.order_by(AuditLog.created_at.desc(), AuditLog.id.desc()).limit(page_size + 1)
    rows = session.execute(stmt).all()
    entries = [_to_entry(r, emails) for r in rows[:page_size]]
    return AuditPage(entries, has_newer=older_than is not None, has_older=len(rows) > page_size)


def iter_entries(session: Session, flt: AuditFilter, *,
                 batch_size: int = 2000) -> Iterator[AuditEntry]:
    """The whole filtered set, newest first, read through a server-side cursor in batches."""
    emails = user_directory(session)
    stmt = _entries_query(flt).order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    for row in stream_query(session, stmt, batch=batch_size):
        yield _to_entry(row, emails)


def action_counts(session: Session, flt: AuditFilter) -> dict[str, int]:
    """Rows per action under every filter but the action filter, most frequent first."""
    stmt = _where(select(AuditLog.action, func.count().label("n")), flt, with_actions=False)
    stmt = stmt.group_by(AuditLog.action).order_by(literal_column("n").desc(), AuditLog.action)
    return {action: n for action, n in session.execute(stmt)}


def resolve_keys(session: Session, names_or_ids: Iterable[str]) -> tuple[uuid.UUID, ...]:
    """Key ids for names (case-insensitive, tombstoned keys included) or ids."""
    found: list[uuid.UUID] = []
    for value in names_or_ids:
        value = value.strip()
        try:
            ids = [uuid.UUID(value)]
        except ValueError:
            ids = list(session.scalars(select(ApiKey.id)
                                       .where(func.lower(ApiKey.name) == value.lower())))
        if not ids:
            raise NotFound(f"No key named {value!r}.")
        found.extend(ids)
    return tuple(dict.fromkeys(found))


def resolve_users(session: Session, emails: Iterable[str]) -> tuple[uuid.UUID, ...]:
    """User ids for emails (case-insensitive)."""
    by_email = {email.lower(): user_id for user_id, email in user_directory(session).items()}
    found = []
    for email in emails:
        user_id = by_email.get(email.strip().lower())
        if user_id is None:
            raise NotFound(f"No user with the email {email.strip()!r}.")
        found.append(user_id)
    return tuple(found)


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any
    context: bool = False  # a plain value recorded with the entry, not a before → after


def describe_details(details: dict[str, Any]) -> list[Change]:
    """details as rows of field, before → after.

    Understands {"before": {...}, "after": {...}}, {"changes": {field: {"before", "after"}}}
    and {field: {"before": .., "after": ..}}; any other value is context (before left empty).
    """
    changes: list[Change] = []
    rest = dict(details)
    before, after = rest.pop("before", None), rest.pop("after", None)
    if isinstance(before, dict) or isinstance(after, dict):
        before, after = before or {}, after or {}
        for name in dict.fromkeys([*before, *after]):
            changes.append(Change(name, before.get(name), after.get(name)))
    elif before is not None or after is not None:
        changes.append(Change("value", before, after))
    nested = rest.pop("changes", None)
    if isinstance(nested, dict):
        rest = {**nested, **rest}
    elif nested is not None:
        rest["changes"] = nested
    for name, value in rest.items():
        if isinstance(value, dict) and set(value) <= {"before", "after"} and value:
            changes.append(Change(name, value.get("before"), value.get("after")))
        else:
            changes.append(Change(name, None, value, context=True))
    return changes


CONTEXT_FIELDS = {"source", "actor_email"}  # shown in their own columns, not in the summary


def _short(value: Any, limit: int = 40) -> str:
    if value is None:
        shown = "—"
    elif isinstance(value, str):
        shown = value
    else:
        shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= limit else shown[:limit - 1] + "…"


def summary(details: dict[str, Any], limit: int = 160) -> str:
    """One line for the table: "priority: 1 → 5; reason: 429" (context fields left out)."""
    parts = []
    for change in describe_details(details):
        if change.field in CONTEXT_FIELDS:
            continue
        if change.context:
            parts.append(f"{change.field}: {_short(change.after)}")
        else:
            parts.append(f"{change.field}: {_short(change.before)} → {_short(change.after)}")
    return _short("; ".join(parts), limit)


_SOURCE_LABELS = {"pool": "the key pool", "cli": "the CLI", "system": "the system",
                  "app": "an admin"}


def _actor_label(email: str | None, source: str | None) -> str | None:
    return email or _SOURCE_LABELS.get(source or "") or source or None


def key_changed_by(session: Session, key_id: uuid.UUID,
                   fields: Iterable[str] = ()) -> str | None:
    """Who made the newest audited change of a key (of one of its `fields`, the columns in
    an audit row's "after", when given): their email, or "the key pool", "the CLI", …"""
    columns = list(fields)
    row = session.execute(text(
        "SELECT details->>'actor_email' AS email, details->>'source' AS source"
        " FROM gemini_key_audit_log WHERE key_id = :id"
        "   AND (cardinality(CAST(:fields AS text[])) = 0"
        "        OR (details->'after') ?| CAST(:fields AS text[])"
        "        OR (action IN ('key_archived', 'key_unarchived', 'key_deleted')"
        "            AND 'archived_at' = ANY(CAST(:fields AS text[]))))"
        " ORDER BY created_at DESC, id DESC LIMIT 1"), {"id": key_id, "fields": columns}).first()
    return _actor_label(row.email, row.source) if row else None


def admin_right_changed_by(session: Session, email: str) -> str | None:
    """Who made the newest audited change of a user's admin right (or created them)."""
    row = session.execute(text(
        "SELECT details->>'actor_email' AS email, details->>'source' AS source"
        " FROM gemini_key_audit_log"
        " WHERE action IN ('admin_granted', 'admin_revoked', 'user_created')"
        "   AND details->>'email' = :email"
        " ORDER BY created_at DESC, id DESC LIMIT 1"), {"email": email}).first()
    return _actor_label(row.email, row.source) if row else None
