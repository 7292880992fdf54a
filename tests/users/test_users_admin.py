"""Managing users as the signed-in admin (RLS + in-database admin re-check) and from the CLI."""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.cli import cli
from lib.errors import Forbidden, InvalidInput, NotFound
from lib.users.accounts import create_user, list_users, reset_password, set_admin
from lib.users.signin import sign_in
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows, dump_text

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase"


def user_rows(db) -> list[tuple[str, bool | None]]:
    with db.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT u.email, p.is_admin FROM auth.users u "
            "LEFT JOIN user_profiles p ON p.user_id = u.id ORDER BY u.email"))]


def changes(db) -> list[dict]:
    return [r for r in audit_rows(db) if r["action"] != "user_created"]


def as_actor(db, actor: Actor):
    return session_scope(actor, engine=db.engine)


def can_sign_in(db, email: str, password: str) -> bool:
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        return sign_in(session, email, password, bcrypt_rounds=TEST_BCRYPT_ROUNDS).ok


def test_admin_creates_a_user_in_one_audited_transaction(db, admin_actor):
    with as_actor(db, admin_actor) as session:
        create_user(session, email="Bob@Example.com", password=PASSWORD, admin=False,
                    bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert ("bob@example.com", False) in user_rows(db)
    row = audit_rows(db, "user_created")[-1]
    assert row["user_id"] == admin_actor.user_id and row["key_id"] is None
    assert row["details"]["email"] == "bob@example.com"
    assert PASSWORD not in dump_text(db)
    assert can_sign_in(db, "bob@example.com", PASSWORD)


@pytest.mark.parametrize(("email", "password", "message"), [
    ("not-an-email", PASSWORD, "valid email"),
    ("", PASSWORD, "valid email"),
    ("bob@example.com", "", "empty"),
    ("bob@example.com", "short", "at least 12"),
    ("bob@example.com", "password1234", "too easy"),
    ("bob@example.com", "é" * 40, "at most 72 bytes"),
    ("ADMIN@example.com", PASSWORD, "already exists"),
])
def test_bad_new_user_is_refused_and_nothing_stored(db, admin_actor, email, password, message):
    before = (user_rows(db), audit_rows(db))
    with pytest.raises(InvalidInput, match=message), as_actor(db, admin_actor) as session:
        create_user(session, email=email, password=password, bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert (user_rows(db), audit_rows(db)) == before


@pytest.mark.parametrize("change", [
    lambda s: create_user(s, email="eve@example.com", password=PASSWORD, admin=True,
                          bcrypt_rounds=TEST_BCRYPT_ROUNDS),
    lambda s: set_admin(s, email="member@example.com", admin=True),
    lambda s: reset_password(s, email="admin@example.com", password=NEW_PASSWORD,
                             bcrypt_rounds=TEST_BCRYPT_ROUNDS),
    lambda s: list_users(s),
])
def test_non_admin_can_manage_nothing(db, admin_actor, member_actor, change):
    before = (user_rows(db), audit_rows(db))
    with pytest.raises(Forbidden), as_actor(db, member_actor) as session:
        change(session)
    assert (user_rows(db), audit_rows(db)) == before
    assert can_sign_in(db, "admin@example.com", PASSWORD)


def test_grant_and_revoke_write_one_audit_row_each(db, admin_actor, member_actor):
    with as_actor(db, admin_actor) as session:
        assert set_admin(session, email="member@example.com", admin=True)
    with as_actor(db, admin_actor) as session:
        assert not set_admin(session, email="member@example.com", admin=True)  # no change
    with as_actor(db, admin_actor) as session:
        assert set_admin(session, email="member@example.com", admin=False)
    rows = changes(db)
    assert [r["action"] for r in rows] == ["admin_granted", "admin_revoked"]
    assert all(r["key_id"] is None and r["user_id"] == admin_actor.user_id for r in rows)
    assert rows[0]["details"]["before"] == {"is_admin": False}
    assert rows[0]["details"]["after"] == {"is_admin": True}
    assert ("member@example.com", False) in user_rows(db)


def test_admin_cannot_revoke_themself(db, admin_actor):
    make_user(db, "second@example.com", admin=True)
    with pytest.raises(Forbidden, match="your own"), as_actor(db, admin_actor) as session:
        set_admin(session, email="admin@example.com", admin=False)
    assert ("admin@example.com", True) in user_rows(db) and changes(db) == []


def test_last_admin_cannot_be_revoked(db, admin_actor):
    with pytest.raises(Forbidden, match="last admin"), \
            session_scope(Actor.service("cli"), engine=db.engine) as session:
        set_admin(session, email="admin@example.com", admin=False)
    assert ("admin@example.com", True) in user_rows(db) and changes(db) == []


@pytest.mark.one_server
def test_two_admins_revoking_each_other_at_once_leave_one_admin(db, admin_actor):
    other = make_user(db, "second@example.com", admin=True)
    barrier, outcomes = threading.Barrier(2), []

    def revoke(actor: Actor, email: str) -> None:
        try:
            with as_actor(db, actor) as session:
                barrier.wait()
                set_admin(session, email=email, admin=False)
            outcomes.append("revoked")
        except Forbidden as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=revoke, args=(admin_actor, "second@example.com")),
               threading.Thread(target=revoke, args=(other, "admin@example.com"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes)[-1] == "revoked" and len(outcomes) == 2
    assert sum(1 for _, admin in user_rows(db) if admin) == 1


def test_missing_user_is_not_found(db, admin_actor):
    with pytest.raises(NotFound), as_actor(db, admin_actor) as session:
        set_admin(session, email="nobody@example.com", admin=True)


def test_reset_password_replaces_the_old_one(db, admin_actor, member_actor):
    with as_actor(db, admin_actor) as session:
        reset_password(session, email="member@example.com", password=NEW_PASSWORD,
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert not can_sign_in(db, "member@example.com", PASSWORD)
    assert can_sign_in(db, "member@example.com", NEW_PASSWORD)
    [row] = [r for r in changes(db) if r["action"] == "password_reset"]
    assert row["key_id"] is None and row["details"]["email"] == "member@example.com"
    assert NEW_PASSWORD not in dump_text(db)


def test_admin_lists_users_with_their_rights(db, admin_actor, member_actor):
    with as_actor(db, admin_actor) as session:
        users = list_users(session)
    assert [(u.email, u.is_admin) for u in users] == [("admin@example.com", True),
                                                      ("member@example.com", False)]
    assert all(u.created_at is not None and u.last_sign_in_at is None for u in users)


def test_revoked_admin_loses_management_in_the_next_transaction(db, admin_actor):
    make_user(db, "second@example.com", admin=True)
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        set_admin(session, email="admin@example.com", admin=False)
    with pytest.raises(Forbidden), as_actor(db, admin_actor) as session:
        list_users(session)


# -- CLI --------------------------------------------------------------------------------------

def run_cli(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_cli_grant_list_revoke(db, admin_actor, member_actor):
    result = run_cli("grant-admin", "--email", "member@example.com",
                     "--actor", "admin@example.com")
    assert result.exit_code == 0 and "is now an admin" in result.output
    listing = run_cli("list-users").output
    assert "member@example.com\tadmin" in listing and "admin@example.com\tadmin" in listing
    result = run_cli("revoke-admin", "--email", "member@example.com")
    assert result.exit_code == 0 and "is no longer an admin" in result.output
    assert [r["action"] for r in changes(db)] == ["admin_granted", "admin_revoked"]
    assert changes(db)[0]["user_id"] == admin_actor.user_id


def test_cli_refuses_to_revoke_the_last_admin(db, admin_actor):
    result = CliRunner().invoke(cli, ["revoke-admin", "--email", "admin@example.com"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and "last admin" in result.output


def test_cli_reset_password_reads_stdin_only(db, member_actor):
    result = CliRunner().invoke(cli, ["reset-password", "--email", "member@example.com"])
    assert result.exit_code == 1 and "--password-stdin" in result.output
    result = run_cli("reset-password", "--email", "member@example.com", "--password-stdin",
                     input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0 and NEW_PASSWORD not in result.output
    assert can_sign_in(db, "member@example.com", NEW_PASSWORD)
