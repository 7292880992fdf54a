"""The shell of the app in Chromium against `streamlit run app.py`: deep links survive a
reload for a signed-in admin on every page; the first admin is created in the browser with
the setup code the server printed (wrong codes refused, single use, gone once an admin
exists); a database restart shows "unavailable" with the navigation kept and recovers by
itself; icons are Material icons (no emoji font needed)."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from sqlalchemy import text

from db.engine import REPO_ROOT, dispose_engines
from tests.e2e.conftest import skip_or_fail
from tests.support.browser import (
    sign_in,
    sign_in_form,
    visible_text,
    wait_for_app,
    wait_for_cookie,
)
from tests.support.databases import (
    SERVERS,
    app_login_url,
    create_database,
    drop_database,
    start_private_postgres,
    stop_embedded_postgres,
)
from tests.support.live_app import run_app

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

DASHBOARD = (REPO_ROOT / "dashboard.py").read_text()
# (URL path, title) of every admin page, read from the navigation itself.
PAGES = [(path, title) for title, path in re.findall(
    r"""st\.Page\(\s*["']pages/[^"']+["'],\s*title=["']([^"']+)["'],\s*icon=["'][^"']+["'],"""
    r"""\s*url_path=(?:["']([^"']+)["']|HOME)""", DASHBOARD)]
PAGES = [(path or "overview", title) for path, title in PAGES]
SETUP_CODE = re.compile(r"Setup code for \"Create the first admin\" on the sign-in page: "
                        r"([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})")
PASSWORD = "first admin's long passphrase"


def heading(page, title: str):
    return page.get_by_role("heading", name=title, exact=True).first


def test_every_admin_page_survives_a_reload_and_a_bookmark(live_app, browser_page):
    assert len(PAGES) == 6, PAGES
    page = browser_page
    page.goto(live_app.url("keys"))  # a bookmark while signed out: sign in, then that page
    wait_for_app(page)
    sign_in(page, live_app)
    heading(page, "Keys").wait_for()
    page.get_by_role("button", name="Sign out").wait_for()
    wait_for_cookie(page)
    for path, title in PAGES:
        page.goto(live_app.url(path))  # a bookmark: a new page load on that URL
        heading(page, title).wait_for()
        page.reload()  # and a reload of it
        heading(page, title).wait_for()
        default = path == "overview" and page.url == live_app.url()  # the default page
        assert default or page.url.rstrip("/").endswith(f"/{path}"), (path, page.url)
        others = [t for _, t in PAGES if t != title]
        assert not [t for t in others if heading(page, t).count()], (path, others)
        page.get_by_role("button", name="Sign out").wait_for()  # still signed in


def test_icons_are_material_icons_not_emoji(live_app, browser_page):
    page = browser_page
    page.goto(live_app.url())
    wait_for_app(page)
    sign_in(page, live_app)
    page.get_by_role("button", name="Sign out").wait_for()
    nav = visible_text(page, "[data-testid=stSidebarNav]")
    assert not re.search("[\U0001F300-\U0001FAFF\u2600-\u27BF]", nav), nav
    # Streamlit draws :material/...: icons with its bundled icon font, as ligature text.
    assert page.locator("[data-testid=stSidebarNav] [data-testid=stIconMaterial]").count() \
        == len(PAGES)


@pytest.fixture(scope="module")
def no_admin_app(tmp_path_factory):
    """A server whose database has no admin yet, as after the README's two commands."""
    if not SERVERS:
        skip_or_fail("no PostgreSQL server")
    name = f"gk_e2e_setup_{os.getpid()}"
    url = create_database(SERVERS[0], name)
    try:
        with run_app(url, tmp_path_factory.mktemp("e2e-setup"), with_admin=False) as app:
            yield app
    finally:
        dispose_engines()
        drop_database(SERVERS[0], name)


def printed_codes(app) -> list[str]:
    return SETUP_CODE.findall(app.log_text())


def wait_for_code(app, page) -> str:
    for _ in range(200):
        codes = printed_codes(app)
        if codes:
            return codes[-1]
        page.wait_for_timeout(100)
    raise AssertionError("no setup code in the server's log:\n" + app.log_text()[-2000:])


def create_admin(page, code: str, email: str, password: str = PASSWORD,
                 again: str | None = None) -> None:
    page.get_by_role("textbox", name="Setup code").fill(code)
    page.get_by_role("textbox", name="Admin email").fill(email)
    page.get_by_role("textbox", name="New password", exact=True).fill(password)
    page.get_by_role("textbox", name="New password again").fill(again or password)
    page.get_by_role("button", name="Create the first admin").click()


def test_the_first_admin_is_created_in_the_browser_with_the_printed_code(no_admin_app,
                                                                          browser_page):
    app, page = no_admin_app, browser_page
    page.goto(app.url())
    wait_for_app(page)
    page.get_by_text("No admin exists yet").wait_for()
    code = wait_for_code(app, page)
    assert code not in page.content()  # the console only, never the page
    with app.engine.connect() as connection:  # stored as a hash only
        stored = connection.execute(text("SELECT code_hash FROM gemini_setup_code")).scalar()
    assert stored and code not in stored and code.replace("-", "") not in stored

    create_admin(page, "AAAA-BBBB-CCCC-DDDD", "first@example.com")
    page.get_by_text("That setup code is not valid").wait_for()
    create_admin(page, code, "first@example.com", again="a different passphrase!")
    page.get_by_text("The two passwords differ.").wait_for()

    create_admin(page, code.lower().replace("-", " "), "first@example.com")
    heading(page, "Overview").wait_for()  # signed in as the new admin
    page.get_by_text("Signed in as").wait_for()
    assert "first@example.com" in visible_text(page, "[data-testid=stSidebar]")
    with app.engine.connect() as connection:
        actions = connection.execute(text(
            "SELECT action FROM gemini_key_audit_log WHERE action LIKE 'setup_code_%' "
            "OR action = 'user_created' ORDER BY created_at")).scalars().all()
    assert actions[-1] == "user_created"
    assert "setup_code_failed" in actions and "setup_code_issued" in actions

    # An admin exists now: a new visitor sees no setup form, and the code is spent.
    other = page.context.browser.new_context()
    visitor = other.new_page()
    visitor.goto(app.url())
    wait_for_app(visitor)
    sign_in_form(visitor)
    assert visitor.get_by_role("button", name="Create the first admin").count() == 0
    assert "No admin exists yet" not in visitor.inner_text("body")
    other.close()


@pytest.fixture
def restartable_app(tmp_path):
    """The app on a PostgreSQL server of this test's own (embedded, under tmp_path), which
    the test may stop and start; never one of the shared servers."""
    # Under .data/ as the embedded default (the server's OS user must reach the directory).
    pgdata = REPO_ROOT / ".data" / f"e2e-restart-{os.getpid()}" / "pg"
    owner = start_private_postgres(pgdata)
    try:
        from db.engine import ensure_app_login

        ensure_app_login(owner)
        with run_app(owner, tmp_path / "data", app_url=app_login_url(owner)) as app:
            yield app, pgdata
    finally:
        dispose_engines()
        stop_embedded_postgres(pgdata)
        shutil.rmtree(pgdata.parent, ignore_errors=True)


def test_a_database_restart_keeps_the_navigation_and_recovers_by_itself(restartable_app,
                                                                        browser_page):
    (app, pgdata), page = restartable_app, browser_page
    page.goto(app.url("keys"))
    wait_for_app(page)
    sign_in(page, app)
    heading(page, "Keys").wait_for()  # the page asked for, on a freshly started server
    wait_for_cookie(page)

    dispose_engines()  # the test's own connections: the server may stop at once
    stop_embedded_postgres(pgdata)
    page.get_by_role("link", name="Audit log").click()  # the next rerun, database away
    page.get_by_text("The app cannot work right now").wait_for()
    body = visible_text(page)
    assert "is PostgreSQL running?" in body and "check DATABASE_URL" in body  # cause, setting
    nav = visible_text(page, "[data-testid=stSidebarNav]")
    assert all(title in nav for _, title in PAGES), nav  # the navigation stays
    assert "Traceback" not in body

    # A visitor who is not signed in learns nothing of the cause.
    other = page.context.browser.new_context()
    visitor = other.new_page()
    visitor.goto(app.url())
    visitor.get_by_text("temporarily unavailable").wait_for()
    assert "DATABASE_URL" not in visitor.inner_text("body")
    assert "PostgreSQL" not in visitor.inner_text("body")
    other.close()

    start_private_postgres(pgdata)
    heading(page, "Audit log").wait_for()  # no reload: the page retried by itself
    assert "The app cannot work right now" not in visible_text(page)
    page.get_by_role("link", name="Keys").click()
    heading(page, "Keys").wait_for()
