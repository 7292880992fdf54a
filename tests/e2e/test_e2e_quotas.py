"""Setting a quota in the Keys page's Quotas tab, in headless Chromium against the live app."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import text

from db.engine import REPO_ROOT
from tests.support.browser import open_page, screenshot, signed_in, visible_text, wait_for_app
from tests.support.keys import fake_key

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

GROUP = "e2e-quota-proj"


def quota_rows(live_app) -> list[tuple]:
    with live_app.engine.connect() as connection:
        connection.execute(text("SET ROLE service_role"))
        rows = [tuple(r) for r in connection.execute(text(
            "SELECT model, rpm, tpm, rpd FROM gemini_quota_limits WHERE group_label = :g"),
            {"g": GROUP})]
        connection.execute(text("RESET ROLE"))
    return rows


def test_admin_sets_a_quota_in_the_quotas_tab(live_app, browser_page):
    added = subprocess.run([sys.executable, "-m", "lib.cli", "add-key", "--name",
                            "e2e-quota-key", "--group", GROUP], cwd=REPO_ROOT,
                           env=live_app.env, input=fake_key() + "\n", capture_output=True,
                           text=True, timeout=300)
    assert added.returncode == 0, added.stderr
    page = browser_page
    signed_in(page, live_app)
    open_page(page, "Keys")

    page.get_by_role("tab", name="Quotas").click()
    page.get_by_text("No quotas set yet").wait_for()
    page.get_by_role("textbox", name="Model").fill("gemini-2.5-flash")
    rpd = page.get_by_role("spinbutton", name="rpd (requests per Pacific day)")
    rpd.fill("250")
    rpd.press("Tab")
    page.get_by_role("button", name="Save limit").click()
    page.get_by_text(f"Quota of {GROUP} × gemini-2.5-flash set: rpm no limit, "
                     "tpm no limit, rpd 250.").wait_for()
    assert quota_rows(live_app) == [("gemini-2.5-flash", None, None, 250)]
    page.get_by_role("tab", name="Quotas").click()
    page.locator("[data-testid=stDataFrame]").last.wait_for()
    screenshot(page, "keys-quotas")

    page.get_by_role("link", name="Overview").first.click()
    page.get_by_role("heading", name="Quotas today").wait_for()
    wait_for_app(page)
    assert "next reset" in visible_text(page)
    screenshot(page, "overview-quotas")
