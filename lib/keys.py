"""The key service: add, look up, reveal, and change stored Gemini keys (pages and CLI alike).

Every change flushes one audit row in the caller's transaction. Nothing here logs, and no
error message repeats a submitted key: names that contain a key-shaped text are refused
without being echoed, so a pasted key cannot reach a name, a message or an audit row.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import ApiKey
from db.session import actor_of
from lib.audit import Action, write_audit
from lib.crypto import (
    GEMINI_KEY_PATTERN,
    KeyDecryptionError,
    MasterKey,
    decrypt_api_key,
    encrypt_api_key,
    fingerprint,
    masked_hint,
    normalise_api_key,
)
from lib.errors import InvalidInput, NotFound

PRIORITY_MIN = 1
PRIORITY_MAX = 1000  # higher is preferred (the spec's index is priority DESC)
DEFAULT_PRIORITY = 1
NAME_MAX_LENGTH = 100
GROUP_MAX_LENGTH = 100  # the group_label column's width
REASON_MAX_LENGTH = 500


def utc_now() -> dt.datetime:
    """Naive UTC, as the spec's `timestamp without time zone` columns hold it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def looks_like_key(text: str) -> bool:
    """True when a key-shaped run appears anywhere in `text` (it must not be stored or echoed)."""
    return GEMINI_KEY_PATTERN.search(text or "") is not None


def _has_control_chars(text: str) -> bool:
    # Cc: control characters (\n, \t, \x00...), Cf: invisible formatting (zero-width, bidi
    # overrides that make a name display as another), Zl/Zp: line and paragraph separators.
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in text)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def validate_name(name: Any) -> str:
    """Trimmed name, 1..NAME_MAX_LENGTH printable characters, not a uuid, not a key."""
    if not isinstance(name, str):
        raise InvalidInput("The key name must be text.")
    name = name.strip()
    if not name:
        raise InvalidInput("The key name is empty.")
    if looks_like_key(name):
        raise InvalidInput("The key name contains an API key; put the key in the key field, "
                           "and give it a name like 'project-a-main'.")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(f"The key name is too long ({len(name)} characters; "
                           f"at most {NAME_MAX_LENGTH}).")
    if _has_control_chars(name):
        raise InvalidInput("The key name contains control or invisible characters.")
    if _is_uuid(name):
        raise InvalidInput("The key name cannot be a uuid (ids and names must not be confused).")
    return name


def validate_group(group_label: Any) -> str | None:
    """Trimmed group label (a Google Cloud project); empty means no group."""
    if group_label is None:
        return None
    if not isinstance(group_label, str):
        raise InvalidInput("The group must be text.")
    group_label = group_label.strip()
    if not group_label:
        return None
    if looks_like_key(group_label):
        raise InvalidInput("The group contains an API key; use the Google Cloud project name.")
    if len(group_label) > GROUP_MAX_LENGTH:
        raise InvalidInput(f"The group is too long ({len(group_label)} characters; "
                           f"at most {GROUP_MAX_LENGTH}).")
    if _has_control_chars(group_label):
        raise InvalidInput("The group contains control or invisible characters.")
    return group_label


def validate_priority(priority: Any) -> int:
    """An integer in PRIORITY_MIN..PRIORITY_MAX; digit strings (forms, files) are accepted."""
    if isinstance(priority, bool):
        raise InvalidInput("The priority must be a whole number, not true/false.")
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)
    if isinstance(priority, str):
        text = priority.strip()
        if not text.lstrip("+-").isdigit() or not text.isascii():
            raise InvalidInput(f"The priority must be a whole number from {PRIORITY_MIN} "
                               f"to {PRIORITY_MAX}.")
        priority = int(text)
    if not isinstance(priority, int):
        raise InvalidInput(f"The priority must be a whole number from {PRIORITY_MIN} "
                           f"to {PRIORITY_MAX}.")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidInput(f"The priority must be from {PRIORITY_MIN} to {PRIORITY_MAX} "
                           f"(higher is preferred); got {priority}.")
    return priority


