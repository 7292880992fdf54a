"""Browser attacks, in Chromium against `streamlit run app.py`:

- a copied sign-in cookie replayed after sign-out, after a password reset and after
  "sign out everywhere" signs nothing in;
- a page on another port of the same host (another origin, the same site) can neither read
  the cookie, nor use it through the app's websocket, nor frame the app;
- a downloaded export is not reachable by its URL from another client or after sign-out;
- a malformed cookie breaks no page;
- hostile user text renders as text on every page (no link, no image);
- `streamlit run dashboard.py` alone still serves the app.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from db.engine import REPO_ROOT, dispose_engines
from lib.runtime import build_runtime
from tests.e2e.conftest import skip_or_fail
from tests.support.browser import sign_in, sign_in_form, sign_out, visible_text, wait_for_app
from tests.support.databases import SERVERS, create_database, drop_database
from tests.support.fake_gemini import FakeGemini
from tests.support.hostile import (
    HOSTILE_EMAIL,
    HOSTILE_GROUP,
    HOSTILE_NAME,
    PASSWORD,
    seed_hostile,
)
from tests.support.live_app import run_app
from tests.support.other_origin import other_origin, run_app_over_websocket

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

COOKIE = "gemini_keys_auth"
SIGNED_IN = 'label: "Sign out"'  # in what the server sends a signed-in session
PAGE_PATHS = sorted(p.stem for p in (REPO_ROOT / "pages").glob("*.py"))


def signed_in_page(chromium, live_app, email=None, password=None):
    """A new browser context signed in (its cookie set); (context, page)."""
    context = chromium.new_context(accept_downloads=True)
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(live_app.url())
    wait_for_app(page)
    sign_in(page, live_app, email, password)
    page.get_by_role("button", name="Sign out").wait_for()
    wait_for_app(page)
    for _ in range(100):  # the cookie arrives with the response to the page's ticket
        if cookie_of(context):
            break
        page.wait_for_timeout(100)
    return context, page


def cookie_of(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == COOKIE), None)


def replay(chromium, live_app, cookie: dict):
    """A fresh browser holding only a copy of `cookie`; its page after loading the app."""
    context = chromium.new_context()
    context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path")}])
    page = context.new_page()
    page.goto(live_app.url())
    wait_for_app(page)
    return context, page


def assert_signed_out(page) -> None:
    sign_in_form(page)
    wait_for_app(page)
    # A stale sidebar of the previous run may linger a moment; it must go, and stay gone.
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def cli(live_app, *args: str, stdin: str | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "lib.cli", *args], cwd=REPO_ROOT,
                            env=live_app.env, input=stdin, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


def test_the_cookie_is_httponly_strict_and_restores_a_sign_in(live_app, chromium):
    context, page = signed_in_page(chromium, live_app)
    cookie = cookie_of(context)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # development over http; production sets Secure
    assert COOKIE not in page.evaluate("document.cookie")  # no script can read it
    copy, copied = replay(chromium, live_app, cookie)
    copied.get_by_role("button", name="Sign out").wait_for()  # while the session lives
    copy.close()
    context.close()


@pytest.mark.parametrize("ending", ["sign-out", "password-reset", "sign-out-everywhere"])
def test_a_copied_cookie_stops_working(live_app, chromium, ending):
    # Before: the cookie was a signed "username + expiry" and kept working after all three.
    email, password = f"e2e-{ending}@example.com", "e2e replay passphrase"
    cli(live_app, "create-user", "--email", email, "--admin", "--password-stdin",
        stdin=password + "\n")
    context, page = signed_in_page(chromium, live_app, email, password)
    stolen = cookie_of(context)
    assert stolen
    if ending == "sign-out":
        sign_out(page)
        assert_signed_out(page)
    elif ending == "password-reset":
        cli(live_app, "reset-password", "--email", email, "--password-stdin",
            stdin="a brand new passphrase\n")
    else:
        cli(live_app, "sign-out-everywhere", "--email", email)
    copy, copied = replay(chromium, live_app, stolen)
    assert_signed_out(copied)
    if ending != "sign-out":  # the open tab is signed out on its next click too
        page.get_by_role("link", name="Keys").first.click()
        assert_signed_out(page)
    copy.close()
    context.close()


def test_a_page_on_another_port_cannot_read_use_or_frame_the_session(live_app, chromium):
    # Before: the cookie was readable by script on any port of the host, and the app's
    # websocket, opened from there with the cookie, served the admin's pages.
    context, page = signed_in_page(chromium, live_app)
    # The probe works: from the app's own origin it does get the signed-in pages...
    assert SIGNED_IN in run_app_over_websocket(page, live_app.base_url)
    frame_html = f'<iframe id="app" src="{live_app.url()}" width="800" height="600"></iframe>'
    with other_origin(frame_html) as attacker_url:
        attacker = context.new_page()
        attacker.goto(attacker_url)
        # ...but not from another origin of the same host, in the same browser.
        assert COOKIE not in attacker.evaluate("document.cookie")
        sent = run_app_over_websocket(attacker, live_app.base_url)
        assert SIGNED_IN not in sent and live_app.admin_email.split("@")[0] not in sent
        assert 'label: "Password"' in sent  # it got the sign-in form
        # Nor can it frame the app (X-Frame-Options / frame-ancestors): Chromium shows its
        # error page in the frame instead.
        framed = next(f for f in attacker.frames if f != attacker.main_frame)
        for _ in range(100):
            if framed.url not in ("", "about:blank"):
                break
            attacker.wait_for_timeout(100)
        assert framed.url.startswith("chrome-error://"), framed.url
    context.close()


def download_url(page) -> str:
    page.get_by_role("link", name="Audit log").first.click()
    page.get_by_role("heading", name="Audit log").first.wait_for()
    wait_for_app(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    return download.value.url


def test_a_downloaded_export_is_not_reachable_by_url_elsewhere_or_later(live_app, chromium):
    # Streamlit 1.67 keeps the file at /media/<hash>.csv for any client with the URL until a
    # later script run prunes it (it survived the click, a rerun and the tab in our probes).
    context, page = signed_in_page(chromium, live_app)
    url = download_url(page)
    assert "/media/" in url
    mine = context.request.get(url)
    assert mine.status == 200 and "created_at" in mine.text()
    assert "no-store" in mine.headers.get("cache-control", "")
    stranger = chromium.new_context()
    assert stranger.request.get(url).status == 403
    with other_origin() as attacker_url:  # a script of another origin, with our cookie
        attacker = context.new_page()
        attacker.goto(attacker_url)
        status = attacker.evaluate("url => fetch(url, {credentials: 'include'})"
                                   ".then(r => r.status, () => 'blocked')", url)
        assert status in (403, "blocked")
    stolen = cookie_of(context)
    sign_out(page)
    assert_signed_out(page)
    assert context.request.get(url).status == 403
    copy, _ = replay(chromium, live_app, stolen)
    assert copy.request.get(url).status == 403
    for other in (stranger, copy, context):
        other.close()


MALFORMED_COOKIES = {
    "garbage": "not-a-token",
    "alg none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.",
    "unsupported alg": "eyJhbGciOiJYWVo5OTkiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJ4In0.c2ln",
    "bad header": "e30x.eyJzdWIiOiJ4In0.c2ln",
    "quotes and semicolons": '"%7B%22a%22%3A1%7D"',
}


@pytest.mark.parametrize("value", MALFORMED_COOKIES.values(), ids=MALFORMED_COOKIES.keys())
def test_a_malformed_cookie_breaks_no_page(live_app, chromium, value):
    context = chromium.new_context()
    host = live_app.base_url.split("//")[1].split(":")[0]
    context.add_cookies([{"name": COOKIE, "value": value, "domain": host, "path": "/"}])
    page = context.new_page()
    for path in [*PAGE_PATHS, ""]:
        page.goto(live_app.url(path))
        wait_for_app(page)
        assert_signed_out(page)
        body = visible_text(page)
        assert "Something went wrong" not in body and "Error" not in body, path
    assert "Traceback" not in live_app.log_text()
    sign_in(page, live_app)  # and signing in over it works
    page.get_by_role("button", name="Sign out").wait_for()
    context.close()


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    """A server whose data holds hostile text everywhere a page shows user text."""
    if not SERVERS:
        skip_or_fail("no PostgreSQL server")
    name = f"gk_e2e_hostile_{os.getpid()}"
    url = create_database(SERVERS[0], name)
    try:
        with run_app(url, tmp_path_factory.mktemp("e2e-hostile")) as app, FakeGemini() as fake:
            runtime = build_runtime(app.env, apply_migrations=False)  # the server's master key
            seed_hostile(runtime.engine, runtime.master_key, fake)
            yield app
    finally:
        dispose_engines()
        drop_database(SERVERS[0], name)


def test_hostile_text_renders_as_text_on_every_page(hostile_app, browser_page):
    page = browser_page
    page.goto(hostile_app.url())
    wait_for_app(page)
    sign_in(page, hostile_app, HOSTILE_EMAIL, PASSWORD)
    page.get_by_role("button", name="Sign out").wait_for()
    for path in PAGE_PATHS:
        page.goto(hostile_app.url(path))
        wait_for_app(page)
        page.get_by_role("button", name="Sign out").wait_for()
        page.wait_for_timeout(500)  # charts and tables draw after the run
        assert page.locator("a[href*='evil.example'], img[src*='evil.example']").count() == 0, (
            path)
        assert page.locator(".katex, [data-testid=stMarkdownColoredText], "
                            "[data-testid=stMarkdownColoredBackground]").count() == 0, path
        assert f"Signed in as {HOSTILE_EMAIL}" in visible_text(page), path
        if path == "keys":  # the table is a canvas; the group field's tooltip is Markdown
            field = page.locator("[data-testid=stTextInput]").filter(
                has_text="Group (Google Cloud project)").first
            field.locator("[data-testid=stTooltipIcon]").hover()
            tooltip = page.locator("[data-testid=stTooltipContent]").first
            tooltip.wait_for()
            assert HOSTILE_GROUP in visible_text(page, "[data-testid=stTooltipContent]")
            assert tooltip.locator("a, img, strong").count() == 0
            continue
        if path == "analytics":  # the heatmap's row labels are SVG text
            page.locator("[data-testid=stPlotlyChart]").last.scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            labels = page.locator("[data-testid=stPlotlyChart] .ytick text").evaluate_all(
                "els => els.map(e => e.textContent)")
            assert HOSTILE_NAME in labels, labels  # "<b>h</b>" as text, not in bold
            continue
        if path == "tokens":  # the token list is a canvas grid (AppTest checks its cells);
            assert page.locator("main a[href*='evil'], main img[src*='evil']").count() == 0
            continue
        expected = HOSTILE_EMAIL if path == "admins" else HOSTILE_NAME
        assert expected in visible_text(page), path
