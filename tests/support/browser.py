"""Page helpers for the browser tests: wait for Streamlit, sign in, open a page, sign out,
screenshots."""

from __future__ import annotations

import os

from db.engine import REPO_ROOT
from lib.users.cookies import COOKIE_NAME
from tests.support.live_app import LiveApp

IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
# Screenshots go under .data/screenshots/, or where GK_SCREENSHOTS_DIR says (the README's
# are refreshed with GK_SCREENSHOTS_DIR=docs/screenshots).
SCREENSHOTS = REPO_ROOT / os.environ.get("GK_SCREENSHOTS_DIR", ".data/screenshots")


def screenshot(page, name: str) -> None:
    """The whole page as SCREENSHOTS/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def visible_text(page, selector: str = "body") -> str:
    """The element's text as a reader sees it (without lib.ui.text's invisible joiners)."""
    return page.inner_text(selector).replace("\u2060", "")


def wait_for_app(page) -> None:
    """The Streamlit shell is up and its script run has finished."""
    page.wait_for_selector(IDLE)


def sign_in_form(page):
    """The password box of the sign-in form (waits until it is there, and only once).

    Right after a page switch (sign-out, a deep link) Streamlit can briefly show the previous
    run's form beside the new one until its stale elements are cleared; wait that out. A
    second form that stays is a bug, and the wait then fails.
    """
    page.wait_for_function("""() => [...document.querySelectorAll('input[type=password]')]
        .filter(e => e.offsetParent !== null).length === 1""")
    box = page.get_by_role("textbox", name="Password")
    box.wait_for()
    return box


def sign_in(page, live_app: LiveApp, email: str | None = None,
            password: str | None = None) -> None:
    """Fill and submit the sign-in form on the current page."""
    sign_in_form(page)
    page.get_by_role("textbox", name="Email").fill(email or live_app.admin_email)
    page.get_by_role("textbox", name="Password").fill(password or live_app.admin_password)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page, live_app: LiveApp, email: str | None = None,
              password: str | None = None) -> None:
    """Open the app, sign in, and wait until the signed-in run has finished."""
    page.goto(live_app.url())
    wait_for_app(page)
    sign_in(page, live_app, email, password)
    page.get_by_role("button", name="Sign out").first.wait_for()
    wait_for_app(page)


def open_page(page, title: str) -> None:
    """Follow the sidebar link to a page and wait for its script run."""
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for()
    wait_for_app(page)


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()


def has_cookie(page, name: str = COOKIE_NAME) -> bool:
    """Whether the browser holds the sign-in cookie (it is HttpOnly: not in document.cookie)."""
    return any(c["name"] == name for c in page.context.cookies())


def wait_for_cookie(page, *, present: bool = True) -> None:
    """The page redeems a ticket for the HttpOnly cookie (or clears it): wait until it has."""
    for _ in range(100):
        if has_cookie(page) == present:
            return
        page.wait_for_timeout(100)
    assert has_cookie(page) == present