def _validate_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInput("The reason must be text.")
    reason = reason.strip()
    if looks_like_key(reason):
        raise InvalidInput("The reason contains an API key; describe the reason instead.")
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(f"The reason is too long (at most {REASON_MAX_LENGTH} characters).")
    return reason or None


# -- lookups --------------------------------------------------------------------------------

def _live() -> Any:
    return ApiKey.deleted_at.is_(None)


def name_taken(session: Session, name: str, *, except_id: uuid.UUID | None = None) -> bool:
    query = select(ApiKey.id).where(_live(), func.lower(ApiKey.name) == name.lower())
    if except_id is not None:
        query = query.where(ApiKey.id != except_id)
    return session.scalar(query.limit(1)) is not None


def find_by_fingerprint(session: Session, key_fingerprint: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(_live(), ApiKey.fingerprint == key_fingerprint))


def resolve_key(session: Session, name_or_id: str | uuid.UUID) -> ApiKey:
    """A non-deleted key by uuid or by case-insensitive name; NotFound otherwise."""
    if isinstance(name_or_id, uuid.UUID):
        key_id: uuid.UUID | None = name_or_id
        text = str(name_or_id)
    else:
        text = (name_or_id or "").strip() if isinstance(name_or_id, str) else ""
        if looks_like_key(text):
            # Never echo it: someone passed the key itself instead of its name.
            raise NotFound("No such key: that argument looks like an API key; "
                           "pass the key's name or id instead.")
        key_id = uuid.UUID(text) if _is_uuid(text) else None
    if key_id is not None:
        key = session.scalar(select(ApiKey).where(_live(), ApiKey.id == key_id))
    elif text:
        key = session.scalar(select(ApiKey).where(_live(),
                                                  func.lower(ApiKey.name) == text.lower()))
    else:
        key = None
    if key is None:
        shown = text if len(text) <= NAME_MAX_LENGTH and not _has_control_chars(text) else "?"
        raise NotFound(f"No key named or with id {shown!r}.")
    return key


def _load_for_update(session: Session, key_id: uuid.UUID | str) -> ApiKey:
    if not isinstance(key_id, uuid.UUID):
        return _load_for_update(session, resolve_key(session, key_id).id)
    key = session.scalar(select(ApiKey).where(_live(), ApiKey.id == key_id).with_for_update())
    if key is None:
        raise NotFound(f"No key with id {key_id}.")
    return key


# -- adding ---------------------------------------------------------------------------------

