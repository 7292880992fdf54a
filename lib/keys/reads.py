"""Reading stored keys: the keys table (masked, never decrypted), lookups, groups, counts,
and the one place a stored key is turned back into its plaintext (reveal_key)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import ApiKey
from lib.clock import utc_now
from lib.crypto.sealed import KeyDecryptionError, MasterKey, fingerprint, unseal
from lib.errors import InvalidInput, NotFound, refuse_nul
from lib.key_format import KeyKind, kind_of_hint, looks_like_key, normalise_api_key
from lib.keys.rules import NAME_MAX_LENGTH, has_control_chars, is_uuid
from lib.keys.status import IN_SERVICE, NOT_DELETED, KeyStatus, key_status, status_label

DEFAULT_LIMIT = 10_000

# One query; created_by's email comes from gemini_user_directory() (migration 0002), because
# the app's role may not read auth.users itself (on Supabase it never can).
_LIST_SQL = """
SELECT k.id, k.name, k.masked_hint, k.group_label, k.is_active, k.priority, k.usage_count,
       k.failure_count, k.last_used, k.created_at, k.archived_at, k.disabled_reason,
       k.cooldown_until, u.email AS created_by_email
FROM gemini_api_keys k
LEFT JOIN public.gemini_user_directory() u ON u.id = k.created_by
WHERE {not_deleted} {where}
ORDER BY k.priority DESC, lower(k.name)
LIMIT :limit
"""


@dataclass(frozen=True)
class KeyListRow:
    """One row of the keys table: everything shown about a key, masked, nothing decrypted."""

    id: uuid.UUID
    name: str
    masked_hint: str
    group_label: str | None
    is_active: bool | None
    priority: int | None
    usage_count: int | None
    failure_count: int | None
    last_used: dt.datetime | None
    created_at: dt.datetime | None
    archived_at: dt.datetime | None
    disabled_reason: str | None
    cooldown_until: dt.datetime | None
    created_by_email: str | None

    @property
    def kind(self) -> KeyKind | None:
        """standard (AIza…) or authorization (AQ.…), read off the stored masked hint."""
        return kind_of_hint(self.masked_hint)

    def status(self, now: dt.datetime | None = None) -> KeyStatus:
        return key_status(deleted=False, archived=self.archived_at is not None,
                          is_active=self.is_active, disabled_reason=self.disabled_reason,
                          cooldown_until=self.cooldown_until, now=now or utc_now())

    def status_label(self, now: dt.datetime | None = None) -> str:
        return status_label(self.status(now), self.disabled_reason)


@dataclass(frozen=True)
class KeyFilter:
    """search: part of a name or group (or a whole API key, matched by fingerprint);
    active: True/False/None for any; group: exact label, "" for keys without one;
    archived: False hides archived keys (the default), True shows only them, None both."""

    search: str = ""
    active: bool | None = None
    group: str | None = None
    archived: bool | None = False

    def __post_init__(self) -> None:
        refuse_nul(self.search or "", "search text")
        refuse_nul(self.group or "", "group")


def like_pattern(term: str) -> str:
    """`term` anywhere, with LIKE's wildcards escaped (use with ESCAPE '\\', the default)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_keys(session: Session, filters: KeyFilter = KeyFilter(), *,
              master: MasterKey | None = None, limit: int = DEFAULT_LIMIT) -> list[KeyListRow]:
    """Rows for the keys table, highest priority first. One query; nothing is decrypted."""
    where: list[str] = []
    params: dict[str, object] = {"limit": limit}
    search = (filters.search or "").strip()
    if search and looks_like_key(search):
        # A whole key pasted into the search: find its row by keyed fingerprint.
        if master is None:
            raise InvalidInput("Searching by API key needs the master key.")
        where.append("k.fingerprint = :fingerprint")
        params["fingerprint"] = fingerprint(master, normalise_api_key(search))
    elif search:
        where.append("(k.name ILIKE :search OR coalesce(k.group_label, '') ILIKE :search)")
        params["search"] = like_pattern(search)
    if filters.active is not None:
        where.append("coalesce(k.is_active, false) = :active")
        params["active"] = filters.active
    if filters.group is not None:
        where.append("coalesce(k.group_label, '') = :group")
        params["group"] = filters.group
    if filters.archived is not None:
        where.append("k.archived_at IS NOT NULL" if filters.archived else "k.archived_at IS NULL")
    sql = _LIST_SQL.format(not_deleted=NOT_DELETED.sql("k"),
                           where="".join(f" AND {w}" for w in where))
    return [KeyListRow(**row._mapping) for row in session.execute(text(sql), params)]


