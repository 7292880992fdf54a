"""Where the master key comes from (the setting, or a development-only key file), whether it
is strong enough, and whether it is the key this database's keys were encrypted with."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import MasterKeyCheck
from lib.crypto.sealed import (
    GENERATE_HINT,
    MASTER_KEY_ENV,
    MasterKey,
    MasterKeyError,
    MasterKeyMismatch,
    generate_master_key_b64,
    make_check_value,
    verify_check_value,
)
from lib.errors import ConfigurationError
from lib.secret_files import publish_secret_file, read_secret_file
from lib.settings import Settings

DEV_KEY_FILENAME = "master.key"
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


def lock_check_row(session: Session, master: MasterKey) -> MasterKeyCheck:
    """The check row, locked FOR UPDATE; on a database that never had one, recorded for
    `master` first (the one place the check value is created)."""
    row = session.scalar(select(MasterKeyCheck).with_for_update())
    if row is None:
        session.add(MasterKeyCheck(id=1, master_key_version=master.version,
                                   check_value=make_check_value(master)))
        session.flush()
        row = session.scalar(select(MasterKeyCheck).with_for_update())
    return row


def verify_master_key(session: Session, master: MasterKey) -> MasterKey:
    """The master key at the version this database stores, proven by its check value.

    A fresh database records a check value for the configured key. A key that cannot decrypt
    the stored check value stops start-up here, instead of failing later key by key.
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
