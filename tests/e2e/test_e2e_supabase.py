"""In Chromium, against a hosted-Supabase-shaped database (tests/support/supabase.py) with
DATABASE_URL alone, as the `postgres` login Supabase hands out: a user who signed up through
Supabase Auth is made an admin from the CLI, signs in, stays signed in on reload (the cookie
is restored without reading anyone's password hash) and sees their keys."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from db.engine import REPO_ROOT, dispose_engines
from tests.e2e.conftest import skip_or_fail
from tests.support.browser import sign_in, visible_text, wait_for_app, wait_for_cookie
from tests.support.databases import SERVERS
from tests.support.keys import fake_key
from tests.support.live_app import run_app
from tests.support.supabase import GOTRUE_EMAIL, GOTRUE_PASSWORD, create_project, drop_project

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]


@pytest.fixture(scope="module")
def supabase_app(tmp_path_factory):
    if not SERVERS:
        skip_or_fail("no PostgreSQL server")
    project = create_project(SERVERS[0], f"gk_e2e_supabase_{os.getpid()}")
    try:
        with run_app(project.postgres_url, tmp_path_factory.mktemp("e2e-supabase"),
                     app_url=project.postgres_url) as app:
            yield app
    finally:
        dispose_engines()
        drop_project(project)


def cli(app, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "lib.cli", *args], cwd=REPO_ROOT,
                            env=app.env, input=stdin, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_supabase_auth_user_signs_in_and_sees_the_keys(supabase_app, browser_page):
    cli(supabase_app, "grant-admin", "--email", GOTRUE_EMAIL)
    cli(supabase_app, "add-key", "--name", "from-supabase", "--actor", GOTRUE_EMAIL,
        stdin=fake_key() + "\n")
    page = browser_page
    page.goto(supabase_app.url("keys"))
    wait_for_app(page)
    sign_in(page, supabase_app, GOTRUE_EMAIL, GOTRUE_PASSWORD)
    page.get_by_text("Signed in as").wait_for()
    # User text is inert: a word joiner keeps the email from becoming a mailto link.
    sidebar = visible_text(page, "[data-testid=stSidebar]").replace("\u2060", "")
    assert f"Signed in as {GOTRUE_EMAIL}" in sidebar
    wait_for_cookie(page)
    page.reload()
    wait_for_app(page)
    page.get_by_role("button", name="Sign out").wait_for()  # signed in again by the cookie
    page.goto(supabase_app.url("keys"))
    wait_for_app(page)
    # The table is drawn on a canvas; its accessible grid holds the key's name.
    page.locator("[role=gridcell]", has_text="from-supabase").first.wait_for(state="attached")
    assert "Something went wrong" not in page.inner_text("body")