def insert_validated_key(session: Session, master: MasterKey, *, name: str, api_key: str,
                         priority: int, group_label: str | None,
                         key_fingerprint: str) -> ApiKey:
    """Encrypt and add a validated key; the uuid is chosen first so the AAD binds to the row."""
    key_id = uuid.uuid4()
    sealed = encrypt_api_key(master, key_id=key_id, plaintext=api_key)
    row = ApiKey(
        id=key_id, name=name, encrypted_key=sealed.encrypted_key,
        encryption_iv=sealed.encryption_iv, encryption_tag=sealed.encryption_tag,
        master_key_version=sealed.master_key_version, fingerprint=key_fingerprint,
        masked_hint=masked_hint(api_key), priority=priority, group_label=group_label,
        is_active=True, created_by=actor_of(session).user_id,
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Lost a race with a concurrent add (unique name / fingerprint among live keys).
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
    key_fingerprint = fingerprint(master, api_key)
    existing = find_by_fingerprint(session, key_fingerprint)
    if existing is not None:
        raise InvalidInput(f"This API key is already stored, as {existing.name!r}.")
    row = insert_validated_key(session, master, name=name, api_key=api_key, priority=priority,
                               group_label=group_label, key_fingerprint=key_fingerprint)
    write_audit(session, action=Action.KEY_ADDED, key_id=row.id,
                details={"name": name, "priority": priority, "group": group_label})
    return row


def reveal_key(master: MasterKey, key: ApiKey) -> str:
    """The plaintext key (for the pool's outgoing request); KeyDecryptionError names the key."""
    if key.deleted_at is not None or not key.encrypted_key:
        raise KeyDecryptionError(key.id, key.name, "the key was deleted; its ciphertext is gone")
    return decrypt_api_key(
        master, key_id=key.id, key_name=key.name, encrypted_key=key.encrypted_key,
        encryption_iv=key.encryption_iv, encryption_tag=key.encryption_tag,
        master_key_version=key.master_key_version)


# -- changes (each: lock the row, no-op when unchanged, else change + one audit row) -------

def _touch(session: Session, key: ApiKey, action: str, before: dict[str, Any],
           after: dict[str, Any], **context: Any) -> ApiKey:
    for column, value in after.items():
        setattr(key, column, value)
    session.flush()
    write_audit(session, action=action, key_id=key.id,
                details={"name": key.name, "before": before, "after": after, **context})
    return key


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def set_active(session: Session, key_id: uuid.UUID | str, active: bool, *,
               reason: str | None = None) -> ApiKey:
    """Switch a key on or off. Switching on also clears an automatic disable's reason."""
    if not isinstance(active, bool):
        raise InvalidInput("active must be true or false.")
    reason = _validate_reason(reason)
    key = _load_for_update(session, key_id)
    if bool(key.is_active) == active and (active or reason is None
                                          or key.disabled_reason == reason):
        return key
    before = {"is_active": key.is_active, "disabled_reason": key.disabled_reason}
    after: dict[str, Any] = {"is_active": active}
    if active:
        after.update(disabled_reason=None, consecutive_failures=0)
        before["consecutive_failures"] = key.consecutive_failures
    else:
        after["disabled_reason"] = reason
    action = Action.KEY_ACTIVATED if active else Action.KEY_DEACTIVATED
    return _touch(session, key, action, before, after, reason=reason)


def set_priority(session: Session, key_id: uuid.UUID | str, priority: int) -> ApiKey:
    """Change the priority (PRIORITY_MIN..PRIORITY_MAX; higher is preferred)."""
    priority = validate_priority(priority)
    key = _load_for_update(session, key_id)
    if key.priority == priority:
        return key
    return _touch(session, key, Action.KEY_PRIORITY_CHANGED, {"priority": key.priority},
                  {"priority": priority})


def rename_key(session: Session, key_id: uuid.UUID | str, new_name: str) -> ApiKey:
    """Rename; the new name must be free among live keys (case-insensitive)."""
    new_name = validate_name(new_name)
    key = _load_for_update(session, key_id)
    if key.name == new_name:
        return key
    if name_taken(session, new_name, except_id=key.id):
        raise InvalidInput(f"A key named {new_name!r} already exists.")
    return _touch(session, key, Action.KEY_RENAMED, {"name": key.name}, {"name": new_name})


def set_group(session: Session, key_id: uuid.UUID | str, group_label: str | None) -> ApiKey:
    """Set (or clear, with None or '') the key's group: the Google Cloud project it belongs to."""
    group_label = validate_group(group_label)
    key = _load_for_update(session, key_id)
    if key.group_label == group_label:
        return key
    return _touch(session, key, Action.KEY_GROUP_CHANGED, {"group_label": key.group_label},
                  {"group_label": group_label})


def edit_key(session: Session, key_id: uuid.UUID | str, *, name: str,
             group_label: str | None, active: bool, priority: int) -> list[str]:
    """Apply a one-key edit form: each changed field is its own audited change.

    Returns the names of the fields that changed. A bad field raises, and the caller's
    transaction then stores none of them.
    """
    key = _load_for_update(session, key_id)
    before = {"name": key.name, "group": key.group_label, "priority": key.priority,
              "active": bool(key.is_active)}
    rename_key(session, key.id, name)
    set_group(session, key.id, group_label)
    set_priority(session, key.id, priority)
    set_active(session, key.id, active)
    after = {"name": key.name, "group": key.group_label, "priority": key.priority,
             "active": bool(key.is_active)}
    return [field for field in before if before[field] != after[field]]


def archive_key(session: Session, key_id: uuid.UUID | str) -> ApiKey:
    """Hide from the default list; the pool never picks an archived key."""
    key = _load_for_update(session, key_id)
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
    key = _load_for_update(session, key_id)
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
    key = _load_for_update(session, key_id)
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
