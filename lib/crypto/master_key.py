"""Where the master key comes from (the setting, or a development-only key file), whether it
is strong enough, and whether it is the key this database's keys were encrypted with."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import MASTER_KEY_LOCK_ID, ApiKey, MasterKeyCheck
from lib.audit.log import Action, write_audit
from lib.crypto.sealed import (
    GENERATE_HINT,
    MASTER_KEY_ENV,
    MasterKey,
    MasterKeyError,
    MasterKeyMismatch,
    generate_master_key_b64,
    make_check_value,
    unseal,
    verify_check_value,
)
from lib.errors import ConfigurationError, InvalidInput
from lib.keys.status import NOT_DELETED
from lib.secret_files import publish_secret_file, read_secret_file
from lib.settings import Settings

DEV_KEY_FILENAME = "master.key"
RESTORE_COMMAND = "python -m lib.cli restore-master-key-check"
# 32 random bytes hold ~30 distinct values; fewer than this is a hand-made or patterned key.
MIN_DISTINCT_BYTES = 16

log = logging.getLogger("gemini_keys")


def _create_dev_key(path: Path) -> None:
    if publish_secret_file(path, generate_master_key_b64()):
        log.warning(
            "DEVELOPMENT master key generated at %s; set %s in production "
            "(keys encrypted with this file are unreadable without it)",
            path,
            MASTER_KEY_ENV,
        )


def _read_dev_key(path: Path) -> MasterKey:
    try:
        text = read_secret_file(path, "development master key")
    except ConfigurationError as error:
        raise MasterKeyError(str(error)) from None
    return MasterKey.from_base64(text, source=str(path))


def refuse_weak_key(master: MasterKey, data_dir: Path, source: str) -> None:
    """Production only: refuse a patterned key or the generated development key."""
    if len(set(master.key)) < MIN_DISTINCT_BYTES:
        raise MasterKeyError(f"{source} is not random enough to be a master key; {GENERATE_HINT}")
    path = data_dir / DEV_KEY_FILENAME
    try:
        dev = MasterKey.from_base64(path.read_text(encoding="ascii"), source=str(path))
    except (OSError, MasterKeyError):
        return
    if dev.key == master.key:
        raise MasterKeyError(
            f"{source} is the generated DEVELOPMENT key from {path}; production needs its "
            f"own key; {GENERATE_HINT}")


def load_master_key(settings: Settings) -> tuple[MasterKey, bool]:
    """Return (master key, is_dev_default): GEMINI_KEYS_MASTER_KEY, or in development the key
    file data_dir/master.key (created on first use).

    In production the file is never used, and a patterned key or one equal to the
    development key file is refused. The returned key has version 1: the database's
    gemini_master_key_check row holds the version in force (see verify_master_key).
    """
    if settings.master_key:
        source = MASTER_KEY_ENV
        master = MasterKey.from_base64(settings.master_key, source=source)
        if settings.production:
            refuse_weak_key(master, settings.data_dir, source)
        return master, False
    if settings.production:
        raise MasterKeyError(
            f"no master key configured: set {MASTER_KEY_ENV} in the environment or in "
            f".streamlit/secrets.toml; {GENERATE_HINT}"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / DEV_KEY_FILENAME
    if not path.exists():
        _create_dev_key(path)
    else:
        log.warning("using DEVELOPMENT master key from %s; set %s in production",
                    path, MASTER_KEY_ENV)
    return _read_dev_key(path), True


class MasterKeyCheckMissing(MasterKeyError):
    """Keys are stored but the check value that proves which master key they need is gone."""

    def __init__(self, stored_keys: int) -> None:
        self.stored_keys = stored_keys
        super().__init__(
            f"this database holds {stored_keys} encrypted key(s) but no master-key check value "
            "(table gemini_master_key_check is empty), so nothing proves that "
            f"{MASTER_KEY_ENV} is the key they were encrypted with; refusing to start and "
            "writing nothing. Restore the row from a backup, or configure the right key and "
            f"run `{RESTORE_COMMAND}`: it decrypts every stored key first and records the "
            "check value only if all of them decrypt")


def stored_key_count(session: Session) -> int:
    """Keys that hold ciphertext (tombstones hold none)."""
    return session.scalar(select(func.count()).select_from(ApiKey)
                          .where(NOT_DELETED.expr())) or 0


def lock_check_row(session: Session, master: MasterKey) -> MasterKeyCheck:
    """The check row, locked (with MASTER_KEY_LOCK_ID) for the rest of the transaction.

    On a database without keys and without a check row (a fresh install), the check value
    is recorded for `master` first: the one place it is created. With keys but no check row,
    MasterKeyCheckMissing: the configured key is never trusted just because nothing
    contradicts it (see restore_check_row).
    """
    session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MASTER_KEY_LOCK_ID})
    row = session.scalar(select(MasterKeyCheck).with_for_update())
    if row is None:
        stored = stored_key_count(session)
        if stored:
            raise MasterKeyCheckMissing(stored)
        row = _record_check_row(session, master)
    return row


def _record_check_row(session: Session, master: MasterKey) -> MasterKeyCheck:
    session.add(MasterKeyCheck(id=1, master_key_version=master.version,
                               check_value=make_check_value(master)))
    session.flush()
    return session.scalar(select(MasterKeyCheck).with_for_update())


def restore_check_row(session: Session, master: MasterKey) -> tuple[MasterKey, int]:
    """Record the check value again after it was lost, for the key the stored keys prove.

    Every stored key must decrypt with `master` at one master-key version (the keys carry it);
    otherwise nothing is written and the first key that fails is named. Audited as
    master_key_check_restored. Returns the key at that version and how many keys were proven.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MASTER_KEY_LOCK_ID})
    if session.scalar(select(MasterKeyCheck).with_for_update()) is not None:
        raise InvalidInput("the master-key check value is present; nothing to restore")
    keys = session.scalars(select(ApiKey).where(NOT_DELETED.expr())
                           .order_by(ApiKey.id).with_for_update()).all()
    versions = {key.master_key_version for key in keys}
    if len(versions) > 1:
        raise InvalidInput(f"the stored keys carry master-key versions {sorted(versions)}; "
                           "a restore needs them all at one version (restore from a backup)")
    proven = replace(master, version=versions.pop() if versions else master.version)
    for key in keys:
        unseal(proven, key)  # KeyDecryptionError names the key; nothing is written
    _record_check_row(session, proven)
    write_audit(session, action=Action.MASTER_KEY_CHECK_RESTORED,
                details={"count": len(keys), "master_key_version": proven.version})
    return proven, len(keys)


def verify_master_key(session: Session, master: MasterKey) -> MasterKey:
    """The master key at the version this database stores, proven by its check value.

    A fresh database records a check value for the configured key; one with keys but no
    check value refuses (MasterKeyCheckMissing). A key that cannot decrypt the stored check
    value stops start-up here, instead of failing later key by key.
    """
    row = lock_check_row(session, master)
    stored = replace(master, version=row.master_key_version)
    try:
        verify_check_value(stored, row.check_value)
    except MasterKeyMismatch:
        if row.master_key_version <= 1:
            raise
        raise MasterKeyMismatch(row.master_key_version, rotated_hint(row)) from None
    return stored


def rotated_hint(row: MasterKeyCheck) -> str:
    """What to do when a key from before a rotation is still configured."""
    when = f" on {row.updated_at:%Y-%m-%d %H:%M} UTC" if row.updated_at else ""
    return (f": the master key was rotated{when} (python -m lib.cli rotate-master-key); the "
            "old key no longer works. Restart with the NEW key (the GEMINI_KEYS_NEW_MASTER_KEY "
            "you gave, or the file whose path the rotation printed)")
