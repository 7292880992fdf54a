"""Password sign-in: throttling, what is recorded (never the password), the cookie settings."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from sqlalchemy import text

from db.models import SignInAttempt
from db.session import Actor, session_scope
from lib.errors import ConfigurationError, InvalidInput
from lib.settings import Settings
from lib.users.accounts import reset_password
from lib.users.cookies import COOKIE_KEY_FILENAME, load_cookie_settings
from lib.users.signin import THROTTLE, locked_until, sign_in
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows, dump_text

PASSWORD = "correct horse battery staple"
WRONG = "wrong horse battery staple!"
EMAIL = "ada@example.com"


def attempt(db, email: str = EMAIL, password: str = PASSWORD, **kwargs):
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        return sign_in(session, email, password, bcrypt_rounds=TEST_BCRYPT_ROUNDS, **kwargs)


def db_time(db) -> dt.datetime:
    with db.engine.connect() as connection:
        return connection.scalar(text("SELECT localtimestamp"))


def seed_failures(db, email: str, times: list[dt.datetime]) -> None:
    """Failed attempts at given times, as if sign_in had recorded them."""
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        session.add_all(SignInAttempt(email=email, succeeded=False, attempted_at=t)
                        for t in times)


def attempts(db) -> list[tuple[str, bool]]:
    with db.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT email, succeeded FROM gemini_sign_in_attempts ORDER BY id"))]


def test_correct_password_signs_in_and_records_the_time(db):
    user = make_user(db, EMAIL, admin=True)
    result = attempt(db, "  Ada@Example.COM ")
    assert result.ok and result.user_id == user.user_id
    assert attempts(db) == [(EMAIL, True)]
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT last_sign_in_at FROM auth.users")) is not None
    assert audit_rows(db, "sign_in_failed") == []


@pytest.mark.parametrize("email", [EMAIL, "nobody@example.com"])
def test_failure_is_recorded_and_audited_without_the_password(db, email):
    make_user(db, EMAIL, admin=True)
    result = attempt(db, email, WRONG)
    assert not result.ok
    assert result.message == "Email or password is incorrect."  # same for unknown emails
    assert attempts(db) == [(email, False)]
    [row] = audit_rows(db, "sign_in_failed")
    assert row["key_id"] is None and row["user_id"] is None
    assert row["details"]["email"] == email
    assert WRONG not in dump_text(db)


@pytest.mark.parametrize(("email", "password"), [
    ("not an email", PASSWORD), ("", PASSWORD), (EMAIL, ""), ("a" * 300 + "@example.com", WRONG),
])
def test_malformed_input_is_refused_and_not_recorded(db, email, password):
    make_user(db, EMAIL, admin=True)
    with pytest.raises(InvalidInput):
        attempt(db, email, password)
    assert attempts(db) == []
    assert audit_rows(db, "sign_in_failed") == []


@pytest.mark.one_server  # bcrypt-heavy; the lock SQL also runs on both servers elsewhere
def test_five_failures_lock_the_account_even_against_the_right_password(db):
    make_user(db, EMAIL, admin=True)
    results = [attempt(db, EMAIL, WRONG) for _ in range(THROTTLE.max_failures)]
    assert [r.locked_until is None for r in results] == [True] * 4 + [False]
    assert "locked for 15 more minutes" in results[-1].message
    [locked] = audit_rows(db, "account_locked")
    assert locked["key_id"] is None and locked["details"]["email"] == EMAIL

    result = attempt(db)
    assert not result.ok and result.locked_until is not None
    assert "locked" in result.message
    # The refused attempt is audited but not counted, so it cannot extend the lock.
    assert attempts(db).count((EMAIL, False)) == THROTTLE.max_failures
    assert audit_rows(db, "sign_in_failed")[-1]["details"]["reason"] == "locked"


def test_unknown_email_locks_exactly_like_a_real_account(db):
    make_user(db, EMAIL, admin=True)
    moment = db_time(db)
    for email in ("ghost@example.com", EMAIL):
        seed_failures(db, email, [moment] * THROTTLE.max_failures)
    ghost, real = attempt(db, "ghost@example.com"), attempt(db, EMAIL)
    # Same lock end, same message: the answer does not tell whether the account exists.
    assert ghost.locked_until == real.locked_until == moment + THROTTLE.lock
    assert ghost.message == real.message and not ghost.ok and not real.ok


@pytest.mark.one_server  # bcrypt-heavy; the lock SQL also runs on both servers elsewhere
def test_lock_ends_after_its_duration(db):
    make_user(db, EMAIL, admin=True)
    now = db_time(db)
    seed_failures(db, EMAIL, [now - dt.timedelta(minutes=m) for m in (20, 19, 18, 17, 16)])
    # The fifth failure was 16 minutes ago: its 15-minute lock is over.
    assert attempt(db).ok


@pytest.mark.one_server  # bcrypt-heavy; the lock SQL also runs on both servers elsewhere
def test_failures_spread_wider_than_the_window_do_not_lock(db):
    make_user(db, EMAIL, admin=True)
    now = db_time(db)
    seed_failures(db, EMAIL, [now - dt.timedelta(minutes=m) for m in (24, 12, 9, 6, 3)])
    assert attempt(db).ok


def test_lock_is_judged_at_the_given_time(db):
    now = db_time(db)
    seed_failures(db, EMAIL, [now - dt.timedelta(minutes=1)] * THROTTLE.max_failures)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        until = locked_until(session, EMAIL, now=now)
        assert until is not None and until > now
        assert locked_until(session, EMAIL, now=until + dt.timedelta(seconds=1)) is None


@pytest.mark.one_server  # bcrypt-heavy; the lock SQL also runs on both servers elsewhere
def test_success_resets_the_count(db):
    make_user(db, EMAIL, admin=True)
    now = db_time(db)
    seed_failures(db, EMAIL, [now - dt.timedelta(minutes=5)] * 4)
    assert attempt(db).ok
    assert attempt(db, EMAIL, WRONG).locked_until is None  # 1 failure since the success


@pytest.mark.one_server  # bcrypt-heavy; the lock SQL also runs on both servers elsewhere
def test_password_reset_lifts_the_lock(db):
    make_user(db, EMAIL, admin=True)
    seed_failures(db, EMAIL, [db_time(db)] * THROTTLE.max_failures)
    new_password = "a brand new passphrase"
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        reset_password(session, email=EMAIL, password=new_password,
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert not attempt(db).ok  # the old password no longer works
    assert attempt(db, EMAIL, new_password).ok


# -- cookie settings --------------------------------------------------------------------------

def settings(tmp_path, **values: str) -> Settings:
    return Settings.load({"GEMINI_KEYS_DATA_DIR": str(tmp_path), **values})


def test_development_generates_a_private_cookie_key_once(tmp_path, caplog):
    first = load_cookie_settings(settings(tmp_path))
    path = tmp_path / COOKIE_KEY_FILENAME
    assert first.dev_key and len(first.key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "DEVELOPMENT cookie key" in caplog.text
    assert load_cookie_settings(settings(tmp_path)).key == first.key


def test_a_readable_dev_cookie_key_file_is_refused(tmp_path):
    load_cookie_settings(settings(tmp_path))
    os.chmod(tmp_path / COOKIE_KEY_FILENAME, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_cookie_settings(settings(tmp_path))


def test_configured_cookie_key_and_expiry_are_used(tmp_path):
    key = "k" + os.urandom(40).hex()
    cookie = load_cookie_settings(settings(
        tmp_path, GEMINI_KEYS_COOKIE_KEY=key, GEMINI_KEYS_COOKIE_EXPIRY_DAYS="0.5",
        GEMINI_KEYS_LOGIN_SLEEP_SECONDS="0"))
    assert (cookie.key, cookie.expiry_days, cookie.login_sleep_seconds) == (key, 0.5, 0.0)
    assert not cookie.dev_key and not (tmp_path / COOKIE_KEY_FILENAME).exists()
    assert key not in repr(cookie)


@pytest.mark.parametrize("key", ["", "short-but-random-Zq81", "change-me-" + "x1y2z3" * 8,
                                 "<at least 32 random bytes, base64>"])
def test_production_refuses_missing_short_or_placeholder_cookie_keys(tmp_path, key):
    with pytest.raises(ConfigurationError, match="GEMINI_KEYS_COOKIE_KEY"):
        load_cookie_settings(settings(tmp_path, GEMINI_KEYS_ENV="production",
                                      GEMINI_KEYS_COOKIE_KEY=key))
    assert not (tmp_path / COOKIE_KEY_FILENAME).exists()


@pytest.mark.parametrize(("name", "value"), [
    ("GEMINI_KEYS_COOKIE_EXPIRY_DAYS", "-1"), ("GEMINI_KEYS_COOKIE_EXPIRY_DAYS", "soon"),
    ("GEMINI_KEYS_COOKIE_EXPIRY_DAYS", "nan"), ("GEMINI_KEYS_LOGIN_SLEEP_SECONDS", "60"),
])
def test_bad_cookie_numbers_are_refused(tmp_path, name, value):
    with pytest.raises(ConfigurationError, match=name):
        load_cookie_settings(settings(tmp_path, **{name: value}))


@pytest.mark.parametrize(("env", "rounds"), [
    ({}, 12), ({"GEMINI_KEYS_BCRYPT_ROUNDS": "4"}, 4),
    ({"GEMINI_KEYS_ENV": "production", "GEMINI_KEYS_BCRYPT_ROUNDS": "10"}, 10),
    ({"GEMINI_KEYS_ENV": "production", "GEMINI_KEYS_BCRYPT_ROUNDS": "4"}, None),
    ({"GEMINI_KEYS_BCRYPT_ROUNDS": "3"}, None), ({"GEMINI_KEYS_BCRYPT_ROUNDS": "x"}, None),
])
def test_bcrypt_cost_is_configurable_but_not_weak_in_production(env, rounds):
    if rounds is None:
        with pytest.raises(ConfigurationError, match="GEMINI_KEYS_BCRYPT_ROUNDS"):
            Settings.load(env)
    else:
        assert Settings.load(env).bcrypt_rounds == rounds


def test_restoring_a_session_from_its_cookie_reads_no_password_hash(db):
    from lib.users.accounts import sign_in_credentials

    make_user(db, EMAIL, admin=True)
    with session_scope(Actor.service("app"), engine=db.app_engine) as session:
        credentials = sign_in_credentials(session)
    assert credentials == {EMAIL: {"email": EMAIL, "name": EMAIL}}
