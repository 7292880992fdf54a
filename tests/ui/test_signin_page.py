"""app.py under AppTest: the sign-in form, first-run help, throttle message, roles, sign-out,
and the session check on every run (sign-out, reset, revoke, sign out everywhere)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.ui.identity import SESSION_USER
from lib.users.accounts import reset_password, set_admin, sign_out_everywhere
from lib.users.signin import THROTTLE
from tests.support.apptest import shown
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows

pytestmark = pytest.mark.one_server
PASSWORD = "correct horse battery staple"


def app() -> AppTest:
    return AppTest.from_file("../../dashboard.py", default_timeout=60).run()


def submit(at: AppTest, email: str, password: str) -> AppTest:
    at.text_input(key="gk_sign_in_email").input(email)
    at.text_input(key="gk_sign_in_password").input(password)
    return at.button(key="FormSubmitter:gk_sign_in-Sign in").click().run()


def live_sessions(db, user_id) -> int:
    with db.engine.connect() as connection:
        return connection.scalar(text(
            "SELECT count(*) FROM gemini_user_sessions WHERE user_id = :u "
            "AND revoked_at IS NULL AND expires_at > localtimestamp"), {"u": user_id})


def signed_in(at: AppTest) -> bool:
    return SESSION_USER in at.session_state and bool(at.sidebar.button)


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
    user = at.session_state[SESSION_USER]
    assert (user["id"], user["email"]) == (str(admin.user_id), "admin@example.com")
    assert live_sessions(db, admin.user_id) == 1  # the session the cookie will name
    assert "Signed in as admin@example.com" in shown(at.sidebar.caption[0].value)
    assert not [t for t in at.text_input if t.key == "gk_sign_in_password"]

    at.sidebar.button(key="gk_sign_out").click().run()
    assert SESSION_USER not in at.session_state
    assert live_sessions(db, admin.user_id) == 0  # ended: a copy of the cookie is dead too
    assert [t.key for t in at.text_input] == ["gk_sign_in_email", "gk_sign_in_password"]


def test_wrong_password_shows_one_message_and_clears_the_password(db):
    make_user(db, "admin@example.com", admin=True)
    at = submit(app(), "admin@example.com", "not the password at all")
    assert [shown(e.value) for e in at.error] == ["Email or password is incorrect."]
    assert at.text_input(key="gk_sign_in_password").value == ""
    assert SESSION_USER not in at.session_state
    assert len(audit_rows(db, "sign_in_failed")) == 1


def test_repeated_failures_get_a_wait_message_even_for_the_right_password(db):
    make_user(db, "admin@example.com", admin=True)
    at = app()
    for _ in range(THROTTLE.account_client + 1):
        at = submit(at, "admin@example.com", "not the password at all")
    assert "Too many failed sign-ins: wait" in shown(at.error[0].value)
    at = submit(at, "admin@example.com", PASSWORD)
    assert "Too many failed sign-ins" in shown(at.error[0].value)
    assert SESSION_USER not in at.session_state


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


def reset(db, email: str) -> None:
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        reset_password(session, email=email, password="a brand new passphrase",
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS)


def revoke(db, email: str) -> None:
    other = make_user(db, "second@example.com", admin=True)
    with session_scope(Actor.service("cli", other.user_id, other.email),
                       engine=db.engine) as session:
        set_admin(session, email=email, admin=False)


def everywhere(db, email: str) -> None:
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        sign_out_everywhere(session, email=email)


@pytest.mark.parametrize("end", [reset, revoke, everywhere],
                         ids=["password-reset", "revoke-admin", "sign-out-everywhere"])
def test_an_open_session_is_signed_out_on_its_next_run(db, end):
    # Before sessions were rows, a signed-in browser session stayed signed in after a
    # password reset or sign out everywhere (revoke-admin only showed "No access").
    admin = make_user(db, "admin@example.com", admin=True)
    at = submit(app(), "admin@example.com", PASSWORD)
    assert signed_in(at)
    end(db, "admin@example.com")
    assert live_sessions(db, admin.user_id) == 0
    at.run()
    assert not signed_in(at)
    assert [t.key for t in at.text_input] == ["gk_sign_in_email", "gk_sign_in_password"]
