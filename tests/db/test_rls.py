"""Row-level security: only admins (and the service identity) reach the gemini_* tables."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.session import Actor, session_scope

TABLES = ("gemini_api_keys", "gemini_key_audit_log", "gemini_key_usage_stats",
          "gemini_key_model_usage_stats")
INSERTS = {
    "gemini_api_keys": "INSERT INTO gemini_api_keys (name, encrypted_key, encryption_iv, "
                       "encryption_tag) VALUES ('intruder', 'x', 'y', 'z')",
    "gemini_key_audit_log": "INSERT INTO gemini_key_audit_log (action) VALUES ('forged')",
    "gemini_key_usage_stats": "INSERT INTO gemini_key_usage_stats (key_id, date) "
                              "VALUES (:key_id, DATE '2001-01-01')",
    "gemini_key_model_usage_stats": "INSERT INTO gemini_key_model_usage_stats "
                                    "(key_id, date, model) "
                                    "VALUES (:key_id, DATE '2001-01-01', 'gemini-2.5-flash')",
}
UPDATES = {
    "gemini_api_keys": "UPDATE gemini_api_keys SET priority = 99",
    "gemini_key_usage_stats": "UPDATE gemini_key_usage_stats SET request_count = 99",
    "gemini_key_model_usage_stats": "UPDATE gemini_key_model_usage_stats SET total_tokens = 99",
}


@pytest.fixture
def seeded(db) -> uuid.UUID:
    """One row in each table, written by the service identity."""
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        key_id = session.scalar(text(
            "INSERT INTO gemini_api_keys (name, encrypted_key, encryption_iv, encryption_tag) "
            "VALUES ('seed', 'x', 'y', 'z') RETURNING id"))
        session.execute(text("INSERT INTO gemini_key_audit_log (key_id, action) "
                             "VALUES (:k, 'key_added')"), {"k": key_id})
        session.execute(text("INSERT INTO gemini_key_usage_stats (key_id, date, request_count) "
                             "VALUES (:k, current_date, 3)"), {"k": key_id})
        session.execute(text("INSERT INTO gemini_key_model_usage_stats "
                             "(key_id, date, model, request_count) "
                             "VALUES (:k, current_date, 'gemini-2.5-flash', 3)"), {"k": key_id})
    return key_id


# Creating the test users writes user_created audit rows; count only the seeded kind of row.
COUNT_SEEDED = {t: f"SELECT count(*) FROM {t}" for t in TABLES}
COUNT_SEEDED["gemini_key_audit_log"] += " WHERE action <> 'user_created'"


def visible_rows(db, actor: Actor) -> dict[str, int]:
    with session_scope(actor, engine=db.engine) as session:
        return {t: session.scalar(text(COUNT_SEEDED[t])) for t in TABLES}


def outsiders(db, member_actor) -> list[Actor]:
    return [member_actor, Actor.user(uuid.uuid4())]


def test_admin_sees_every_table(db, seeded, admin_actor):
    assert visible_rows(db, admin_actor) == dict.fromkeys(TABLES, 1)


def test_non_admin_and_unknown_user_see_nothing(db, seeded, member_actor):
    for actor in outsiders(db, member_actor):
        assert visible_rows(db, actor) == dict.fromkeys(TABLES, 0), actor


def test_anonymous_is_refused_outright(db, seeded):
    for table in TABLES:
        with pytest.raises(DBAPIError, match="permission denied"), \
                session_scope(Actor.anonymous(), engine=db.engine) as session:
            session.execute(text(f"SELECT count(*) FROM {table}"))


@pytest.mark.parametrize("table", TABLES)
def test_non_admin_cannot_insert(db, seeded, member_actor, table):
    with pytest.raises(DBAPIError, match="row-level security"), \
            session_scope(member_actor, engine=db.engine) as session:
        session.execute(text(INSERTS[table]), {"key_id": seeded})


@pytest.mark.parametrize("table", UPDATES)
def test_non_admin_updates_and_deletes_touch_nothing(db, seeded, member_actor, admin_actor,
                                                     table):
    with session_scope(member_actor, engine=db.engine) as session:
        assert session.execute(text(UPDATES[table])).rowcount == 0
        assert session.execute(text(f"DELETE FROM {table}")).rowcount == 0
    assert visible_rows(db, admin_actor)[table] == 1


@pytest.mark.parametrize("table", TABLES)
def test_admin_can_insert(db, seeded, admin_actor, table):
    with session_scope(admin_actor, engine=db.engine) as session:
        session.execute(text(INSERTS[table].replace("2001-01-01", "2001-01-02")),
                        {"key_id": seeded})
    assert visible_rows(db, admin_actor)[table] == 2


@pytest.mark.parametrize("table", UPDATES)
def test_admin_can_update_and_delete(db, seeded, admin_actor, table):
    with session_scope(admin_actor, engine=db.engine) as session:
        assert session.execute(text(UPDATES[table])).rowcount == 1
    if table in ("gemini_key_usage_stats", "gemini_key_model_usage_stats"):
        with session_scope(admin_actor, engine=db.engine) as session:
            assert session.execute(text(f"DELETE FROM {table}")).rowcount == 1


def test_revoked_admin_loses_access_on_next_transaction(db, seeded, admin_actor):
    assert visible_rows(db, admin_actor)["gemini_api_keys"] == 1
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        session.execute(text("UPDATE user_profiles SET is_admin = false WHERE user_id = :u"),
                        {"u": admin_actor.user_id})
    assert visible_rows(db, admin_actor) == dict.fromkeys(TABLES, 0)


def test_non_superuser_table_owner_cannot_slip_past(db, seeded):
    """FORCE ROW LEVEL SECURITY: even the tables' owner sees nothing without a policy."""
    role = f"gk_owner_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} NOSUPERUSER NOBYPASSRLS"))
        for table in TABLES:
            connection.execute(text(f"ALTER TABLE {table} OWNER TO {role}"))
        connection.execute(text(f"GRANT USAGE ON SCHEMA auth TO {role}"))
        connection.execute(text(f"GRANT SELECT ON user_profiles TO {role}"))
        connection.execute(text(f"SET LOCAL ROLE {role}"))
        counts = {t: connection.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}
        connection.rollback()
    assert counts == dict.fromkeys(TABLES, 0)


def test_audit_rows_cannot_be_updated_or_deleted_even_by_admins(db, seeded, admin_actor):
    for statement in ("UPDATE gemini_key_audit_log SET action = 'x'",
                      "DELETE FROM gemini_key_audit_log"):
        with pytest.raises(DBAPIError, match="permission denied"), \
                session_scope(admin_actor, engine=db.engine) as session:
            session.execute(text(statement))


def test_deleting_a_key_cannot_cascade_away_its_history(db, seeded):
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(text("DELETE FROM gemini_api_keys"))
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        assert session.scalar(text("SELECT count(*) FROM gemini_key_audit_log")) == 1
