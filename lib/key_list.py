"""The keys table (masked, never decrypted) and saving many in-place edits at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.models import ApiKey
from lib.audit import Action, write_audit
from lib.crypto import MasterKey, fingerprint
from lib.errors import InvalidInput
from lib.keys import looks_like_key, validate_priority

DEFAULT_LIMIT = 10_000

# One query; created_by's email comes from gemini_user_directory() (migration 0002), because
# the app's role may not read auth.users itself (on Supabase it never can).
_LIST_SQL = """
SELECT k.id, k.name, k.masked_hint, k.group_label, k.is_active, k.priority, k.usage_count,
       k.failure_count, k.last_used, k.created_at, k.archived_at, k.disabled_reason,
       k.cooldown_until, u.email AS created_by_email
FROM gemini_api_keys k
LEFT JOIN public.gemini_user_directory() u ON u.id = k.created_by
WHERE k.deleted_at IS NULL {where}
ORDER BY k.priority DESC, lower(k.name)
LIMIT :limit
"""

COLUMNS = ("id", "name", "masked_hint", "group_label", "is_active", "priority", "usage_count",
           "failure_count", "last_used", "created_at", "archived_at", "disabled_reason",
           "cooldown_until", "created_by_email")


@dataclass(frozen=True)
class KeyFilter:
    """search: part of a name or group (or a whole API key, matched by fingerprint);
    active: True/False/None for any; group: exact label, "" for keys without one;
    archived: False hides archived keys (the default), True shows only them, None both."""

    search: str = ""
    active: bool | None = None
    group: str | None = None
    archived: bool | None = False


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_keys(session: Session, filters: KeyFilter = KeyFilter(), *,
              master: MasterKey | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Rows for the keys table, highest priority first. One query; nothing is decrypted."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    search = (filters.search or "").strip()
    if search and looks_like_key(search):
        # A whole key pasted into the search: find its row by keyed fingerprint.
        if master is None:
            raise InvalidInput("Searching by API key needs the master key.")
        where.append("k.fingerprint = :fingerprint")
        params["fingerprint"] = fingerprint(master, search)
    elif search:
        where.append("(k.name ILIKE :search OR coalesce(k.group_label, '') ILIKE :search)")
        params["search"] = _like(search)
    if filters.active is not None:
        where.append("coalesce(k.is_active, false) = :active")
        params["active"] = filters.active
    if filters.group is not None:
        where.append("coalesce(k.group_label, '') = :group")
        params["group"] = filters.group
    if filters.archived is not None:
        where.append("k.archived_at IS NOT NULL" if filters.archived else "k.archived_at IS NULL")
    sql = _LIST_SQL.format(where="".join(f" AND {w}" for w in where))
    result = session.execute(text(sql), params)
    names = list(result.keys())
    return [dict(zip(names, row, strict=True)) for row in result]


def key_groups(session: Session) -> list[str]:
    """Distinct group labels of live keys, for the filter."""
    return list(session.scalars(select(ApiKey.group_label).distinct().where(
        ApiKey.deleted_at.is_(None), ApiKey.group_label.is_not(None)).order_by(
        ApiKey.group_label)))


def count_keys(session: Session) -> int:
    """Live keys, archived included (the page's empty state needs to know about any)."""
    return session.scalar(text("SELECT count(*) FROM gemini_api_keys WHERE deleted_at IS NULL"))


# -- bulk edit ------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyEdit:
    """One row of the editor: the values the admin saw and the values they want."""

    key_id: uuid.UUID
    seen_active: bool
    seen_priority: int
    active: bool
    priority: int


@dataclass(frozen=True)
class BulkEditSummary:
    changed: list[str]  # one line per changed key, e.g. "main: active → off, priority 1 → 5"
    conflicts: list[str]  # keys someone else changed (or removed) since the table was loaded

    def message(self) -> str:
        if not self.changed and not self.conflicts:
            return "Nothing changed."
        parts = []
        if self.changed:
            parts.append(f"Saved {len(self.changed)} key(s): " + "; ".join(self.changed))
        if self.conflicts:
            parts.append(f"Skipped {len(self.conflicts)} key(s) changed elsewhere since the "
                         "table was loaded (reload and try again): " + "; ".join(self.conflicts))
        return "\n\n".join(parts)


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def apply_edits(session: Session, edits: Iterable[KeyEdit]) -> BulkEditSummary:
    """Save many active/priority edits: one audit row per changed key, all in one transaction.

    Every priority is checked before anything changes. A key whose stored values differ from
    what the admin saw is skipped and reported, rather than overwriting someone else's change.
    """
    wanted = [e for e in edits
              if (bool(e.active), e.priority) != (bool(e.seen_active), e.seen_priority)]
    for edit in wanted:
        try:
            validate_priority(edit.priority)
        except InvalidInput as error:
            raise InvalidInput(f"Nothing was saved: {error}") from None
    if not wanted:
        return BulkEditSummary([], [])
    rows = {row.id: row for row in session.scalars(
        select(ApiKey).where(ApiKey.id.in_([e.key_id for e in wanted]),
                             ApiKey.deleted_at.is_(None))
        .order_by(ApiKey.id).with_for_update())}
    changed: list[str] = []
    conflicts: list[str] = []
    for edit in wanted:
        row = rows.get(edit.key_id)
        if row is None:
            conflicts.append(f"{edit.key_id} (deleted)")
            continue
        if (bool(row.is_active), row.priority) != (bool(edit.seen_active), edit.seen_priority):
            conflicts.append(row.name)
            continue
        changed.append(_apply_one(session, row, bool(edit.active), int(edit.priority)))
    return BulkEditSummary(changed, conflicts)


def _apply_one(session: Session, row: ApiKey, active: bool, priority: int) -> str:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    words = []
    if bool(row.is_active) != active:
        before["is_active"], after["is_active"] = row.is_active, active
        words.append(f"active {_on_off(bool(row.is_active))} → {_on_off(active)}")
        if active:
            before["disabled_reason"] = row.disabled_reason
            after.update(disabled_reason=None, consecutive_failures=0)
    if row.priority != priority:
        before["priority"], after["priority"] = row.priority, priority
        words.append(f"priority {row.priority} → {priority}")
    if "is_active" in after and "priority" in after:
        action = Action.KEY_UPDATED
    elif "priority" in after:
        action = Action.KEY_PRIORITY_CHANGED
    else:
        action = Action.KEY_ACTIVATED if active else Action.KEY_DEACTIVATED
    for column, value in after.items():
        setattr(row, column, value)
    session.flush()
    write_audit(session, action=action, key_id=row.id,
                details={"name": row.name, "before": before, "after": after,
                         "via": "bulk edit"})
    return f"{row.name}: {', '.join(words)}"
