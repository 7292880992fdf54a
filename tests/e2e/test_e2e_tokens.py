"""The Access tokens page in headless Chromium: create a token (shown once), revoke it."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from tests.support.browser import open_page, signed_in, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]


def test_create_and_revoke_an_access_token_in_the_browser(browser_page, live_app):
    page = browser_page
    signed_in(page, live_app)
    open_page(page, "Access tokens")

    page.get_by_role("textbox", name="Name").fill("e2e-service")
    page.get_by_role("textbox", name="Models (optional)").fill("gemini-2.0-flash")
    page.get_by_role("button", name="Create token").click()
    page.get_by_text("shown only this once").first.wait_for()
    token = page.locator("[data-testid=stCode]").first.inner_text().strip()
    assert token.startswith("gkat_")
    with live_app.engine.connect() as connection:
        stored = connection.execute(text(
            "SELECT token_hash, revoked_at FROM gemini_access_tokens WHERE name = 'e2e-service'"
        )).one()
    assert stored == (hashlib.sha256(token.encode()).hexdigest(), None)

    page.reload()
    wait_for_app(page)
    page.get_by_role("heading", name="Access tokens").first.wait_for()
    assert token not in page.content()  # shown once, never again

    page.get_by_role("button", name="Revoke token").click()
    page.get_by_text("Revoked access token e2e-service").first.wait_for()
    with live_app.engine.connect() as connection:
        revoked_at = connection.execute(text(
            "SELECT revoked_at FROM gemini_access_tokens WHERE name = 'e2e-service'")).scalar()
    assert revoked_at is not None
    assert token not in live_app.log_text()
