"""Start-up shared by the app, the CLI and the key pool: settings → engine → schema."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from db.engine import get_engine, resolve_database_url
from db.migrate import current_revision, head_revision, upgrade
from lib.config import Settings
from lib.errors import ConfigurationError

log = logging.getLogger("gemini_keys")


def engine_for(settings: Settings) -> Engine:
    return get_engine(resolve_database_url(settings.env_for_db))


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


def load_settings(env: Mapping[str, str] | None = None,
                  secrets: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `env` (default: the process environment) and optional st.secrets."""
    return Settings.load(os.environ if env is None else env, secrets)
