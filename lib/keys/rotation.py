"""Master-key rotation: re-encrypt every stored key under a new master key, all or nothing.

Everything happens in the caller's ONE transaction, so a rotation killed at any moment
leaves the database exactly as it was (every key decrypts with the old key), and a finished
one leaves every key, fingerprint and the check value under the new key only.

Concurrency (why the lock order matters):
- The check row is locked FOR UPDATE first: two rotations serialise on it, and the second
  then fails its check-value verification because the first changed the key.
- Then every live key row is locked FOR UPDATE, so a concurrent delete (tombstone) cannot
  be overwritten with re-encrypted material, and edits wait a moment instead of racing.
- add_key does not know about rotations; migration 0003's trigger does. It takes a SHARE
  lock on the check row for every INSERT (or ciphertext UPDATE) of a live key, so an add that
  starts during a rotation waits for it, then fails because its row carries the old version,
  and an add that already inserted makes the rotation wait and is then re-encrypted with the
  rest. After a rotation, a process still holding the old key can add nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import ApiKey
from lib.audit.log import Action, write_audit
from lib.crypto.master_key import lock_check_row
from lib.crypto.sealed import MasterKey, make_check_value, seal, unseal, verify_check_value
from lib.errors import InvalidInput
from lib.key_format import ApiKeyText
from lib.keys.status import NOT_DELETED
from lib.keys.writes import reseal
from lib.notify import hooks as notify
from lib.secret_files import publish_secret_file

BATCH_SIZE = 100
Progress = Callable[[int, int], None]  # (keys re-encrypted so far, total)


@dataclass(frozen=True)
class RotationResult:
    rotated: int
    skipped_deleted: int
    old_version: int
    new_version: int
    new_master: MasterKey



def rotate_master_key(session: Session, current: MasterKey, new_key: bytes, *,
                      progress: Progress | None = None,
                      batch_size: int = BATCH_SIZE) -> RotationResult:
    """Re-encrypt every live key (tombstones hold no material) from `current` to `new_key`.

    Raises MasterKeyMismatch before changing anything when `current` is not the database's
    key. Writes one MASTER_KEY_ROTATED audit row (counts and versions, no key material).
    """
    row = lock_check_row(session, current)
    old = replace(current, version=row.master_key_version)
    verify_check_value(old, row.check_value)
    new = MasterKey(key=new_key, version=old.version + 1)
    if new.key == old.key:
        raise InvalidInput("the new master key is the same as the current one")

    # The check row moves first, so migration 0003's trigger sees the new version for the
    # rows re-encrypted below (it is the same transaction; nobody else sees either yet).
    row.master_key_version = new.version
    row.check_value = make_check_value(new)
    row.updated_at = func.now()
    session.flush()

    live = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.encrypted_key, ApiKey.encryption_iv,
               ApiKey.encryption_tag, ApiKey.master_key_version)
        .where(NOT_DELETED.expr()).order_by(ApiKey.id).with_for_update()
    ).all()
    total = len(live)
    if progress:
        progress(0, total)
    for start in range(0, total, batch_size):
        changes = []
        for key in live[start:start + batch_size]:
            # Stored keys were normalised when they were added.
            plaintext = ApiKeyText(unseal(old, key))
            changes.append({"id": key.id, **seal(new, key.id, plaintext).columns()})
        reseal(session, changes)
        if progress:
            progress(min(start + batch_size, total), total)

    skipped = session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.deleted_at.is_not(None))) or 0
    write_audit(session, action=Action.MASTER_KEY_ROTATED, details={
        "count": total, "skipped_deleted": skipped,
        "old_version": old.version, "new_version": new.version})
    notify.master_key_rotated(session, rotated=total, skipped_deleted=skipped,
                              old_version=old.version, new_version=new.version)
    return RotationResult(total, skipped, old.version, new.version, new)


def write_key_file(path: Path, master_key_b64: str) -> Path:
    """Create `path` with mode 0600 (never overwrite); the key is on disk before it is used."""
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not publish_secret_file(path, master_key_b64):
        raise InvalidInput(f"{path} already exists; choose another --new-key-file")
    return path


def new_key_bytes(master_key_b64: str) -> bytes:
    return base64.b64decode(master_key_b64, validate=True)
