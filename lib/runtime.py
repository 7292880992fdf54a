"""Everything a process needs before it touches keys: settings, engine, schema, master key."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Engine, select

from db.models import MasterKeyCheck
from db.session import Actor, session_scope
from lib.bootstrap import engine_for, load_settings, migrate, require_current_schema
from lib.config import Settings, check_production_secrets
from lib.crypto import MasterKey, MasterKeyMismatch, make_check_value, verify_check_value
from lib.errors import ConfigurationError
from lib.logging_setup import configure_logging
from lib.master_key import load_master_key

log = logging.getLogger("gemini_keys")


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    master_key: MasterKey = field(repr=False)
    dev_master_key: bool  # generated under .data/: the page shows a warning


def verify_master_key(engine: Engine, master: MasterKey) -> MasterKey:
    """The master key at the version this database stores, proven by its check value.

    A fresh database records a check value for the configured key. A key that cannot decrypt
    the stored check value stops start-up here, instead of failing later key by key.
    """
    with session_scope(Actor.service("system"), engine=engine) as session:
        row = session.scalar(select(MasterKeyCheck).with_for_update())
        if row is None:
            session.add(MasterKeyCheck(id=1, master_key_version=master.version,
                                       check_value=make_check_value(master)))
            return master
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


def build_runtime(env: Mapping[str, str] | None = None,
                  secrets: Mapping[str, Any] | None = None, *,
                  apply_migrations: bool = True) -> Runtime:
    """Load settings, connect, migrate (or require a current schema), load and verify the key."""
    configure_logging()
    settings = load_settings(env, secrets)
    check_production_secrets(settings)
    engine = engine_for(settings)
    if apply_migrations:
        migrate(engine)
    else:
        require_current_schema(engine)
    master, is_dev = load_master_key(
        env=settings.values, secrets=None, data_dir=settings.data_dir,
        allow_dev_default=not settings.production)
    if is_dev and settings.production:  # load_master_key refuses this; belt and braces
        raise ConfigurationError("a development master key is not allowed in production")
    return Runtime(settings, engine, verify_master_key(engine, master), is_dev)
