"""Fixtures for browser tests (mark them `@pytest.mark.e2e` and `@pytest.mark.one_server`).

    live_app      one server started once per test session (per pytest-xdist worker) on its
                  own new database; each test gets it emptied, with only the seeded admin and
                  the master-key check start-up recorded: live_app.base_url, .url("keys"),
                  .database_url, .engine, .admin_email, .admin_password, .log_text()
    chromium      (tests/conftest.py) headless Debian Chromium, one per test process
    browser_page  a new page in a fresh browser context (no cookies) per test

Helpers for the pages live in tests/support/browser.py (wait_for_app, sign_in, sign_out).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from db.engine import dispose_engines
from tests.support.databases import SERVERS, create_database, drop_database, empty_database
from tests.support.live_app import LiveApp, run_app, seed_admin, skip_or_fail

PAGE_TIMEOUT_MS = 60_000  # generous: CI machines are shared


@pytest.fixture(scope="session")
def live_app_server(tmp_path_factory) -> Iterator[LiveApp]:
    if not SERVERS:
        skip_or_fail("no PostgreSQL server for the browser tests")
    server = SERVERS[0]
    name = f"gk_e2e_{os.getpid()}"
    url = create_database(server, name)
    try:
        with run_app(url, tmp_path_factory.mktemp("e2e-data")) as app:
            yield app
    finally:
        dispose_engines()
        drop_database(server, name)


@pytest.fixture
def live_app(live_app_server: LiveApp) -> LiveApp:
    """The session's server with what earlier tests stored gone: no test sees another's keys,
    quotas, stats or sessions (the order of the tests, or their spread over workers, must not
    change what a page shows)."""
    with live_app_server.engine.begin() as connection:
        empty_database(connection, keep=("public.gemini_master_key_check",))
    seed_admin(live_app_server.database_url, live_app_server.admin_email,
               live_app_server.admin_password)
    return live_app_server


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()