def key_groups(session: Session) -> list[str]:
    """Distinct group labels of stored keys (archived ones too), for the filters."""
    return list(session.scalars(select(ApiKey.group_label).distinct().where(
        NOT_DELETED.expr(), ApiKey.group_label.is_not(None)).order_by(ApiKey.group_label)))


def count_stored_keys(session: Session) -> int:
    """Keys not deleted, archived included (the page's empty state needs to know about any)."""
    return session.scalar(text(f"SELECT count(*) FROM gemini_api_keys k "
                               f"WHERE {NOT_DELETED.sql('k')}"))


def in_service_key_ids(session: Session) -> list[uuid.UUID]:
    """Every key `check-keys --all` checks: not deleted, not archived (active or not)."""
    return list(session.scalars(select(ApiKey.id).where(IN_SERVICE.expr())
                                .order_by(ApiKey.priority.desc(), ApiKey.name)))


def name_taken(session: Session, name: str, *, except_id: uuid.UUID | None = None) -> bool:
    """Whether a stored key already has this name (case-insensitive)."""
    query = select(ApiKey.id).where(NOT_DELETED.expr(), func.lower(ApiKey.name) == name.lower())
    if except_id is not None:
        query = query.where(ApiKey.id != except_id)
    return session.scalar(query.limit(1)) is not None


def find_by_fingerprint(session: Session, key_fingerprint: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(NOT_DELETED.expr(),
                                               ApiKey.fingerprint == key_fingerprint))


def resolve_key(session: Session, name_or_id: str | uuid.UUID, *,
                for_update: bool = False) -> ApiKey:
    """A stored (not deleted) key by uuid or by case-insensitive name; NotFound otherwise.

    for_update locks the row until the end of the transaction (every change does).
    """
    if isinstance(name_or_id, uuid.UUID):
        key_id: uuid.UUID | None = name_or_id
        text_ = str(name_or_id)
    else:
        text_ = (name_or_id or "").strip() if isinstance(name_or_id, str) else ""
        if looks_like_key(text_):
            # Never echo it: someone passed the key itself instead of its name.
            raise NotFound("No such key: that argument looks like an API key; "
                           "pass the key's name or id instead.")
        key_id = uuid.UUID(text_) if is_uuid(text_) else None
    query = select(ApiKey).where(NOT_DELETED.expr())
    if key_id is not None:
        query = query.where(ApiKey.id == key_id)
    elif text_:
        query = query.where(func.lower(ApiKey.name) == text_.lower())
    key = session.scalar(query.with_for_update() if for_update else query) if (
        key_id is not None or text_) else None
    if key is None:
        shown = text_ if len(text_) <= NAME_MAX_LENGTH and not has_control_chars(text_) else "?"
        raise NotFound(f"No key named or with id {shown!r}.")
    return key


def reveal_key(master: MasterKey, key: ApiKey) -> str:
    """The plaintext key (for the pool's outgoing request); KeyDecryptionError names the key."""
    if key.deleted_at is not None or not key.encrypted_key:
        raise KeyDecryptionError(key.id, key.name, "the key was deleted; its ciphertext is gone")
    return unseal(master, key)
