"""Real PostgreSQL servers for the tests: the server at 127.0.0.1:5432 (PG 15, as on
Supabase) when one answers, and always the embedded server (PG 18).

GK_TEST_SERVERS=local,embedded (or one of them) narrows the choice.
"""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db.engine import REPO_ROOT, get_engine, start_embedded_postgres
from db.session import Actor, session_scope

LOCAL_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
TEST_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
TEST_BCRYPT_ROUNDS = 4  # fast hashes; production needs >= 10
APP_TABLES = ("gemini_key_audit_log", "gemini_key_usage_stats", "gemini_api_keys",
              "gemini_master_key_check", "gemini_sign_in_attempts", "gemini_sign_in_failures",
              "gemini_user_sessions", "user_profiles",
              "auth.users")
__all__ = ["APP_TABLES", "LOCAL_URL", "REPO_ROOT", "SERVERS", "TEST_BCRYPT_ROUNDS",
           "TEST_MASTER_KEY", "TestDatabase", "create_database", "drop_database", "make_user",
           "server_url", "with_database"]


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
    url: str

    @property
    def engine(self) -> Engine:
        return get_engine(self.url)


def server_url(server: str) -> str:
    if server == "local":
        return LOCAL_URL
    return start_embedded_postgres(REPO_ROOT / ".data" / "test-pg")


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


def make_user(db: TestDatabase, email: str, *, admin: bool,
              password: str = "correct horse battery staple") -> Actor:
    """A real user row (an admin or not), and the Actor the app would act as for them."""
    from lib.users.accounts import create_user

    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        user = create_user(session, email=email, password=password, admin=admin,
                           bcrypt_rounds=TEST_BCRYPT_ROUNDS)
        return Actor.user(user.id, email)
