"""Every change to a stored key, each with its audit row in the caller's transaction.

Admins' changes (add, rename, regroup, switch, reprioritise, archive, delete, many at once)
and the automatic ones (the pool's disable and cooldown) all live here. Nothing here logs,
and no error message repeats a submitted key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import ApiKey
from db.session import actor_of
from lib.audit.log import Action, write_audit
from lib.clock import naive_utc, utc_now
from lib.crypto.sealed import MasterKey, fingerprint, seal
from lib.errors import InvalidInput, NotFound
from lib.key_format import ApiKeyText, normalise_api_key
from lib.keys.reads import find_by_fingerprint, name_taken, resolve_key
from lib.keys.rules import (
    DEFAULT_PRIORITY,
    REASON_MAX_LENGTH,
    validate_group,
    validate_name,
    validate_priority,
    validate_reason,
)
from lib.keys.status import NOT_DELETED
from lib.notify import hooks as notify

# -- adding ---------------------------------------------------------------------------------


def insert_key(session: Session, master: MasterKey, *, name: str, api_key: ApiKeyText,
               priority: int, group_label: str | None) -> ApiKey:
    """Seal and add a validated key; the uuid is chosen first so the AAD binds to the row."""
    key_id = uuid.uuid4()
    row = ApiKey(id=key_id, name=name, priority=priority, group_label=group_label,
                 is_active=True, created_by=actor_of(session).user_id,
                 **seal(master, key_id, api_key).columns())
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Lost a race with a concurrent add (unique name / fingerprint among stored keys).
        raise InvalidInput(f"A key named {name!r} or this same key was just added by "
                           "someone else.") from None
    return row


def add_key(session: Session, master: MasterKey, *, name: str, api_key: str,
            priority: int = DEFAULT_PRIORITY, group_label: str | None = None) -> ApiKey:
    """Validate, refuse duplicates (by name and by keyed fingerprint), encrypt, store, audit."""
    name = validate_name(name)
    api_key = normalise_api_key(api_key)
    priority = validate_priority(priority)
    group_label = validate_group(group_label)
    if name_taken(session, name):
        raise InvalidInput(f"A key named {name!r} already exists.")
    existing = find_by_fingerprint(session, fingerprint(master, api_key))
    if existing is not None:
        raise InvalidInput(f"This API key is already stored, as {existing.name!r}.")
    row = insert_key(session, master, name=name, api_key=api_key, priority=priority,
                     group_label=group_label)
    write_audit(session, action=Action.KEY_ADDED, key_id=row.id,
                details={"name": name, "priority": priority, "group": group_label})
    return row


def reseal(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write re-encrypted keys ({"id": …, **SealedKey.columns()}) in one executemany
    (master-key rotation; its one audit row is the rotation's)."""
    session.execute(update(ApiKey), rows)


# -- admins' changes (each: lock the row, no-op when unchanged, else change + one audit row) --

def _locked(session: Session, key_id: uuid.UUID | str) -> ApiKey:
    if not isinstance(key_id, uuid.UUID):
        return resolve_key(session, key_id, for_update=True)
    key = session.scalar(select(ApiKey).where(NOT_DELETED.expr(), ApiKey.id == key_id)
                         .with_for_update())
    if key is None:
        raise NotFound(f"No key with id {key_id}.")
    return key


def _change(session: Session, key: ApiKey, action: str, after: dict[str, Any],
            **context: Any) -> ApiKey:
    """Set the columns in `after`, flush, and write one audit row with before → after.

    Switching a key on also clears an automatic disable's reason and its failure run: that
    rule lives here only, whichever path switches the key on.
    """
    if after.get("is_active") is True:
        after = {**after, "disabled_reason": None, "consecutive_failures": 0}
    before = {column: getattr(key, column) for column in after}
    for column, value in after.items():
        setattr(key, column, value)
    session.flush()
    write_audit(session, action=action, key_id=key.id,
                details={"name": key.name, "before": before, "after": after, **context})
    return key


def set_active(session: Session, key_id: uuid.UUID | str, active: bool, *,
               reason: str | None = None) -> ApiKey:
    """Switch a key on or off. Switching on also clears an automatic disable's reason."""
    if not isinstance(active, bool):
        raise InvalidInput("active must be true or false.")
    reason = validate_reason(reason)
    key = _locked(session, key_id)
    if bool(key.is_active) == active and (active or reason is None
                                          or key.disabled_reason == reason):
        return key
    if active:
        return _change(session, key, Action.KEY_ACTIVATED, {"is_active": True}, reason=reason)
    return _change(session, key, Action.KEY_DEACTIVATED,
                   {"is_active": False, "disabled_reason": reason}, reason=reason)


