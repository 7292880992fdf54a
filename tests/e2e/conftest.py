"""Fixtures for browser tests (mark them `@pytest.mark.e2e` and `@pytest.mark.one_server`).

    live_app      one freshly started server per test session, on its own new database, with
                  a seeded admin: live_app.base_url, .url("keys"), .database_url, .engine,
                  .admin_email, .admin_password, .log_text()
    chromium      headless Debian Chromium (Playwright), one per test session
    browser_page  a new page in a fresh browser context (no cookies) per test

Helpers for the pages live in tests/support/browser.py (wait_for_app, sign_in, sign_out).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from db.engine import dispose_engines
from tests.support.databases import SERVERS, create_database, drop_database
from tests.support.live_app import CHROMIUM, CHROMIUM_ARGS, LiveApp, run_app

PAGE_TIMEOUT_MS = 60_000  # generous: CI machines are shared


@pytest.fixture(scope="session")
def live_app(tmp_path_factory) -> Iterator[LiveApp]:
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


def skip_or_fail(reason: str) -> None:
    """Locally a missing browser skips; in CI (CI=true) browser tests must never be skipped."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the browser tests; .ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium():
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


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()
