"""Start-up, the same for the app, the CLI, the key pool and the gateway: settings (parsed
once) → engine → schema → master key, held in one typed Runtime."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from db.engine import get_engine, resolve_database_url
from db.migrate import current_revision, head_revision, upgrade
from db.session import Actor, session_scope
from lib.crypto.master_key import load_master_key, verify_master_key
from lib.crypto.sealed import MasterKey
from lib.errors import ConfigurationError
from lib.logging_setup import configure_logging
from lib.settings import Settings, check_production_secrets

log = logging.getLogger("gemini_keys")


@dataclass(frozen=True)
class Runtime:
    """What a process needs before it touches keys."""

    settings: Settings
    engine: Engine
    master_key: MasterKey = field(repr=False)
    dev_master_key: bool  # generated under .data/: the page shows a warning


def engine_for(settings: Settings) -> Engine:
    """The one engine for the configured database (DATABASE_URL or the embedded server)."""
    return get_engine(resolve_database_url(settings.database_url, settings.data_dir))


def migrate(engine: Engine) -> bool:
    """Apply pending migrations (idempotent; serialised by an advisory lock)."""
    applied = upgrade(engine)
    if applied:
        log.info("database schema upgraded to %s", head_revision())
    return applied


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database the migrations have not reached."""
    current = current_revision(engine)
    if current != head_revision():
        raise ConfigurationError(
            f"the database schema is at {current or 'nothing'}, expected {head_revision()}: "
            "run `python -m lib.cli init-db`")


def build_runtime(env: Mapping[str, str] | None = None,
                  secrets: Mapping[str, Any] | None = None, *,
                  settings: Settings | None = None,
                  apply_migrations: bool = True) -> Runtime:
    """Load settings (unless given), connect, migrate (or require a current schema), load and
    verify the master key."""
    settings = settings or Settings.load(env, secrets)
    configure_logging(settings.log_level)
    check_production_secrets(settings)
    engine = engine_for(settings)
    if apply_migrations:
        migrate(engine)
    else:
        require_current_schema(engine)
    master, is_dev = load_master_key(settings)
    with session_scope(Actor.service("system"), engine=engine) as session:
        master = verify_master_key(session, master)
    return Runtime(settings, engine, master, is_dev)
