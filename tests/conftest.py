"""Fixtures for every database test: one migrated database per server for the run, emptied
before each test (much faster than a database per test). The servers and helpers live in
tests/support/databases.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from db.engine import dispose_engines, get_engine
from db.migrate import upgrade
from db.session import Actor
from tests.support.databases import (
    SERVERS,
    TEST_MASTER_KEY,
    TestDatabase,
    create_database,
    drop_database,
    empty_database,
    make_user,
    servers_lock,
)
from tests.support.fake_gemini import FakeGemini
from tests.support.live_app import CHROMIUM, CHROMIUM_ARGS, skip_or_fail


def pytest_report_header(config):
    return f"PostgreSQL servers under test: {', '.join(SERVERS) or 'none'}"


@pytest.fixture(scope="session", params=SERVERS)
def pg_server(request) -> Iterator[TestDatabase]:
    """One migrated database per server for the whole run."""
    server = request.param
    name = f"gk_test_{os.getpid()}"
    url = create_database(server, name)
    with servers_lock():  # migrations create cluster-wide roles where missing
        upgrade(get_engine(url))
    yield TestDatabase(server, url)
    dispose_engines()
    drop_database(server, name)


@pytest.fixture
def db(pg_server: TestDatabase, monkeypatch, tmp_path) -> TestDatabase:
    """An empty migrated database that the code under test finds through DATABASE_URL (the
    app's login; db.engine is the owner's, for the tests' own SQL)."""
    with pg_server.engine.begin() as connection:
        empty_database(connection)
    monkeypatch.setenv("DATABASE_URL", pg_server.app_url)  # the app's least-privilege login
    monkeypatch.setenv("DATABASE_OWNER_URL", pg_server.url)  # migrations only
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", TEST_MASTER_KEY)
    monkeypatch.setenv("GEMINI_KEYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GEMINI_KEYS_LOGIN_SLEEP_SECONDS", "0")
    monkeypatch.setenv("GEMINI_KEYS_BCRYPT_ROUNDS", "4")  # fast hashes; production needs >= 10
    return pg_server


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    """A local fake Gemini (tests/support/fake_gemini.py) for the test's duration."""
    with FakeGemini() as server:
        yield server


@pytest.fixture
def admin_actor(db) -> Actor:
    """A signed-in admin (a real user row), as the app would act for them."""
    return make_user(db, "admin@example.com", admin=True)


@pytest.fixture
def member_actor(db) -> Actor:
    """A signed-in user who is not an admin."""
    return make_user(db, "member@example.com", admin=False)


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium through Playwright, one per test process (browser tests in
    tests/e2e and tests/deploy: a second sync_playwright() in one process is refused)."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"{CHROMIUM} is not installed")
    from playwright import sync_api  # a missing package is an error, not a skip
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()
    finally:
        playwright.stop()


BROWSER_DIRS = ("tests/e2e/", "tests/deploy/")


def pytest_collection_modifyitems(config, items):
    """Tests marked one_server run against the first server only. The browser tests of one
    file share a pytest-xdist group: one worker runs them one after another, so the file's
    servers start once, while other workers take other files."""
    first = SERVERS[0]
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("e2e") or item.nodeid.startswith(BROWSER_DIRS):
            item.add_marker(pytest.mark.xdist_group(f"browser:{item.path.name}"))
        server = getattr(getattr(item, "callspec", None), "params", {}).get("pg_server")
        if item.get_closest_marker("one_server") and server not in (None, first):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
