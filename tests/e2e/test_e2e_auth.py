"""In Chromium against freshly started servers: anonymous visitors get only the sign-in form on
every page URL; an admin signs in (and stays signed in on reload via the cookie) and out (and
stays out on reload)."""

from __future__ import annotations

import os
import re

import pytest

from db.engine import REPO_ROOT, dispose_engines
from tests.e2e.conftest import skip_or_fail
from tests.support.browser import (
    has_cookie,
    sign_in,
    sign_in_form,
    sign_out,
    visible_text,
    wait_for_app,
    wait_for_cookie,
)
from tests.support.databases import SERVERS, create_database, drop_database
from tests.support.live_app import run_app

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

COOKIE = "gemini_keys_auth"
APP_SOURCE = (REPO_ROOT / "dashboard.py").read_text()
PAGE_URLS = sorted(p.stem for p in (REPO_ROOT / "pages").glob("*.py"))
PAGE_TITLES = re.findall(r"""st\.Page\(\s*["']pages/[^"']+["'],\s*title=["']([^"']+)""",
                         APP_SOURCE)


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """A server no session has visited yet: Streamlit still routes pages/<name> by URL."""
    if not SERVERS:
        skip_or_fail("no PostgreSQL server")
    name = f"gk_e2e_fresh_{os.getpid()}"
    url = create_database(SERVERS[0], name)
    try:
        # Nothing configured but the database, as after `pip install` + `streamlit run`:
        # the development master and cookie keys are generated on first start.
        with run_app(url, tmp_path_factory.mktemp("e2e-fresh"),
                     extra_env={"GEMINI_KEYS_MASTER_KEY": "", "GEMINI_KEYS_COOKIE_KEY": ""}
                     ) as app:
            yield app
    finally:
        dispose_engines()
        drop_database(SERVERS[0], name)


def headings(page) -> list[str]:
    return [h.strip() for h in page.locator("h1, h2").all_inner_texts()]


def test_anonymous_visit_to_every_page_url_shows_only_the_sign_in_form(fresh_app, chromium):
    assert PAGE_URLS and PAGE_TITLES
    # The first visit reaches the page file through the old automatic routing (its guard
    # answers); the later ones go through app.py's navigation.
    for path in [*PAGE_URLS, ""]:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(fresh_app.url(path))
        wait_for_app(page)
        sign_in_form(page)
        assert headings(page) == ["Gemini Key Manager"], path
        body = page.inner_text("body")
        assert "Development master key in use" in body, path
        for title in PAGE_TITLES:
            assert page.get_by_role("heading", name=title).count() == 0, (path, title)
        assert fresh_app.admin_email not in body
        assert page.get_by_role("button", name="Sign out").count() == 0
        context.close()


def test_admin_signs_in_stays_in_on_reload_and_signs_out_for_good(live_app, browser_page):
    page = browser_page
    page.goto(live_app.url("admins"))
    wait_for_app(page)
    sign_in(page, live_app)
    page.get_by_role("button", name="Sign out").wait_for()
    page.get_by_text("Signed in as").wait_for()
    assert live_app.admin_email in visible_text(page, "[data-testid=stSidebar]")
    wait_for_cookie(page)
    assert COOKIE not in page.evaluate("document.cookie")

    page.reload()
    wait_for_app(page)
    page.get_by_role("button", name="Sign out").wait_for()  # signed in again by the cookie

    sign_out(page)
    sign_in_form(page)
    wait_for_cookie(page, present=False)

    page.reload()
    wait_for_app(page)
    sign_in_form(page)
    assert page.get_by_role("button", name="Sign out").count() == 0


def test_wrong_password_keeps_the_visitor_out(live_app, browser_page):
    page = browser_page
    page.goto(live_app.url("keys"))
    wait_for_app(page)
    sign_in(page, live_app, password="not the admin's password")
    page.get_by_text("Email or password is incorrect.").wait_for()
    assert page.get_by_role("button", name="Sign out").count() == 0
    assert not has_cookie(page)


@pytest.fixture(scope="module")
def plain_app(tmp_path_factory):
    """`streamlit run dashboard.py` alone, without the st.App wrapper of app.py."""
    if not SERVERS:
        skip_or_fail("no PostgreSQL server")
    name = f"gk_e2e_plain_{os.getpid()}"
    url = create_database(SERVERS[0], name)
    try:
        with run_app(url, tmp_path_factory.mktemp("e2e-plain"), entry="dashboard.py") as app:
            yield app
    finally:
        dispose_engines()
        drop_database(SERVERS[0], name)


def test_dashboard_alone_still_serves_the_app_without_remembering_sign_ins(plain_app,
                                                                          browser_page):
    page = browser_page
    page.goto(plain_app.url())
    wait_for_app(page)
    sign_in(page, plain_app)
    page.get_by_role("heading", name="Overview").first.wait_for()
    page.get_by_role("button", name="Sign out").wait_for()
    page.wait_for_timeout(1000)
    assert not has_cookie(page)  # no route to set it: a reload asks for the password
    page.reload()
    wait_for_app(page)
    sign_in_form(page)
