"""Access tokens: a long random secret with a prefix, stored only as a hash, shown once,
revocable, with an optional model allow-list; every change audited; redacted from text."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.errors import InvalidInput, NotFound
from lib.redact import redact
from lib.runtime import build_runtime
from lib.tokens import create_token, list_tokens, normalise_models, revoke_token
from tests.support.keys import audit_rows, every_table_as_text, fake_key


@pytest.fixture
def session_for(db, admin_actor):
    runtime = build_runtime(apply_migrations=False)

    def open_session(actor: Actor = admin_actor):
        return session_scope(actor, engine=runtime.engine)
    return open_session


def test_a_token_is_shown_once_and_stored_only_as_its_hash(db, session_for):
    with session_for() as session:
        summary, token = create_token(session, name="billing", models="gemini-2.0-flash")
    assert token.startswith("gkat_") and len(token) >= 45
    assert summary.prefix == token[:12] and summary.models == ("gemini-2.0-flash",)
    everything = every_table_as_text(db)
    assert token not in everything
    assert token[12:] not in everything  # not even the secret part
    with db.engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM gemini_access_tokens")).scalar()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    [row] = audit_rows(db, "access_token_created")
    assert row["details"]["name"] == "billing" and token not in str(row)


def test_tokens_are_redacted_from_text():
    assert redact("calling with gkat_" + "A1b2_-" * 8 + " now") == "calling with [REDACTED] now"


def test_names_are_unique_among_live_tokens_and_reusable_after_revocation(session_for):
    with session_for() as session:
        create_token(session, name="svc")
    with pytest.raises(InvalidInput, match="already named"), session_for() as session:
        create_token(session, name="SVC")
    with session_for() as session:
        revoked = revoke_token(session, "svc")
    assert revoked.state == "revoked"
    with session_for() as session:
        create_token(session, name="svc")
    with session_for() as session:
        states = sorted(t.state for t in list_tokens(session))
    assert states == ["active", "revoked"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": ""}, "needs a name"),
    ({"name": "x" * 101}, "at most 100"),
    ({"name": "evil\nname"}, "printable"),
    ({"name": "gkat_" + "a" * 30}, "must not contain"),
    ({"name": "ok", "models": "gemini flash"}, "Not a model name"),
    ({"name": "ok", "expires_days": 0}, "between 1"),
    ({"name": "ok", "expires_days": 99999}, "between 1"),
])
def test_bad_input_is_one_clear_message_and_nothing_is_stored(db, session_for, kwargs,
                                                              message):
    with pytest.raises(InvalidInput, match=message), session_for() as session:
        create_token(session, **kwargs)
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM gemini_access_tokens")).scalar() == 0
    assert audit_rows(db, "access_token_created") == []


def test_a_key_passed_as_the_name_is_never_echoed(session_for):
    key = fake_key()
    with pytest.raises(InvalidInput) as info, session_for() as session:
        create_token(session, name=key)
    assert key not in str(info.value)
    with pytest.raises(NotFound) as info, session_for() as session:
        revoke_token(session, key)
    assert key not in str(info.value)


def test_models_are_normalised():
    assert normalise_models(" models/gemini-2.0-flash, gemini-2.5-pro,,gemini-2.5-pro ") == (
        "gemini-2.0-flash", "gemini-2.5-pro")
    assert normalise_models("") is None and normalise_models(None) is None


def test_expiry_and_revocation_by_id_are_audited(db, session_for):
    with session_for() as session:
        summary, _ = create_token(session, name="temp", expires_days=2)
    assert summary.expires_at is not None and summary.state == "active"
    with session_for() as session:
        revoke_token(session, str(summary.id))
    with pytest.raises(InvalidInput, match="already revoked"), session_for() as session:
        revoke_token(session, str(summary.id))
    [row] = audit_rows(db, "access_token_revoked")
    assert row["details"]["token_id"] == str(summary.id)


def test_non_admins_see_and_change_no_token(db, session_for, member_actor):
    with session_for() as session:
        create_token(session, name="hidden")
    with session_for(member_actor) as session:
        assert list_tokens(session) == []
    with pytest.raises(NotFound), session_for(member_actor) as session:
        revoke_token(session, "hidden")


@pytest.mark.parametrize("statement", [
    "DELETE FROM gemini_access_tokens",
    "DELETE FROM gemini_access_token_usage",
    "UPDATE gemini_access_token_usage SET request_count = 0",
])
def test_tokens_are_never_deleted_and_admins_cannot_rewrite_usage(db, admin_actor, statement):
    from sqlalchemy.exc import DBAPIError
    for actor in (admin_actor, Actor.service("cli")):
        if actor.role == "service_role" and "UPDATE" in statement:
            continue  # the gateway counts requests as service_role
        with pytest.raises(DBAPIError, match="permission denied"), \
                session_scope(actor, engine=db.app_engine) as session:
            session.execute(text(statement))


def test_anonymous_sessions_cannot_read_tokens(db):
    from sqlalchemy.exc import DBAPIError
    with pytest.raises(DBAPIError, match="permission denied"), \
            session_scope(Actor.anonymous(), engine=db.app_engine) as session:
        session.execute(text("SELECT count(*) FROM gemini_access_tokens"))
