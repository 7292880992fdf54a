"""The first-admin setup code: stored as a hash only, single use, expires, throttled across
codes, refused once any admin exists (one made by the CLI included); bad input costs no
attempt and stores nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.errors import InvalidInput
from lib.users.accounts import Account
from lib.users.setup_code import (
    ADMIN_EXISTS,
    MAX_FAILURES,
    NO_CODE,
    WRONG_CODE,
    create_first_admin,
    ensure_setup_code,
)
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows

pytestmark = pytest.mark.one_server
PASSWORD = "first admin's long passphrase"


def service(db):
    return session_scope(Actor.service("app"), engine=db.app_engine)


def issue(db, **kwargs):
    with service(db) as session:
        return ensure_setup_code(session, minutes=60, **kwargs)


def redeem(db, code: str, email: str = "first@example.com", password: str = PASSWORD,
           again: str | None = None):
    with service(db) as session:
        return create_first_admin(session, code=code, email=email, password=password,
                                  password_again=again if again is not None else password,
                                  bcrypt_rounds=TEST_BCRYPT_ROUNDS)


def code_row(db) -> dict:
    with db.engine.connect() as connection:
        return dict(connection.execute(text("SELECT * FROM gemini_setup_code")).mappings().one())


def admins(db) -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.execute(text(
            "SELECT u.email FROM auth.users u JOIN user_profiles p ON p.user_id = u.id "
            "WHERE p.is_admin")).scalars())


def test_a_code_is_stored_as_a_hash_and_creates_one_admin_once(db):
    issued = issue(db)
    assert issued is not None and len(issued.code) == 19
    assert "***" in repr(issued) and issued.code not in repr(issued)
    row = code_row(db)
    assert issued.code not in str(row) and issued.code.replace("-", "") not in str(row)
    assert issue(db) is None  # the live code stays (it was printed already)

    account = redeem(db, f"  {issued.code.lower()} ")  # as typed off a console
    assert isinstance(account, Account) and admins(db) == ["first@example.com"]
    [created] = audit_rows(db, "user_created")
    assert created["details"]["via"] == "setup code" and created["details"]["is_admin"]
    assert code_row(db)["used_at"] is not None
    assert redeem(db, issued.code, email="second@example.com") == ADMIN_EXISTS
    assert issue(db) is None  # no new code once an admin exists
    assert admins(db) == ["first@example.com"]


def test_an_admin_made_by_the_cli_ends_the_code(db):
    issued = issue(db)
    make_user(db, "cli-admin@example.com", admin=True)
    assert redeem(db, issued.code) == ADMIN_EXISTS
    assert admins(db) == ["cli-admin@example.com"]


def test_an_expired_or_missing_code_is_refused_and_counted(db):
    assert redeem(db, "AAAA-BBBB-CCCC-DDDD") == NO_CODE
    issued = issue(db)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE gemini_setup_code SET expires_at = now() - "
                                "interval '1 second'"))
    assert redeem(db, issued.code) == WRONG_CODE
    assert admins(db) == [] and code_row(db)["failures"] == 1
    [failed] = audit_rows(db, "setup_code_failed")
    assert failed["details"]["reason"] == "expired or used"
    fresh = issue(db)  # the page prints a new one when the last has expired
    assert fresh is not None and fresh.code != issued.code
    assert isinstance(redeem(db, fresh.code), Account)


def test_wrong_codes_are_throttled_across_new_codes(db):
    issued = issue(db)
    for _ in range(MAX_FAILURES):
        assert redeem(db, "AAAA-BBBB-CCCC-DDDD") == WRONG_CODE
    assert len(audit_rows(db, "setup_code_failed")) == MAX_FAILURES
    assert redeem(db, issued.code).startswith("Too many wrong setup codes")
    renewed = issue(db, force=True)  # a server restart prints a new code...
    assert redeem(db, renewed.code).startswith("Too many wrong setup codes")  # ...same wait
    assert admins(db) == []
    with db.engine.begin() as connection:  # the window has passed
        connection.execute(text("UPDATE gemini_setup_code SET window_start = now() - "
                                "interval '16 minutes'"))
    assert isinstance(redeem(db, renewed.code), Account)


@pytest.mark.parametrize(("email", "password", "again", "message"), [
    ("not an email", PASSWORD, PASSWORD, "valid email"),
    ("first@example.com", PASSWORD, "another long passphrase", "differ"),
    ("first@example.com", "short", "short", "at least 12"),
])
def test_bad_input_costs_no_attempt_and_stores_nothing(db, email, password, again, message):
    issued = issue(db)
    with pytest.raises(InvalidInput, match=message):
        redeem(db, issued.code, email=email, password=password, again=again)
    row = code_row(db)
    assert row["failures"] == 0 and row["used_at"] is None and admins(db) == []
    assert isinstance(redeem(db, issued.code), Account)
