"""Each API role may run only the statements it uses: a signed-in admin (authenticated) reads
but never writes the master-key check and never touches sign-in attempts; auth.users is
reached only through service_role's functions; the user directory believes the role the
session really has, not a `role` claim any session can write."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.roles import API_ROLES
from db.session import Actor, session_scope
from lib.runtime import build_runtime

CHECK_WRITES = (
    "INSERT INTO gemini_master_key_check (id, master_key_version, check_value) "
    "VALUES (2, 9, 'forged')",
    "UPDATE gemini_master_key_check SET check_value = 'forged', master_key_version = 9",
    "DELETE FROM gemini_master_key_check",
)
ATTEMPTS = (
    "SELECT count(*) FROM gemini_sign_in_attempts",
    "INSERT INTO gemini_sign_in_attempts (email, succeeded) VALUES ('x@example.com', true)",
    "UPDATE gemini_sign_in_attempts SET succeeded = true",
    "DELETE FROM gemini_sign_in_attempts",
)
AUTH_CALLS = (
    "SELECT * FROM public.gemini_auth_users()",
    "SELECT public.gemini_auth_password_hash(:u)",
    "SELECT public.gemini_auth_create_user(gen_random_uuid(), 'x@example.com', 'x')",
    "SELECT public.gemini_auth_set_password(:u, 'x')",
    "SELECT public.gemini_auth_record_sign_in(:u)",
)


def refused(db, actor: Actor, statement: str, **params) -> None:
    with pytest.raises(DBAPIError, match="permission denied"), \
            session_scope(actor, engine=db.app_engine) as session:
        session.execute(text(statement), params)


def check_row(db) -> tuple:
    with db.engine.connect() as connection:
        return tuple(connection.execute(text(
            "SELECT master_key_version, check_value FROM gemini_master_key_check")).one())


def test_an_admin_reads_but_never_writes_the_master_key_check(db, admin_actor):
    build_runtime()  # records the check value
    before = check_row(db)
    with session_scope(admin_actor, engine=db.app_engine) as session:
        assert session.scalar(text("SELECT count(*) FROM gemini_master_key_check")) == 1
    for statement in CHECK_WRITES:
        refused(db, admin_actor, statement)
    assert check_row(db) == before


@pytest.mark.parametrize("statement", ATTEMPTS)
def test_an_admin_cannot_read_or_forge_sign_in_attempts(db, admin_actor, statement):
    refused(db, admin_actor, statement)


def test_auth_users_is_reached_only_through_the_service_functions(db, admin_actor):
    for role in API_ROLES:
        actor = {"anon": Actor.anonymous(), "authenticated": admin_actor,
                 "service_role": Actor.service("cli")}[role]
        refused(db, actor, "SELECT count(*) FROM auth.users")
        if role != "service_role":
            for call in AUTH_CALLS:
                refused(db, actor, call, u=admin_actor.user_id)
    with session_scope(Actor.service("cli"), engine=db.app_engine) as session:
        [user] = session.execute(text("SELECT * FROM public.gemini_auth_users()")).mappings()
    assert user["email"] == "admin@example.com" and user["has_password"] is True
    assert "encrypted_password" not in user  # the hash comes only one at a time, for sign-in


def directory(db, actor: Actor, claims: dict | None = None) -> set[str]:
    with session_scope(actor, engine=db.app_engine) as session:
        if claims is not None:  # what any session may write into its own claims
            session.execute(text("SELECT set_config('request.jwt.claims', :c, true)"),
                            {"c": json.dumps(claims)})
        return set(session.scalars(text("SELECT email FROM public.gemini_user_directory()")))


def test_a_forged_role_claim_gets_nothing_from_the_user_directory(db, admin_actor,
                                                                 member_actor):
    everyone = {"admin@example.com", "member@example.com"}
    assert directory(db, admin_actor) == everyone
    assert directory(db, Actor.service("cli")) == everyone
    forged = {"role": "service_role"}
    assert directory(db, member_actor, {**forged, "sub": str(member_actor.user_id)}) == set()
    assert directory(db, Actor.user(uuid.uuid4()), forged) == set()
    assert directory(db, member_actor, {"role": "service_role"}) == set()
