"""Real PostgreSQL servers for the tests: the server at 127.0.0.1:5432 (PG 15, as on
Supabase) when one answers, and always the embedded server (PG 18).

Each test database has two URLs, as a deployment does: the owner's (the server's superuser:
migrations, and the tests' own raw SQL, which reads past RLS) and the app's login
(db.roles.APP_LOGIN, what DATABASE_URL points at: everything the code under test does).

GK_TEST_SERVERS=local,embedded (or one of them) narrows the choice.
"""

from __future__ import annotations

import base64
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db.engine import (
    REPO_ROOT,
    START_SERVER_SCRIPT,
    as_login,
    ensure_app_login,
    get_engine,
    start_embedded_postgres,
    to_sqlalchemy_url,
)
from db.roles import APP_LOGIN
from db.session import Actor, session_scope
from lib.settings import server_environment

LOCAL_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
TEST_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
TEST_BCRYPT_ROUNDS = 4  # fast hashes; production needs >= 10
APP_TABLES = ("gemini_access_token_usage", "gemini_access_tokens",
              "gemini_key_audit_log", "gemini_key_usage_stats", "gemini_api_keys",
              "gemini_master_key_check", "gemini_sign_in_attempts", "gemini_sign_in_failures",
              "gemini_user_sessions", "gemini_notification_claims", "gemini_setup_code",
              "user_profiles", "gemini_quota_limits", "gemini_quota_usage",
              "gemini_model_cooldowns",
              "auth.users")
__all__ = ["APP_TABLES", "LOCAL_URL", "REPO_ROOT", "SERVERS", "TEST_BCRYPT_ROUNDS",
           "TEST_MASTER_KEY", "TestDatabase", "app_login_url", "create_database",
           "drop_database", "empty_database", "make_user", "record_check_value", "server_url",
           "servers_lock", "start_private_postgres", "stop_embedded_postgres", "with_database"]


def local_server_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def available_servers() -> list[str]:
    wanted = os.environ.get("GK_TEST_SERVERS", "local,embedded").split(",")
    return [s for s in wanted if s == "embedded" or (s == "local" and local_server_answers())]


SERVERS = available_servers()
if not SERVERS:  # an empty list would make pytest skip every database test, silently
    raise RuntimeError(f"no PostgreSQL server to test against (GK_TEST_SERVERS="
                       f"{os.environ.get('GK_TEST_SERVERS', '')!r})")
if os.environ.get("GK_REQUIRE_LOCAL_PG") == "1" and "local" not in SERVERS:
    raise RuntimeError("GK_REQUIRE_LOCAL_PG=1 but no PostgreSQL answers at 127.0.0.1:5432")


@dataclass
class TestDatabase:
    server: str
    url: str  # the owner's: migrations and the tests' raw SQL (no RLS)

    @property
    def engine(self) -> Engine:
        """As the owner (the server's superuser)."""
        return get_engine(self.url)

    @property
    def app_url(self) -> str:
        """As the app's login: what DATABASE_URL points at."""
        return app_login_url(self.url)

    @property
    def app_engine(self) -> Engine:
        return get_engine(self.app_url)


@contextmanager
def servers_lock() -> Iterator[None]:
    """One test process at a time (pytest-xdist runs several) starts the embedded server or
    creates cluster-wide roles (migrations, the Supabase fixture): PostgreSQL's "create
    where missing" is not safe against a concurrent twin."""
    path = REPO_ROOT / ".data" / "test-servers.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def server_url(server: str) -> str:
    """The server's superuser; the app's login exists on it and may log in (both test
    servers trust local connections, as the embedded default does)."""
    with servers_lock():
        url = LOCAL_URL if server == "local" else start_embedded_postgres(
            REPO_ROOT / ".data" / "test-pg", env=server_environment())
        ensure_app_login(url)
    return url


def stop_embedded_postgres(pgdata: Path) -> None:
    """Stop an embedded server a test started under pgdata (as the OS user it runs as)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    subprocess.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast",
                    "stop"], user="embedded_postgres" if os.geteuid() == 0 else None,
                   capture_output=True, timeout=60, check=False)


def start_private_postgres(pgdata: Path) -> str:
    """(Re)start an embedded server of the test's own under pgdata, in a child process as
    the app does (never the shared servers); its superuser's URL."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-c", START_SERVER_SCRIPT, str(pgdata)],
                            env=server_environment(), cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    return to_sqlalchemy_url(result.stdout.strip().splitlines()[-1])


def app_login_url(owner_url: str) -> str:
    """The same database, logged in as the app's login."""
    return as_login(owner_url, APP_LOGIN)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def create_database(server: str, name: str) -> str:
    """A new empty database on `server`; returns its URL."""
    base = server_url(server)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return with_database(base, name)


def drop_database(server: str, name: str) -> None:
    admin = create_engine(server_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def record_check_value(session: Session, master_key_b64: str = TEST_MASTER_KEY) -> None:
    """The master-key check row, as start-up records it before the first key is stored:
    for helpers that insert key rows directly (start-up refuses keys without it)."""
    from lib.crypto.sealed import MasterKey, make_check_value

    session.execute(text("INSERT INTO gemini_master_key_check (id, master_key_version, "
                         "check_value) VALUES (1, 1, :v) ON CONFLICT (id) DO NOTHING"),
                    {"v": make_check_value(MasterKey.from_base64(master_key_b64))})


def make_user(db: TestDatabase, email: str, *, admin: bool,
              password: str = "correct horse battery staple") -> Actor:
    """A real user row (an admin or not), and the Actor the app would act as for them."""
    from lib.users.accounts import create_user

    with session_scope(Actor.service("cli"), engine=db.app_engine) as session:
        user = create_user(session, email=email, password=password, admin=admin,
                           bcrypt_rounds=TEST_BCRYPT_ROUNDS)
        return Actor.user(user.id, email)


# Every table of the schemas a test may write, except the schema's revision.
_TABLES_TO_EMPTY = text("""
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
WHERE schemaname IN ('public', 'auth') AND tablename <> 'alembic_version' ORDER BY 1""")
_SEQUENCES = text("""
SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences
WHERE schemaname IN ('public', 'auth')""")


def empty_database(connection, keep: tuple[str, ...] = ()) -> None:
    """Empty every table but those in `keep` ("schema.table") and restart every sequence, as
    the owner (a superuser here).

    What TRUNCATE ... RESTART IDENTITY CASCADE does, 20-50x faster for the few rows a test
    leaves: TRUNCATE gives each of ~25 tables a new file and costs ~150 ms a test.
    session_replication_role = replica skips the triggers (the append-only audit log, the
    rollups, foreign keys), which is why every table, rollups included, is emptied here.
    """
    tables = [t for t in connection.execute(_TABLES_TO_EMPTY).scalars() if t not in keep]
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    connection.execute(text("".join(f"DELETE FROM {table};" for table in tables)))
    for sequence in connection.execute(_SEQUENCES).scalars():
        connection.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})
