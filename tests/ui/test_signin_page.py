"""app.py under AppTest: the sign-in form, first-run help, throttle message, roles, sign-out."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui.identity import SESSION_USER
from lib.users.signin import THROTTLE
from tests.support.databases import make_user
from tests.support.keys import audit_rows

pytestmark = pytest.mark.one_server
PASSWORD = "correct horse battery staple"


def app() -> AppTest:
    return AppTest.from_file("../../app.py", default_timeout=60).run()


def submit(at: AppTest, email: str, password: str) -> AppTest:
    at.text_input(key="gk_sign_in_email").input(email)
    at.text_input(key="gk_sign_in_password").input(password)
    return at.button(key="FormSubmitter:gk_sign_in-Sign in").click().run()


def test_fresh_install_explains_the_create_user_command(db):
    at = app()
    assert "create-user --email you@example.com --admin --password-stdin" in at.info[0].value
    make_user(db, "admin@example.com", admin=True)
    assert not app().info  # once an admin exists, the help is gone
    # There is no way to create a user from the sign-in page.
    assert [t.label for t in app().text_input] == ["Email", "Password"]


def test_admin_signs_in_and_out(db):
    admin = make_user(db, "admin@example.com", admin=True)
    at = submit(app(), "Admin@Example.com", PASSWORD)
    assert not at.exception
    assert at.session_state[SESSION_USER] == {"id": str(admin.user_id),
                                              "email": "admin@example.com"}
    assert at.session_state["authentication_status"] is True
    assert at.session_state["gk_cookie_op"] == "set"  # until the browser confirms it
    assert "Signed in as admin@example.com" in at.sidebar.caption[0].value
    assert not [t for t in at.text_input if t.key == "gk_sign_in_password"]

    at.sidebar.button(key="gk_sign_out").click().run()
    assert SESSION_USER not in at.session_state
    assert at.session_state["authentication_status"] is None
    assert at.session_state["logout"] is True  # the authenticator ignores the cookie now
    assert at.session_state["gk_cookie_op"] == "delete"
    assert [t.key for t in at.text_input] == ["gk_sign_in_email", "gk_sign_in_password"]


def test_wrong_password_shows_one_message_and_clears_the_password(db):
    make_user(db, "admin@example.com", admin=True)
    at = submit(app(), "admin@example.com", "not the password at all")
    assert [e.value for e in at.error] == ["Email or password is incorrect."]
    assert at.text_input(key="gk_sign_in_password").value == ""
    assert SESSION_USER not in at.session_state
    assert len(audit_rows(db, "sign_in_failed")) == 1


def test_locked_account_gets_a_clear_message(db):
    make_user(db, "admin@example.com", admin=True)
    at = app()
    for _ in range(THROTTLE.max_failures):
        at = submit(at, "admin@example.com", "not the password at all")
    assert "locked for 15 more minutes" in at.error[0].value
    at = submit(at, "admin@example.com", PASSWORD)
    assert "locked" in at.error[0].value and SESSION_USER not in at.session_state


def test_non_admin_gets_the_no_access_page_and_can_sign_out(db):
    make_user(db, "admin@example.com", admin=True)
    make_user(db, "member@example.com", admin=False)
    at = submit(app(), "member@example.com", PASSWORD)
    assert [t.value for t in at.title] == ["No access"]
    assert "admin@example.com" not in str([m.value for m in at.markdown])  # no admin list
    assert not at.sidebar.button
    at.button(key="gk_sign_out_no_access").click().run()
    assert SESSION_USER not in at.session_state
    assert at.text_input(key="gk_sign_in_email")
