"""Start-up, the same for the app, the CLI, the key pool and the gateway: settings (parsed
once) → engine → schema → master key, held in one typed Runtime."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db.engine import DatabaseUrls, get_engine, hidden, owner_engine, resolve_database_urls
from db.migrate import current_revision, head_revision, upgrade
from db.roles import API_ROLES
from db.session import Actor, session_scope
from lib.crypto.master_key import load_master_key, verify_master_key
from lib.crypto.sealed import MasterKey
from lib.errors import ConfigurationError
from lib.logging_setup import configure_logging
from lib.notify import delivery as notify_delivery
from lib.operator_errors import primary_message
from lib.settings import Settings, check_production_secrets, server_environment

log = logging.getLogger("gemini_keys")
INSUFFICIENT_PRIVILEGE = "42501"
# What a least-privilege login is not (db.roles): asked of the database at start-up.
LOGIN_FACTS = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolinherit,
       EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid
               AND c.relnamespace = 'public'::regnamespace) AS owns_tables
  FROM pg_roles r WHERE r.rolname = session_user
"""


@dataclass(frozen=True)
class Runtime:
    """What a process needs before it touches keys."""

    settings: Settings
    engine: Engine  # logs in as the app's login (DATABASE_URL, or APP_LOGIN when embedded)
    master_key: MasterKey = field(repr=False)
    dev_master_key: bool  # generated under .data/: the page shows a warning


def database_urls(settings: Settings) -> DatabaseUrls:
    """The app's and the owner's URL (DATABASE_URL / DATABASE_OWNER_URL, or the embedded
    server, started with a scrubbed environment)."""
    return resolve_database_urls(settings.database_url, settings.owner_database_url,
                                 settings.data_dir, server_env=server_environment())


def engine_for(settings: Settings) -> Engine:
    """The one engine for the configured database, logged in as the app's login."""
    return get_engine(database_urls(settings).app)


def migrate(settings: Settings) -> bool:
    """Apply pending migrations as the owner (idempotent; serialised by an advisory lock).
    The revision is read through the app's login first, so an up-to-date schema needs no
    owner connection at all, and none is kept afterwards."""
    urls = database_urls(settings)
    try:
        if current_revision(get_engine(urls.app)) == head_revision():
            return False
    except DBAPIError as error:  # before 0005 the app's login may not read the revision
        if getattr(error.orig, "pgcode", None) != INSUFFICIENT_PRIVILEGE:
            raise
    owner_url = urls.owner
    engine = owner_engine(owner_url)
    try:
        applied = upgrade(engine)
    except DBAPIError as error:
        if getattr(error.orig, "pgcode", None) != INSUFFICIENT_PRIVILEGE:
            raise
        raise ConfigurationError(
            f"the database schema needs migrating to {head_revision()}, but "
            f"{hidden(owner_url)} may not change it: run `python -m lib.cli init-db` with "
            "DATABASE_OWNER_URL set to the connection string of the tables' owner (on "
            "Supabase: the postgres user)") from None
    finally:
        engine.dispose()
    if applied:
        log.info("database schema upgraded to %s", head_revision())
    return applied


def require_current_schema(engine: Engine) -> None:
    """Refuse to work on a database the migrations have not reached."""
    try:
        current = current_revision(engine)
    except DBAPIError as error:  # the schema predates the grants, or the login lacks its roles
        if getattr(error.orig, "pgcode", None) != INSUFFICIENT_PRIVILEGE:
            raise
        raise ConfigurationError(
            f"the database login may not read the schema version: {primary_message(error)} "
            f"(SQLSTATE {INSUFFICIENT_PRIVILEGE}): run `python -m lib.cli init-db` with "
            "DATABASE_OWNER_URL set (it creates the app's roles and grants), or check the "
            "login in DATABASE_URL") from None
    if current != head_revision():
        raise ConfigurationError(
            f"the database schema is at {current or 'nothing'}, expected {head_revision()}: "
            "run `python -m lib.cli init-db`")


def login_warnings(engine: Engine) -> list[str]:
    """What makes the app's login stronger than it needs to be (README: Database login)."""
    with engine.connect() as connection:
        row = connection.execute(text(LOGIN_FACTS)).one()
        members = set(connection.execute(text(
            "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
            "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = session_user)"
        )).scalars())
        connection.rollback()
    problems = [what for what, present in (
        ("is a superuser", row.rolsuper), ("has BYPASSRLS", row.rolbypassrls),
        ("owns the tables", row.owns_tables), ("inherits its roles' rights", row.rolinherit),
        (f"is a member of {', '.join(sorted(members - set(API_ROLES)))}",
         bool(members - set(API_ROLES)))) if present]
    if not problems:
        return []
    return [f"the database login {row.rolname} {' and '.join(problems)}: the app works, but a "
            "least-privilege login is recommended (README: Using another PostgreSQL or "
            "Supabase)"]


def build_runtime(env: Mapping[str, str] | None = None,
                  secrets: Mapping[str, Any] | None = None, *,
                  settings: Settings | None = None,
                  apply_migrations: bool = True) -> Runtime:
    """Load settings (unless given), connect, migrate (or require a current schema), load and
    verify the master key."""
    settings = settings or Settings.load(env, secrets)
    configure_logging(settings.log_level)
    check_production_secrets(settings)
    if apply_migrations:
        migrate(settings)
    engine = engine_for(settings)
    require_current_schema(engine)
    for warning in login_warnings(engine):
        log.warning("%s", warning)
    master, is_dev = load_master_key(settings)
    with session_scope(Actor.service("system"), engine=engine) as session:
        master = verify_master_key(session, master)
    notify_delivery.configure(settings, engine)  # webhooks (off unless URLs are set)
    return Runtime(settings, engine, master, is_dev)
