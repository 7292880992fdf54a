"""Every change to a stored key, each with its audit row in the caller's transaction.

Admins' changes (add, rename, regroup, switch, reprioritise, archive, delete, many at once)
and the automatic ones (the pool's disable and cooldown) all live here. Nothing here logs,
and no error message repeats a submitted key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import ApiKey
from db.session import actor_of
from lib.audit.log import Action, write_audit
from lib.audit.queries import key_changed_by
from lib.clock import naive_utc, utc_now
from lib.concurrency import (
    Check,
    Conflict,
    EditConflict,
    FieldChange,
    Note,
    SaveReport,
    check_edit,
)
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
#
# Optimistic concurrency (lib/concurrency.py): every admin write takes `expected`, the values
# the admin SAW for the fields it changes, by field name (EDIT_FIELDS). A field that moved
# since is refused with EditConflict (naming the key, seen → now, and who changed it), unless
# it already holds the wanted value. Without `expected` (the CLI) the write is unchecked.

# The admin-editable fields of a key, as edits and their messages name them → the column.
EDIT_FIELDS = {"name": "name", "group": "group_label", "active": "is_active",
               "priority": "priority", "archived": "archived_at"}

Expected = Mapping[str, Any] | None


def edit_values(key: ApiKey | Any) -> dict[str, Any]:
    """A key's admin-editable fields by EDIT_FIELDS name (from an ApiKey or a KeyListRow):
    what a page keeps as the values the admin saw."""
    return {"name": key.name, "group": key.group_label or None,
            "active": bool(key.is_active), "priority": key.priority,
            "archived": key.archived_at is not None}


def conflict_of(session: Session, key: ApiKey, changes: Sequence[FieldChange]) -> Conflict:
    """The refusal of an edit of `key`, with who made the change it collides with."""
    columns = [EDIT_FIELDS[c.field] for c in changes]
    return Conflict(key.name, tuple(changes), by=key_changed_by(session, key.id, columns))


def note_of(session: Session, key: ApiKey, changes: Sequence[FieldChange]) -> Note:
    columns = [EDIT_FIELDS[c.field] for c in changes]
    return Note(key.name, tuple(changes), by=key_changed_by(session, key.id, columns))


def check_key_edit(session: Session, key: ApiKey, wanted: Mapping[str, Any],
                   expected: Expected) -> Check:
    """Compare an edit with the locked row; EditConflict when a changed field moved."""
    check = check_edit(expected or {}, edit_values(key), wanted)
    if check.conflicts:
        raise EditConflict([conflict_of(session, key, check.conflicts)])
    return check


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


def _unchanged_by_check(session: Session, key: ApiKey, field_: str, value: Any,
                        expected: Expected) -> bool:
    """With `expected`: True when the edit has nothing to write to `field_` (raises on a
    conflict). Without: False (the caller compares with the row itself)."""
    if expected is None:
        return False
    return field_ not in check_key_edit(session, key, {field_: value}, expected).apply


def set_active(session: Session, key_id: uuid.UUID | str, active: bool, *,
               reason: str | None = None, expected: Expected = None) -> ApiKey:
    """Switch a key on or off. Switching on also clears an automatic disable's reason."""
    if not isinstance(active, bool):
        raise InvalidInput("active must be true or false.")
    reason = validate_reason(reason)
    key = _locked(session, key_id)
    if _unchanged_by_check(session, key, "active", active, expected):
        return key
    if bool(key.is_active) == active and (active or reason is None
                                          or key.disabled_reason == reason):
        return key
    if active:
        return _change(session, key, Action.KEY_ACTIVATED, {"is_active": True}, reason=reason)
    return _change(session, key, Action.KEY_DEACTIVATED,
                   {"is_active": False, "disabled_reason": reason}, reason=reason)


def set_priority(session: Session, key_id: uuid.UUID | str, priority: int, *,
                 expected: Expected = None) -> ApiKey:
    """Change the priority (PRIORITY_MIN..PRIORITY_MAX; higher is preferred)."""
    priority = validate_priority(priority)
    key = _locked(session, key_id)
    if _unchanged_by_check(session, key, "priority", priority, expected):
        return key
    if key.priority == priority:
        return key
    return _change(session, key, Action.KEY_PRIORITY_CHANGED, {"priority": priority})


def rename_key(session: Session, key_id: uuid.UUID | str, new_name: str, *,
               expected: Expected = None) -> ApiKey:
    """Rename; the new name must be free among stored keys (case-insensitive)."""
    new_name = validate_name(new_name)
    key = _locked(session, key_id)
    if _unchanged_by_check(session, key, "name", new_name, expected):
        return key
    if key.name == new_name:
        return key
    if name_taken(session, new_name, except_id=key.id):
        raise InvalidInput(f"A key named {new_name!r} already exists.")
    return _change(session, key, Action.KEY_RENAMED, {"name": new_name})


def set_group(session: Session, key_id: uuid.UUID | str, group_label: str | None, *,
              expected: Expected = None) -> ApiKey:
    """Set (or clear, with None or '') the key's group: the Google Cloud project it belongs to."""
    group_label = validate_group(group_label)
    key = _locked(session, key_id)
    if _unchanged_by_check(session, key, "group", group_label, expected):
        return key
    if key.group_label == group_label:
        return key
    return _change(session, key, Action.KEY_GROUP_CHANGED, {"group_label": group_label})


@dataclass(frozen=True)
class EditResult:
    """What an "Edit one" save did: the fields it changed, and the notes about fields it
    left alone that moved since the admin saw them (e.g. the pool disabled the key)."""

    changed: list[str]
    notes: list[Note] = field(default_factory=list)
    name: str = ""  # the key's name after the save (someone may have renamed it meanwhile)


