"""The Admins page under AppTest: list, create, grant/revoke, reset; bad input stores nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.users.signin import sign_in
from tests.support.apptest import page_test, shown
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows, dump_text

pytestmark = pytest.mark.one_server
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase"


def page(actor: Actor) -> AppTest:
    return page_test("admins", actor, timeout=60).run()


def state(db) -> tuple:
    with db.engine.connect() as connection:
        users = connection.execute(text(
            "SELECT u.email, u.encrypted_password, p.is_admin FROM auth.users u "
            "LEFT JOIN user_profiles p ON p.user_id = u.id ORDER BY u.email")).all()
    return [tuple(u) for u in users], audit_rows(db)


def create(at: AppTest, email: str, password: str, repeat: str | None = None,
           admin: bool = False) -> AppTest:
    at.text_input(key="gk_new_user_email").input(email)
    at.text_input(key="gk_new_user_password").input(password)
    at.text_input(key="gk_new_user_repeat").input(password if repeat is None else repeat)
    at.checkbox(key="gk_new_user_admin").set_value(admin)
    return at.button(key="FormSubmitter:gk_create_user-Create user").click().run()


def rights(at: AppTest, email: str, action: str) -> AppTest:
    at.selectbox(key="gk_rights_user").select(email)
    return at.button(key=f"FormSubmitter:gk_admin_rights-{action} admin").click().run()


def test_admin_sees_every_user(db, admin_actor, member_actor):
    at = page(admin_actor)
    table = at.dataframe[0].value
    assert list(table["Email"]) == ["admin@example.com", "member@example.com"]
    assert list(table["Admin"]) == [True, False]
    assert list(table["Last sign-in"]) == ["never", "never"]


def test_create_user_then_they_can_sign_in(db, admin_actor):
    at = create(page(admin_actor), "bob@example.com", PASSWORD, admin=True)
    assert not at.exception and not at.error
    assert "Created admin bob@example.com." in shown(at.success[0].value)
    assert "bob@example.com" in list(at.dataframe[0].value["Email"])
    [row] = audit_rows(db, "user_created")[-1:]
    assert row["user_id"] == admin_actor.user_id and row["details"]["email"] == "bob@example.com"
    assert PASSWORD not in dump_text(db)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert sign_in(session, "bob@example.com", PASSWORD, bcrypt_rounds=TEST_BCRYPT_ROUNDS).ok


@pytest.mark.parametrize(("email", "password", "repeat", "message"), [
    ("bob@example.com", PASSWORD, PASSWORD + "x", "do not match"),
    ("not-an-email", PASSWORD, None, "valid email"),
    ("bob@example.com", "", None, "empty"),
    ("bob@example.com", "short", None, "at least 12"),
    ("member@example.com", PASSWORD, None, "already exists"),
])
def test_bad_new_user_shows_a_message_and_stores_nothing(db, admin_actor, member_actor,
                                                         email, password, repeat, message):
    before = state(db)
    at = create(page(admin_actor), email, password, repeat)
    assert not at.exception
    assert message in shown(at.error[0].value)
    assert state(db) == before


def test_grant_and_revoke_from_the_page(db, admin_actor, member_actor):
    at = rights(page(admin_actor), "member@example.com", "Grant")
    assert "member@example.com is now an admin." in shown(at.success[0].value)
    at = rights(at, "member@example.com", "Revoke")
    assert "member@example.com is no longer an admin; their sessions are ended." in shown(
        at.success[0].value)
    actions = [r["action"] for r in audit_rows(db) if r["action"] != "user_created"]
    assert actions == ["admin_granted", "admin_revoked"]


def test_revoking_yourself_is_refused_on_the_page(db, admin_actor):
    make_user(db, "second@example.com", admin=True)
    before = state(db)
    at = rights(page(admin_actor), "admin@example.com", "Revoke")
    assert "your own admin access" in shown(at.error[0].value)
    assert state(db) == before


def test_reset_password_from_the_page(db, admin_actor, member_actor):
    at = page(admin_actor)
    at.selectbox(key="gk_reset_user").select("member@example.com")
    at.text_input(key="gk_reset_password").input(NEW_PASSWORD)
    at.text_input(key="gk_reset_repeat").input(NEW_PASSWORD)
    at = at.button(key="FormSubmitter:gk_reset_password-Reset password").click().run()
    assert "New password set for member@example.com" in shown(at.success[0].value)
    assert [r["action"] for r in audit_rows(db)][-1] == "password_reset"
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert sign_in(session, "member@example.com", NEW_PASSWORD,
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS).ok


def test_sign_out_everywhere_from_the_page_ends_the_users_sessions(db, admin_actor,
                                                                   member_actor):
    from lib.users.sessions import live_session
    from tests.support.apptest import start_test_session

    sids = [start_test_session(member_actor) for _ in range(2)]
    at = page(admin_actor)
    at.selectbox(key="gk_sign_out_user").select("member@example.com")
    at = at.button(key="FormSubmitter:gk_sign_out_everywhere-Sign this user out everywhere"
                   ).click().run()
    assert "Signed member@example.com out everywhere (2 session(s) ended)." in shown(
        at.success[0].value)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert [live_session(session, sid) for sid in sids] == [None, None]
    [row] = audit_rows(db, "signed_out_everywhere")
    assert row["user_id"] == admin_actor.user_id
    assert not at.exception and at.title[0].value == "Admins"  # the admin's own session stays


def test_failed_sign_ins_are_listed_with_their_counts(db, admin_actor):
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        for _ in range(3):
            sign_in(session, "admin@example.com", "not the password", client_address="203.0.113.9",
                    bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    at = page(admin_actor)
    table = at.dataframe[-1].value
    assert list(table["Email"]) == ["admin@example.com"]
    assert list(table["Client"]) == ["203.0.113.9"]
    assert list(table["Failures"]) == [3]
    assert "not the password" not in dump_text(db)
