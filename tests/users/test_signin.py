"""Password sign-in: throttling per account and client, what is recorded (never the
password), the audit log staying small under a flood, and the cookie settings."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from sqlalchemy import text

from db.models import SignInFailure
from db.session import Actor, session_scope
from lib.errors import ConfigurationError, InvalidInput
from lib.settings import Settings
from lib.users.accounts import reset_password
from lib.users.cookies import COOKIE_KEY_FILENAME, load_cookie_settings
from lib.users.signin import THROTTLE, Throttle, retry_at, sign_in
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows, dump_text

PASSWORD = "correct horse battery staple"
WRONG = "wrong horse battery staple!"
EMAIL = "ada@example.com"
OWNER, ATTACKER, NEWCOMER = "198.51.100.7", "203.0.113.66", "192.0.2.12"
COUNT_ONLY = Throttle(account_client=10_000, client=10_000, account=10_000, everyone=10_000)


def attempt(db, email: str = EMAIL, password: str = PASSWORD, client: str = OWNER, **kwargs):
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        return sign_in(session, email, password, bcrypt_rounds=TEST_BCRYPT_ROUNDS,
                       client_address=client, **kwargs)


def db_time(db) -> dt.datetime:
    with db.engine.connect() as connection:
        return connection.scalar(text("SELECT localtimestamp"))


def seed_failures(db, email: str, client: str, failures: int, last: dt.datetime) -> None:
    """`failures` counted failures of `email` from `client`, the last at `last`."""
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        session.add(SignInFailure(email=email, client_address=client,
                                  window_start=THROTTLE.window_start(last), failures=failures,
                                  first_at=last, last_at=last, last_failed_at=last))


def failure_rows(db) -> list[dict]:
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text(
            "SELECT email, client_address, failures, refused, first_at, last_at "
            "FROM gemini_sign_in_failures ORDER BY id"))]


def successes(db) -> list[tuple[str, str]]:
    with db.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT email, client_address FROM gemini_sign_in_attempts WHERE succeeded "
            "ORDER BY id"))]


def test_correct_password_signs_in_and_records_the_client(db):
    user = make_user(db, EMAIL, admin=True)
    result = attempt(db, "  Ada@Example.COM ")
    assert result.ok and result.user_id == user.user_id
    assert successes(db) == [(EMAIL, OWNER)]
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT last_sign_in_at FROM auth.users")) is not None
    assert audit_rows(db, "sign_in_failed") == [] and failure_rows(db) == []


@pytest.mark.parametrize("email", [EMAIL, "nobody@example.com"])
def test_failure_is_counted_and_audited_without_the_password(db, email):
    make_user(db, EMAIL, admin=True)
    result = attempt(db, email, WRONG)
    assert not result.ok and result.retry_at is None
    assert result.message == "Email or password is incorrect."  # same for unknown emails
    [row] = failure_rows(db)
    assert (row["email"], row["client_address"], row["failures"]) == (email, OWNER, 1)
    [audited] = audit_rows(db, "sign_in_failed")
    assert audited["key_id"] is None and audited["user_id"] is None
    assert audited["details"]["email"] == email and audited["details"]["client"] == OWNER
    assert WRONG not in dump_text(db)


@pytest.mark.parametrize(("email", "password"), [
    ("not an email", PASSWORD), ("", PASSWORD), (EMAIL, ""), ("a" * 300 + "@example.com", WRONG),
])
def test_malformed_input_is_refused_and_not_recorded(db, email, password):
    make_user(db, EMAIL, admin=True)
    with pytest.raises(InvalidInput):
        attempt(db, email, password)
    assert failure_rows(db) == [] and successes(db) == []
    assert audit_rows(db, "sign_in_failed") == []


def test_repeated_failures_are_counted_in_one_row_and_one_audit_entry(db):
    # Before, every failure added a row to gemini_sign_in_attempts and one to the audit log.
    make_user(db, EMAIL, admin=True)
    for _ in range(12):
        attempt(db, EMAIL, WRONG, throttle=COUNT_ONLY)
    [row] = failure_rows(db)
    assert row["failures"] == 12 and row["first_at"] <= row["last_at"]
    assert len(audit_rows(db, "sign_in_failed")) == 1


@pytest.mark.one_server  # bcrypt-heavy; the throttle SQL also runs on both servers elsewhere
def test_a_flood_of_attempts_writes_at_most_two_audit_rows_per_account_client_and_window(db):
    make_user(db, EMAIL, admin=True)
    results = [attempt(db, EMAIL, WRONG) for _ in range(40)]
    assert sum(r.retry_at is not None for r in results) >= 40 - THROTTLE.account_client
    [row] = failure_rows(db)
    assert row["failures"] + row["refused"] == 40
    actions = [r["action"] for r in audit_rows(db)]
    assert actions.count("sign_in_failed") == 1 and actions.count("sign_in_throttled") == 1


@pytest.mark.one_server  # bcrypt-heavy
def test_failures_past_the_free_ones_make_even_the_right_password_wait(db):
    make_user(db, EMAIL, admin=True)
    results = [attempt(db, EMAIL, WRONG) for _ in range(THROTTLE.account_client)]
    assert [r.retry_at is None for r in results] == [True] * (THROTTLE.account_client - 1) + [
        False]
    assert "Too many failed sign-ins: wait 1 second" in results[-1].message
    refused = attempt(db)
    assert not refused.ok and refused.retry_at is not None and "wait" in refused.message
    # The refused attempt is counted as refused, not as a failure: it cannot lengthen the wait.
    [row] = failure_rows(db)
    assert (row["failures"], row["refused"]) == (THROTTLE.account_client, 1)
    assert [r["details"]["client"] for r in audit_rows(db, "sign_in_throttled")] == [OWNER]


@pytest.mark.parametrize(("failures", "wait_seconds"), [
    (4, None), (5, 1), (6, 2), (7, 4), (10, 32), (15, 900), (40, 900),
])
def test_the_wait_doubles_with_each_failure_up_to_fifteen_minutes(db, failures, wait_seconds):
    now = db_time(db)
    seed_failures(db, EMAIL, OWNER, failures, now)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        until = retry_at(session, EMAIL, OWNER, now=now)
    assert until == (None if wait_seconds is None else now + dt.timedelta(seconds=wait_seconds))


@pytest.mark.one_server  # bcrypt-heavy
def test_the_owners_client_signs_in_while_an_attacker_elsewhere_waits(db):
    # Before, five failures from anywhere locked the account for everyone for 15 minutes.
    make_user(db, EMAIL, admin=True)
    assert attempt(db, client=OWNER).ok  # the owner has signed in from here before
    seed_failures(db, EMAIL, ATTACKER, 50, db_time(db))
    attacker = attempt(db, client=ATTACKER)  # even with the right password
    assert not attacker.ok and "wait" in attacker.message
    assert not attempt(db, client=NEWCOMER).ok  # account-wide: an unknown client waits too
    assert attempt(db, client=OWNER).ok


@pytest.mark.one_server  # bcrypt-heavy
def test_password_spraying_from_one_client_is_slowed(db):
    victims = [f"user{i}@example.com" for i in range(THROTTLE.client + 1)]
    for email in victims[:-1]:  # one guess per account: no account scope ever triggers
        assert attempt(db, email, WRONG, client=ATTACKER).retry_at is None or (
            email == victims[-2])
    sprayed = attempt(db, victims[-1], WRONG, client=ATTACKER)
    assert sprayed.retry_at is not None and "wait" in sprayed.message
    assert attempt(db, victims[-1], WRONG, client=NEWCOMER).retry_at is None  # others: not


def test_a_flood_from_many_clients_slows_unknown_clients_everywhere(db):
    now = db_time(db)
    for i in range(THROTTLE.everyone // 10):
        seed_failures(db, f"user{i}@example.com", f"203.0.113.{i}", 10, now)
    make_user(db, EMAIL, admin=True)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert retry_at(session, EMAIL, NEWCOMER, now=now) is not None
    assert attempt(db, client=NEWCOMER, now=now).retry_at is not None


def test_a_known_client_is_spared_the_global_scope(db):
    make_user(db, EMAIL, admin=True)
    assert attempt(db, client=OWNER).ok
    now = db_time(db)
    for i in range(THROTTLE.everyone // 10):
        seed_failures(db, f"user{i}@example.com", f"203.0.113.{i}", 10, now)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert retry_at(session, EMAIL, OWNER, now=now) is None


def test_the_wait_ends_and_old_failures_are_forgotten(db):
    make_user(db, EMAIL, admin=True)
    now = db_time(db)
    seed_failures(db, EMAIL, OWNER, 6, now - dt.timedelta(seconds=3))  # waited 2 s of 2 s
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert retry_at(session, EMAIL, OWNER, now=now) is None
    seed_failures(db, "old@example.com", OWNER, 30, now - THROTTLE.lookback
                  - dt.timedelta(minutes=1))
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        assert retry_at(session, "old@example.com", OWNER, now=now) is None


def test_a_success_forgets_that_clients_failures_for_the_account(db):
    make_user(db, EMAIL, admin=True)
    seed_failures(db, EMAIL, OWNER, 4, db_time(db) - dt.timedelta(minutes=1))
    seed_failures(db, EMAIL, ATTACKER, 4, db_time(db) - dt.timedelta(minutes=1))
    assert attempt(db).ok
    assert attempt(db, EMAIL, WRONG).retry_at is None  # 1 failure since the success
    assert [(r["client_address"], r["failures"]) for r in failure_rows(db)] == [
        (ATTACKER, 4), (OWNER, 1)]


@pytest.mark.one_server  # bcrypt-heavy
def test_password_reset_lifts_the_throttle(db):
    make_user(db, EMAIL, admin=True)
    seed_failures(db, EMAIL, OWNER, 30, db_time(db))
    seed_failures(db, EMAIL, ATTACKER, 30, db_time(db))
    new_password = "a brand new passphrase"
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        reset_password(session, email=EMAIL, password=new_password,
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert audit_rows(db, "password_reset")[0]["details"]["failed_sign_ins_cleared"] == 60
    assert not attempt(db).ok  # the old password no longer works
    assert attempt(db, EMAIL, new_password).ok


def test_parallel_guesses_from_one_client_cannot_slip_past_the_count(db):
    import concurrent.futures

    make_user(db, EMAIL, admin=True)
    slow = Throttle(first_delay=dt.timedelta(hours=1))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: attempt(db, EMAIL, WRONG, throttle=slow), range(16)))
    [row] = failure_rows(db)
    # Serialised per account and client: exactly the free failures are checked, no more.
    assert (row["failures"], row["refused"]) == (slow.account_client, 16 - slow.account_client)
    assert sum(r.retry_at is not None for r in results) == 16 - slow.account_client + 1


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
    import dataclasses

    from lib.users.sessions import live_session, start_session

    actor = make_user(db, EMAIL, admin=True)
    with session_scope(Actor.service("app"), engine=db.app_engine) as session:
        session_id, _ = start_session(session, actor.user_id, lifetime=dt.timedelta(hours=1))
    with session_scope(Actor.service("app"), engine=db.app_engine) as session:
        live = live_session(session, session_id)
    # The session row and the user's email (through gemini_auth_user_email), nothing more.
    assert (live.user_id, live.email) == (actor.user_id, EMAIL)
    assert [f.name for f in dataclasses.fields(live)] == ["user_id", "email", "expires_at"]