def edit_key(session: Session, key_id: uuid.UUID | str, *, name: str,
             group_label: str | None, active: bool, priority: int,
             expected: Expected = None) -> EditResult:
    """Apply a one-key edit form: each changed field is its own audited change.

    With `expected` (the values the form showed), only the fields the admin changed are
    written, each checked against the row; a field someone else changed meanwhile refuses
    the whole form (EditConflict) and stores none of it. A bad field raises, and the
    caller's transaction then stores none of them.
    """
    if not isinstance(active, bool):
        raise InvalidInput("active must be true or false.")
    wanted = {"name": validate_name(name), "group": validate_group(group_label),
              "priority": validate_priority(priority), "active": active}
    key = _locked(session, key_id)
    before = edit_values(key)
    notes: list[Note] = []
    if expected is not None:
        check = check_key_edit(session, key, wanted, expected)
        if check.notes:
            notes.append(note_of(session, key, check.notes))
        wanted = check.apply
    if "name" in wanted:
        rename_key(session, key.id, wanted["name"])
    if "group" in wanted:
        set_group(session, key.id, wanted["group"])
    if "priority" in wanted:
        set_priority(session, key.id, wanted["priority"])
    if "active" in wanted:
        set_active(session, key.id, wanted["active"])
    after = edit_values(key)
    return EditResult([f for f in ("name", "group", "priority", "active")
                       if before[f] != after[f]], notes, key.name)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def archive_key(session: Session, key_id: uuid.UUID | str, *,
                expected: Expected = None) -> ApiKey:
    """Hide from the default list; the pool never picks an archived key."""
    key = _locked(session, key_id)
    if _unchanged_by_check(session, key, "archived", True, expected):
        return key
    if key.archived_at is not None:
        return key
    now = utc_now()
    key.archived_at = now
    session.flush()
    write_audit(session, action=Action.KEY_ARCHIVED, key_id=key.id,
                details={"name": key.name, "archived_at": _iso(now)})
    return key


def unarchive_key(session: Session, key_id: uuid.UUID | str, *,
                  expected: Expected = None) -> ApiKey:
    """Bring an archived key back to the list (and, if active, to the pool)."""
    key = _locked(session, key_id)
    if _unchanged_by_check(session, key, "archived", False, expected):
        return key
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


BulkEditSummary = SaveReport  # .changed, .conflicts (lib.concurrency.Conflict), .notes


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _locked_rows(session: Session, key_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ApiKey]:
    """The stored keys among `key_ids`, locked in id order (no deadlock between saves)."""
    return {row.id: row for row in session.scalars(
        select(ApiKey).where(ApiKey.id.in_(list(key_ids)), NOT_DELETED.expr())
        .order_by(ApiKey.id).with_for_update())}


def _gone(key_id: uuid.UUID, names: Mapping[uuid.UUID, str] | None) -> Conflict:
    return Conflict((names or {}).get(key_id) or str(key_id), gone=True)


def apply_edits(session: Session, edits: Iterable[KeyEdit], *,
                names: Mapping[uuid.UUID, str] | None = None) -> SaveReport:
    """Save many active/priority edits: one audit row per changed key, all in one transaction.

    Every priority is checked before anything changes. Each row is checked field by field
    against what the admin saw (lib.concurrency.check_edit): a key whose edited field someone
    else changed meanwhile is refused and reported (who, seen → now), the others are saved.
    names: the names the page showed, for keys deleted meanwhile.
    """
    wanted = [e for e in edits
              if (bool(e.active), e.priority) != (bool(e.seen_active), e.seen_priority)]
    for edit in wanted:
        try:
            validate_priority(edit.priority)
        except InvalidInput as error:
            raise InvalidInput(f"Nothing was saved: {error}") from None
    report = SaveReport()
    if not wanted:
        return report
    rows = _locked_rows(session, (e.key_id for e in wanted))
    for edit in wanted:
        row = rows.get(edit.key_id)
        if row is None:
            report.conflicts.append(_gone(edit.key_id, names))
            continue
        check = check_edit({"active": bool(edit.seen_active), "priority": edit.seen_priority},
                           edit_values(row),
                           {"active": bool(edit.active), "priority": int(edit.priority)})
        if check.conflicts:
            report.conflicts.append(conflict_of(session, row, check.conflicts))
            continue
        if check.notes:
            report.notes.append(note_of(session, row, check.notes))
        if check.apply:
            report.changed.append(_apply_edit(session, row, check.apply.get("active"),
                                              check.apply.get("priority")))
    return report


def set_archived_many(session: Session, key_ids: Iterable[uuid.UUID], archived: bool, *,
                      names: Mapping[uuid.UUID, str] | None = None) -> SaveReport:
    """Archive (or unarchive) the ticked keys; a key deleted meanwhile is reported, the others
    are changed (one audit row each); one already so is left alone."""
    ids = list(dict.fromkeys(key_ids))
    rows = _locked_rows(session, ids)
    report = SaveReport()
    for key_id in ids:
        row = rows.get(key_id)
        if row is None:
            report.conflicts.append(_gone(key_id, names))
        elif (row.archived_at is not None) != archived:
            (archive_key if archived else unarchive_key)(session, row.id)
            report.changed.append(f"{row.name}: {'archived' if archived else 'unarchived'}")
    return report


def _apply_edit(session: Session, row: ApiKey, active: bool | None,
                priority: int | None) -> str:
    after: dict[str, Any] = {}
    words = []
    if active is not None and bool(row.is_active) != active:
        after["is_active"] = active
        words.append(f"active {_on_off(bool(row.is_active))} → {_on_off(active)}")
    if priority is not None and row.priority != priority:
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

