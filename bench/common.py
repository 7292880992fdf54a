"""What every benchmark shares: a scratch database, a clean environment, the row format."""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db.engine import dispose_engines, get_engine
from db.migrate import upgrade
from db.session import Actor, session_scope
from lib.runtime import build_runtime, database_urls
from lib.settings import Settings
from lib.users.sessions import start_session

ENV_NAMES = ("DATABASE_URL", "GEMINI_KEYS_MASTER_KEY", "GEMINI_KEYS_DATA_DIR")


def server_url() -> str:
    """The server to benchmark on, as its owner: DATABASE_URL's, else the embedded one."""
    settings = Settings.load({k: v for k, v in os.environ.items()
                              if k in ("DATABASE_URL", "GEMINI_KEYS_DATA_DIR")})
    return database_urls(settings).owner


@contextmanager
def scratch_database(name: str, base: str | None = None) -> Iterator[str]:
    """A new migrated database `name` on `base` (default: server_url()); dropped afterwards."""
    base = base or server_url()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(get_engine(url))
        # The first start records the master key's check value before any key is stored
        # (start-up refuses stored keys without one); benchmarks seed keys straight in SQL.
        build_runtime(env={**os.environ, "DATABASE_URL": url}, apply_migrations=False)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def bench_environment() -> Iterator[str]:
    """A random master key and a temporary data dir; the caller's environment comes back after.

    Yields the server URL, resolved before DATABASE_URL is pointed at scratch databases.
    """
    saved = {k: os.environ.get(k) for k in ENV_NAMES}
    server = server_url()
    with tempfile.TemporaryDirectory() as data_dir:
        os.environ["GEMINI_KEYS_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
        os.environ["GEMINI_KEYS_DATA_DIR"] = data_dir
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def row(name: str, measured: float, baseline_name: str, baseline: float, aim: str) -> dict:
    """One line of `python -m bench`'s table."""
    return {"name": name, "measured_s": measured, "baseline_name": baseline_name,
            "baseline_s": baseline, "ratio": measured / baseline, "aim": aim}


def seed_admin(engine: Engine, admin: Actor) -> None:
    """The signed-in admin the page renders are made as (inserted as the owner)."""
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO auth.users (id, email) VALUES (:id, :email)"),
                           {"id": admin.user_id, "email": admin.email})
        connection.execute(text("INSERT INTO user_profiles (user_id, is_admin) "
                                "VALUES (:id, true)"), {"id": admin.user_id})


def signed_in_state(url: str, admin: Actor) -> dict[str, str]:
    """The page's session_state entry for `admin`, with a live session row (every run checks
    it, as for a real sign-in)."""
    with session_scope(Actor.service("app"), engine=get_engine(url)) as session:
        session_id, _ = start_session(session, admin.user_id, lifetime=dt.timedelta(hours=1))
    return {"id": str(admin.user_id), "email": admin.email or "", "session": session_id}


def vacuum_analyze(engine: Engine) -> None:
    """What autovacuum does after a bulk load, so plans see the real sizes."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
