"""Sign-in sessions: the signed token and what it refuses, the session rows and everything that
ends them (each audited), which origins may use the cookie, and who may touch the tables."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.session import Actor, session_scope
from lib.settings import Settings
from lib.users.accounts import reset_password, set_admin, sign_out_everywhere
from lib.users.cookies import CookieSettings
from lib.users.sessions import (
    end_session,
    end_user_sessions,
    issue_token,
    live_session,
    read_token,
    session_for_token,
    session_lifetime,
    start_session,
)
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import audit_rows

KEY = "test-cookie-key-" + "Zq81xY7w" * 8  # 80 bytes: no key-length warning for HS512
USER = uuid.uuid4()
LATER = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)


def token(**claims) -> str:
    base = {"sub": str(USER), "sid": "s" * 43, "rem": True,
            "exp": LATER.replace(tzinfo=dt.UTC)}
    return jwt.encode({**base, **claims}, KEY, algorithm="HS256")


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_token_we_signed_reads_back():
    value = issue_token(KEY, user_id=USER, session_id="abc", expires_at=LATER, remember=True)
    claims = read_token(KEY, value)
    assert (claims.user_id, claims.session_id, claims.remember) == (USER, "abc", True)


PAYLOAD = {"sub": str(USER), "sid": "abc", "exp": 4_000_000_000}
MALFORMED = {
    "empty": "",
    "garbage": "not a token at all",
    "three dots of garbage": "a.b.c",
    "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(PAYLOAD)}.",
    "unsupported alg": f"{b64({'alg': 'XYZ999', 'typ': 'JWT'})}.{b64(PAYLOAD)}.c2ln",
    "RS256 header": f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(PAYLOAD)}.c2ln",
    "header not JSON": f"{base64.urlsafe_b64encode(b'{not json').decode()}.{b64(PAYLOAD)}.c2ln",
    "header a list": f"{b64([1, 2])}.{b64(PAYLOAD)}.c2ln",
    "HS512 with our key": jwt.encode(PAYLOAD, KEY, algorithm="HS512"),
    "another key": jwt.encode(PAYLOAD, "x" * 48, algorithm="HS256"),
    "expired": token(exp=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
    "no session id": jwt.encode({"sub": str(USER), "exp": 4_000_000_000}, KEY),
    "session id not text": token(sid=12),
    "user not a uuid": token(sub="admin@example.com"),
    "huge": "a" * 100_000,
    "non-ASCII": "é" * 40,
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_or_foreign_token_reads_as_signed_out(value):
    assert read_token(KEY, value) is None


def test_a_tampered_payload_is_refused():
    header, _, signature = token().split(".")
    forged = {"sub": str(uuid.uuid4()), "sid": "s" * 43, "exp": 4_000_000_000}
    assert read_token(KEY, f"{header}.{b64(forged)}.{signature}") is None


def test_a_session_lives_until_ended_or_expired(db):
    user = make_user(db, "ada@example.com", admin=True)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        sid, expires = start_session(session, user.user_id, lifetime=dt.timedelta(hours=1))
        short, _ = start_session(session, user.user_id, lifetime=dt.timedelta(seconds=-1))
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        live = live_session(session, sid)
        assert (live.user_id, live.email, live.expires_at) == (user.user_id, "ada@example.com",
                                                               expires)
        assert live_session(session, short) is None  # expired
        assert live_session(session, "someone else's") is None
        assert end_session(session, sid) is True
        assert live_session(session, sid) is None and end_session(session, sid) is False
    with db.engine.connect() as connection:  # only a hash of the session id is stored
        assert sid not in str(connection.execute(text(
            "SELECT * FROM gemini_user_sessions")).all())


def test_a_token_names_its_own_users_live_session_only(db):
    ada = make_user(db, "ada@example.com", admin=True)
    bob = make_user(db, "bob@example.com", admin=True)
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        sid, expires = start_session(session, ada.user_id, lifetime=dt.timedelta(hours=1))
        good = issue_token(KEY, user_id=ada.user_id, session_id=sid, expires_at=expires,
                           remember=True)
        swapped = issue_token(KEY, user_id=bob.user_id, session_id=sid, expires_at=expires,
                              remember=True)
        assert session_for_token(session, KEY, good)[1].email == "ada@example.com"
        assert session_for_token(session, KEY, swapped) is None
        end_user_sessions(session, ada.user_id)
        assert session_for_token(session, KEY, good) is None


def open_sessions(db, actor, n: int = 2) -> list[str]:
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        return [start_session(session, actor.user_id, lifetime=dt.timedelta(hours=1))[0]
                for _ in range(n)]


def still_live(db, sids: list[str]) -> list[bool]:
    with session_scope(Actor.service("app"), engine=db.engine) as session:
        return [live_session(session, sid) is not None for sid in sids]


def test_password_reset_ends_every_session_of_the_user_only(db):
    ada, bob = (make_user(db, f"{n}@example.com", admin=True) for n in ("ada", "bob"))
    ada_sids, bob_sids = open_sessions(db, ada), open_sessions(db, bob)
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        reset_password(session, email="ada@example.com", password="a brand new passphrase",
                       bcrypt_rounds=TEST_BCRYPT_ROUNDS)
    assert still_live(db, ada_sids) == [False, False] and still_live(db, bob_sids) == [True] * 2
    assert audit_rows(db, "password_reset")[0]["details"]["sessions_ended"] == 2


def test_revoke_admin_ends_the_users_sessions_and_grant_does_not(db):
    ada, bob = (make_user(db, f"{n}@example.com", admin=True) for n in ("ada", "bob"))
    sids = open_sessions(db, bob)
    with session_scope(ada, engine=db.engine) as session:  # an admin in the app
        set_admin(session, email="bob@example.com", admin=False)
    assert still_live(db, sids) == [False, False]
    assert audit_rows(db, "admin_revoked")[0]["details"]["sessions_ended"] == 2
    sids = open_sessions(db, bob)
    with session_scope(ada, engine=db.engine) as session:
        set_admin(session, email="bob@example.com", admin=True)
    assert still_live(db, sids) == [True, True]


@pytest.mark.parametrize("as_admin", [True, False], ids=["admin-in-app", "cli"])
def test_sign_out_everywhere_ends_every_session_and_is_audited(db, as_admin):
    ada, bob = (make_user(db, f"{n}@example.com", admin=True) for n in ("ada", "bob"))
    sids = open_sessions(db, bob, 3)
    actor = ada if as_admin else Actor.service("cli")
    with session_scope(actor, engine=db.engine) as session:
        assert sign_out_everywhere(session, email="Bob@Example.com") == 3
    assert still_live(db, sids) == [False] * 3
    [row] = audit_rows(db, "signed_out_everywhere")
    assert row["details"]["email"] == "bob@example.com"
    assert row["details"]["sessions_ended"] == 3
    assert row["user_id"] == (ada.user_id if as_admin else None)


def test_a_non_admin_cannot_sign_anyone_out(db):
    from lib.errors import Forbidden

    make_user(db, "ada@example.com", admin=True)
    member = make_user(db, "member@example.com", admin=False)
    with pytest.raises(Forbidden), session_scope(member, engine=db.engine) as session:
        sign_out_everywhere(session, email="ada@example.com")


@pytest.mark.parametrize("table", ["gemini_user_sessions", "gemini_sign_in_failures"])
@pytest.mark.parametrize("role", ["authenticated", "anon"])
def test_only_the_service_identity_may_touch_sessions_and_failures(db, table, role):
    admin = make_user(db, "ada@example.com", admin=True)
    actor = admin if role == "authenticated" else Actor.anonymous()  # even an admin
    with pytest.raises(DBAPIError, match="permission denied"), \
            session_scope(actor, engine=db.engine) as session:
        session.execute(text(f"SELECT count(*) FROM {table}"))


# -- which origins may use the cookie --------------------------------------------------------

def cookie(*allowed: str) -> CookieSettings:
    return CookieSettings("c", KEY, 1, 0, False, allowed_origins=allowed)


@pytest.mark.parametrize(("origin", "host", "allowed"), [
    ("http://127.0.0.1:8501", "127.0.0.1:8501", True),
    ("https://keys.example.com", "keys.example.com", True),
    ("https://keys.example.com:443", "keys.example.com", True),
    ("HTTP://LOCALHOST:8501", "localhost:8501", True),
    ("http://127.0.0.1:8600", "127.0.0.1:8501", False),  # another port: another origin
    ("http://evil.example", "127.0.0.1:8501", False),
    ("https://keys.example.com.evil.example", "keys.example.com", False),
    ("null", "127.0.0.1:8501", False),
    (None, "127.0.0.1:8501", False),  # not a browser
    ("http://127.0.0.1:8501", None, False),
    ("http://127.0.0.1:8501/path", "127.0.0.1:8501", False),
    ("http://a@127.0.0.1:8501", "127.0.0.1:8501", False),
    ("http://127.0.0.1:8501", "127.0.0.1:8501/x", False),
])
def test_the_cookie_is_used_only_from_the_apps_own_origin(origin, host, allowed):
    assert cookie().origin_allowed(origin, host) is allowed


def test_a_reverse_proxy_origin_can_be_allowed():
    proxied = cookie(*Settings.load({"GEMINI_KEYS_ALLOWED_ORIGINS":
                                     "https://Keys.Example.com, http://10.0.0.5:8080"}
                                    ).allowed_origins)
    assert proxied.origin_allowed("https://keys.example.com", "127.0.0.1:8501")
    assert proxied.origin_allowed("http://10.0.0.5:8080", "127.0.0.1:8501")
    assert not proxied.origin_allowed("http://10.0.0.5:8081", "127.0.0.1:8501")


@pytest.mark.parametrize("value", ["keys.example.com", "https://keys.example.com/app",
                                   "ftp://x.example", "https://"])
def test_a_bad_allowed_origin_is_refused_at_start_up(value):
    from lib.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="GEMINI_KEYS_ALLOWED_ORIGINS"):
        Settings.load({"GEMINI_KEYS_ALLOWED_ORIGINS": value})


def test_production_marks_the_cookie_secure_and_a_sign_in_lives_no_longer_than_set(tmp_path):
    from lib.users.cookies import load_cookie_settings

    key = "k" + base64.b64encode(bytes(range(40))).decode()
    prod = load_cookie_settings(Settings.load({
        "GEMINI_KEYS_ENV": "production", "GEMINI_KEYS_COOKIE_KEY": key,
        "GEMINI_KEYS_MASTER_KEY": base64.b64encode(bytes(32)).decode(),
        "GEMINI_KEYS_DATA_DIR": str(tmp_path)}))
    dev = load_cookie_settings(Settings.load({"GEMINI_KEYS_DATA_DIR": str(tmp_path)}))
    assert prod.secure and not dev.secure
    assert session_lifetime(1) == dt.timedelta(days=1)
    assert session_lifetime(0) == dt.timedelta(hours=12)  # not remembered: still ends
