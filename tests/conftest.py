"""Real PostgreSQL for every database test: the server at 127.0.0.1:5432 (PG 15, as on
Supabase) when one answers, and always the embedded server (PG 18).

Each server gets one migrated database per test session; the `db` fixture empties every
table before its test, which is much faster than a database per test.
GK_TEST_SERVERS=local,embedded (or one of them) narrows the choice.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db.engine import REPO_ROOT, dispose_engines, get_engine, start_embedded_postgres
from db.migrate import upgrade
from db.session import Actor, session_scope

LOCAL_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
TEST_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
APP_TABLES = ("gemini_key_audit_log", "gemini_key_usage_stats", "gemini_api_keys",
              "gemini_master_key_check", "gemini_sign_in_attempts", "user_profiles",
              "auth.users")


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
if os.environ.get("GK_REQUIRE_LOCAL_PG") == "1" and "local" not in SERVERS:
    raise RuntimeError("GK_REQUIRE_LOCAL_PG=1 but no PostgreSQL answers at 127.0.0.1:5432")


def pytest_report_header(config):
    return f"PostgreSQL servers under test: {', '.join(SERVERS) or 'none'}"


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


@pytest.fixture(scope="session", params=SERVERS)
def pg_server(request) -> Iterator[TestDatabase]:
    """One migrated database per server for the whole run."""
    server = request.param
    name = f"gk_test_{os.getpid()}"
    url = create_database(server, name)
    upgrade(get_engine(url))
    yield TestDatabase(server, url)
    dispose_engines()
    drop_database(server, name)


@pytest.fixture
def db(pg_server: TestDatabase, monkeypatch, tmp_path) -> TestDatabase:
    """An empty migrated database that the code under test finds through DATABASE_URL."""
    with pg_server.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(APP_TABLES)} RESTART IDENTITY CASCADE"))
    monkeypatch.setenv("DATABASE_URL", pg_server.url)
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("GEMINI_KEYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GEMINI_KEYS_LOGIN_SLEEP_SECONDS", "0")
    monkeypatch.setenv("GEMINI_KEYS_BCRYPT_ROUNDS", "4")  # fast hashes; production needs >= 10
    return pg_server


@pytest.fixture
def admin_actor(db) -> Actor:
    """A signed-in admin (a real user row), as the app would act for them."""
    return make_user(db, "admin@example.com", admin=True)


@pytest.fixture
def member_actor(db) -> Actor:
    """A signed-in user who is not an admin."""
    return make_user(db, "member@example.com", admin=False)


def make_user(db: TestDatabase, email: str, *, admin: bool,
              password: str = "correct horse battery staple") -> Actor:
    from lib.users import create_user

    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        user = create_user(session, email=email, password=password, admin=admin)
        return Actor.user(user.id, email)


def pytest_collection_modifyitems(config, items):
    """Tests marked one_server run against the first server only."""
    if not SERVERS:
        return
    first = SERVERS[0]
    keep, drop = [], []
    for item in items:
        server = getattr(getattr(item, "callspec", None), "params", {}).get("pg_server")
        if item.get_closest_marker("one_server") and server not in (None, first):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def random_name(prefix: str = "key") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