def set_priority(session: Session, key_id: uuid.UUID | str, priority: int) -> ApiKey:
    """Change the priority (PRIORITY_MIN..PRIORITY_MAX; higher is preferred)."""
    priority = validate_priority(priority)
    key = _locked(session, key_id)
    if key.priority == priority:
        return key
    return _change(session, key, Action.KEY_PRIORITY_CHANGED, {"priority": priority})


def rename_key(session: Session, key_id: uuid.UUID | str, new_name: str) -> ApiKey:
    """Rename; the new name must be free among stored keys (case-insensitive)."""
    new_name = validate_name(new_name)
    key = _locked(session, key_id)
    if key.name == new_name:
        return key
    if name_taken(session, new_name, except_id=key.id):
        raise InvalidInput(f"A key named {new_name!r} already exists.")
    return _change(session, key, Action.KEY_RENAMED, {"name": new_name})


def set_group(session: Session, key_id: uuid.UUID | str, group_label: str | None) -> ApiKey:
    """Set (or clear, with None or '') the key's group: the Google Cloud project it belongs to."""
    group_label = validate_group(group_label)
    key = _locked(session, key_id)
    if key.group_label == group_label:
        return key
    return _change(session, key, Action.KEY_GROUP_CHANGED, {"group_label": group_label})


def edit_key(session: Session, key_id: uuid.UUID | str, *, name: str,
             group_label: str | None, active: bool, priority: int) -> list[str]:
    """Apply a one-key edit form: each changed field is its own audited change.

    Returns the names of the fields that changed. A bad field raises, and the caller's
    transaction then stores none of them.
    """
    key = _locked(session, key_id)
    before = {"name": key.name, "group": key.group_label, "priority": key.priority,
              "active": bool(key.is_active)}
    rename_key(session, key.id, name)
    set_group(session, key.id, group_label)
    set_priority(session, key.id, priority)
    set_active(session, key.id, active)
    after = {"name": key.name, "group": key.group_label, "priority": key.priority,
             "active": bool(key.is_active)}
    return [field for field in before if before[field] != after[field]]


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def archive_key(session: Session, key_id: uuid.UUID | str) -> ApiKey:
    """Hide from the default list; the pool never picks an archived key."""
    key = _locked(session, key_id)
    if key.archived_at is not None:
        return key
    now = utc_now()
    key.archived_at = now
    session.flush()
    write_audit(session, action=Action.KEY_ARCHIVED, key_id=key.id,
                details={"name": key.name, "archived_at": _iso(now)})
    return key


def unarchive_key(session: Session, key_id: uuid.UUID | str) -> ApiKey:
    """Bring an archived key back to the list (and, if active, to the pool)."""
    key = _locked(session, key_id)
    if key.archived_at is None:
        return key
    archived_at = key.archived_at
    key.archived_at = None
    session.flush()
    write_audit(session, action=Action.KEY_UNARCHIVED, key_id=key.id,
                details={"name": key.name, "archived_at": _iso(archived_at)})
    return key


def delete_key(session: Session, key_id: uuid.UUID | str) -> ApiKey:
    """Tombstone: the row and its audit history stay, the ciphertext and fingerprint go.

    The spec's ON DELETE CASCADE would erase the audit history with the row (and the audit
    log refuses deletes anyway), so the row is kept with deleted_at set. With the ciphertext
    wiped it can never be decrypted again; the name and the same key can be added anew.
    """
    key = _locked(session, key_id)
    now = utc_now()
    key.deleted_at = now
    key.is_active = False
    key.encrypted_key = ""
    key.encryption_iv = ""
    key.encryption_tag = ""
    key.fingerprint = None
    session.flush()
    write_audit(session, action=Action.KEY_DELETED, key_id=key.id,
                details={"name": key.name, "deleted_at": _iso(now),
                         "was_archived": key.archived_at is not None})
    return key


# -- many keys at once (the Keys table) -----------------------------------------------------

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
        select(ApiKey).where(ApiKey.id.in_([e.key_id for e in wanted]), NOT_DELETED.expr())
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
        changed.append(_apply_edit(session, row, bool(edit.active), int(edit.priority)))
    return BulkEditSummary(changed, conflicts)


