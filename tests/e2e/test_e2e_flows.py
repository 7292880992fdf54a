"""The main admin flows in headless Chromium against `streamlit run app.py`, with a screenshot
of each page (tests/support/browser.screenshot)."""

from __future__ import annotations

import csv
import io
import secrets
import subprocess
import sys

import pytest
from sqlalchemy import text

from db.engine import REPO_ROOT
from tests.support.browser import (
    open_page,
    screenshot,
    sign_in_form,
    sign_out,
    signed_in,
    wait_for_app,
)
from tests.support.keys import fake_key

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]




def choose(page, label: str, option: str) -> None:
    """Pick `option` in the st.selectbox labelled `label`."""
    box = page.locator("[data-testid=stSelectbox]").filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option).first.click()
    wait_for_app(page)


def cli(live_app, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "lib.cli", *args], cwd=REPO_ROOT,
                            env=live_app.env, input=stdin, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def key_row(live_app, name: str):
    with live_app.engine.connect() as connection:
        connection.execute(text("SET ROLE service_role"))
        row = connection.execute(text(
            "SELECT id, is_active, priority, masked_hint FROM gemini_api_keys "
            "WHERE name = :n"), {"n": name}).one_or_none()
        connection.execute(text("RESET ROLE"))
        return row


def test_admin_adds_a_key_edits_it_and_finds_the_three_audit_entries(live_app, browser_page):
    page, api_key, name = browser_page, fake_key(), "e2e-browser-key"
    signed_in(page, live_app)
    page.get_by_role("heading", name="Overview").first.wait_for()

    open_page(page, "Keys")
    page.get_by_role("textbox", name="Name").fill(name)
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Add key").click()
    page.get_by_text(f"Added {name} (").wait_for()
    wait_for_app(page)
    added = key_row(live_app, name)
    page.get_by_text(f"Added {name} ({added.masked_hint}).").wait_for()
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    assert api_key not in page.content()
    assert added.masked_hint.startswith("AIza…") and added.masked_hint.endswith(api_key[-4:])

    page.get_by_role("tab", name="Edit one").click()
    page.get_by_text("Active (the pool may use it)").click()
    priority = page.get_by_role("spinbutton", name="Priority (higher is preferred)")
    priority.fill("7")
    priority.press("Tab")
    page.get_by_role("button", name="Save key").click()
    page.get_by_text(f"Saved {name}: changed priority, active.").wait_for()
    edited = key_row(live_app, name)
    assert (edited.is_active, edited.priority) == (False, 7)

    open_page(page, "Audit log")
    choose(page, "Key", name)
    metric = page.locator("[data-testid=stMetric]").filter(has_text="Matching entries")
    metric.get_by_text("3", exact=True).wait_for()
    entries = page.locator("table").filter(has_text="key_added").first
    rows = [r for r in entries.locator("tbody tr").all_inner_texts() if name in r]
    actions = sorted(next(a for a in ("key_added", "key_deactivated", "key_priority_changed")
                          if a in row) for row in rows)
    assert actions == ["key_added", "key_deactivated", "key_priority_changed"]
    assert api_key not in page.content()


def test_bad_key_in_the_add_form_gets_a_clear_message_and_stores_nothing(live_app,
                                                                          browser_page):
    page = browser_page
    signed_in(page, live_app)
    open_page(page, "Keys")
    page.get_by_role("textbox", name="Name").fill("e2e-bad-key")
    page.get_by_label("API key").fill("AIza-too-short")
    page.get_by_role("button", name="Add key").click()
    page.get_by_text("doesn't look like a Gemini API key").first.wait_for()
    assert "AIza-too-short" not in page.content()
    assert key_row(live_app, "e2e-bad-key") is None


def test_analytics_with_demo_data_draws_charts_and_exports_matching_csv(live_app,
                                                                          browser_page):
    cli(live_app, "seed-demo", "--keys", "8", "--days", "60", "--audit-rows", "40")
    page = browser_page
    signed_in(page, live_app)
    screenshot(page, "overview")
    open_page(page, "Analytics")
    charts = page.locator("[data-testid=stPlotlyChart]")
    charts.first.wait_for()
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= 3")
    screenshot(page, "analytics")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").first.click()
    path = download_info.value.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert download_info.value.suggested_filename.startswith("gemini-usage_")
    dates = sorted({r["date"] for r in rows})
    with live_app.engine.connect() as connection:
        connection.execute(text("SET ROLE service_role"))
        db_requests = connection.scalar(text(
            "SELECT coalesce(sum(request_count), 0) FROM gemini_key_usage_stats "
            "WHERE date BETWEEN :a AND :b"), {"a": dates[0], "b": dates[-1]})
        connection.execute(text("RESET ROLE"))
    assert rows and sum(int(r["request_count"]) for r in rows) == db_requests

    for title, name in (("Keys", "keys"), ("Audit log", "audit"), ("Admins", "admins")):
        open_page(page, title)
        screenshot(page, name)


def test_non_admin_sees_no_data_anywhere_and_signs_out(live_app, browser_page, chromium):
    password = "member " + secrets.token_urlsafe(12)
    email = f"member-{secrets.token_hex(4)}@example.com"
    cli(live_app, "create-user", "--email", email, "--password-stdin", stdin=password + "\n")
    cli(live_app, "seed-demo", "--keys", "3", "--days", "5")
    with live_app.engine.connect() as connection:
        connection.execute(text("SET ROLE service_role"))
        names = list(connection.scalars(text("SELECT name FROM gemini_api_keys")))
        connection.execute(text("RESET ROLE"))
    page = browser_page
    signed_in(page, live_app, email, password)
    page.get_by_role("heading", name="No access").wait_for()
    for path in ("", *sorted(p.stem for p in (REPO_ROOT / "pages").glob("*.py"))):
        page.goto(live_app.url(path))
        wait_for_app(page)
        body = page.inner_text("body")
        assert "No access" in body, path
        assert not [n for n in names if n in body], path
        assert page.locator("[data-testid=stPlotlyChart]").count() == 0
        assert page.locator("[data-testid=stDataFrame]").count() == 0
    sign_out(page)
    wait_for_app(page)
    sign_in_form(page)
    screenshot(page, "sign-in")