def _apply_edit(session: Session, row: ApiKey, active: bool, priority: int) -> str:
    after: dict[str, Any] = {}
    words = []
    if bool(row.is_active) != active:
        after["is_active"] = active
        words.append(f"active {_on_off(bool(row.is_active))} → {_on_off(active)}")
    if row.priority != priority:
        after["priority"] = priority
        words.append(f"priority {row.priority} → {priority}")
    if "is_active" in after and "priority" in after:
        action = Action.KEY_UPDATED
    elif "priority" in after:
        action = Action.KEY_PRIORITY_CHANGED
    else:
        action = Action.KEY_ACTIVATED if active else Action.KEY_DEACTIVATED
    _change(session, row, action, after, via="bulk edit")
    return f"{row.name}: {', '.join(words)}"


# -- automatic changes (the pool, health checks): one audit row per key they change ---------

def auto_disable(session: Session, key_id: uuid.UUID, *, reason: str, trigger: str = "pool",
                 error: dict[str, Any] | None = None,
                 min_consecutive_failures: int | None = None, note: str | None = None) -> bool:
    """Deactivate an active key with `reason`; False when it was not active (or, with
    min_consecutive_failures, when a success has since reset its run of failures).

    error: what the audit row says about the error (lib.pool.policy.error_details).
    consecutive_failures goes back to 0 (the audit row keeps the count), so a key an admin
    reactivates gets a fresh run.
    """
    guard = "" if min_consecutive_failures is None else " AND old.consecutive_failures >= :n"
    row = session.execute(text(
        "UPDATE gemini_api_keys k SET is_active = false, disabled_reason = :reason,"
        " consecutive_failures = 0"
        " FROM (SELECT id, consecutive_failures FROM gemini_api_keys"
        "       WHERE id = :id FOR UPDATE) old"
        f" WHERE k.id = old.id AND k.is_active IS TRUE AND {NOT_DELETED.sql('k')}{guard}"
        " RETURNING k.name, old.consecutive_failures"),
        {"id": key_id, "reason": reason[:REASON_MAX_LENGTH],
         "n": min_consecutive_failures}).first()
    if row is None:
        return False
    write_audit(session, action=Action.KEY_AUTO_DISABLED, key_id=key_id, details={
        "name": row.name, "reason": reason, "trigger": trigger,
        "before": {"is_active": True, "consecutive_failures": row.consecutive_failures},
        "after": {"is_active": False, "disabled_reason": reason},
        "error": error,
        **({"detail": note} if note else {}),
    })
    notify.key_auto_disabled(session, key_id, reason=reason, trigger=trigger)  # after commit
    return True


def apply_cooldown(session: Session, key_id: uuid.UUID, *, until: dt.datetime,
                   group_label: str | None, whole_group: bool, scope: str = "minute",
                   error: dict[str, Any] | None = None, trigger: str = "pool") -> list[str]:
    """Cool the key (and, with whole_group, its group) down until `until` (aware UTC).

    Keys already cooling at least that long are left alone (no audit row), so a burst of
    429s on one key writes one row. Rows are locked in id order: two concurrent group
    cooldowns cannot deadlock. Returns the names of the keys changed.
    """
    same_group = whole_group and group_label is not None
    where = "(id = :id OR group_label = :group)" if same_group else "id = :id"
    rows = session.execute(text(
        "WITH target AS (SELECT id, cooldown_until FROM gemini_api_keys"
        f"  WHERE {where} AND {NOT_DELETED.sql(None)}"
        "    AND (cooldown_until IS NULL OR cooldown_until < :until)"
        "  ORDER BY id FOR UPDATE)"
        " UPDATE gemini_api_keys k SET cooldown_until = :until FROM target"
        " WHERE k.id = target.id RETURNING k.id, k.name, target.cooldown_until AS before"),
        {"id": key_id, "group": group_label, "until": naive_utc(until)}).all()
    for row in sorted(rows, key=lambda r: r.id != key_id):  # the key that hit the limit first
        details: dict[str, Any] = {
            "name": row.name, "trigger": trigger, "scope": scope,
            "reason": ("per-day quota exhausted" if scope == "day" else "rate limited"),
            "before": {"cooldown_until": row.before.isoformat() if row.before else None},
            "after": {"cooldown_until": naive_utc(until).isoformat()},
            "error": error,
        }
        if row.id != key_id:
            details["reason"] += f" on another key of group {group_label!r}"
            details["caused_by_key_id"] = str(key_id)
        if same_group:
            details["group_label"] = group_label
        write_audit(session, action=Action.KEY_COOLDOWN, key_id=row.id, details=details)
    notify.keys_cooled(session, key_id, [row.id for row in rows], group_label=group_label,
                       whole_group=same_group, until=until, scope=scope)  # after commit
    return [row.name for row in rows]

