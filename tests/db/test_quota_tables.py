"""The quota tables (migration 0012): admin-only rows, and each role limited to what it uses."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.session import Actor, session_scope

SEED = (
    "INSERT INTO gemini_quota_limits (group_label, model, rpm) VALUES ('proj', 'm1', 5)",
    "INSERT INTO gemini_quota_usage (project, model, window_kind, window_start, requests) "
    "VALUES ('proj', 'm1', 'd', '2026-12-01 08:00', 3)",
    "INSERT INTO gemini_model_cooldowns (project, model, no_quota) VALUES ('proj', 'm1', true)",
)
TABLES = ("gemini_quota_limits", "gemini_quota_usage", "gemini_model_cooldowns")


@pytest.fixture
def seeded(db) -> None:
    with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
        for statement in SEED:
            session.execute(text(statement))


def counts(db, actor: Actor) -> dict[str, int]:
    with session_scope(actor, engine=db.app_engine) as session:
        return {t: session.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def test_admins_see_the_quota_tables_and_others_see_nothing(db, seeded, admin_actor,
                                                            member_actor):
    assert counts(db, admin_actor) == dict.fromkeys(TABLES, 1)
    assert counts(db, member_actor) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize("statement", [
    "UPDATE gemini_quota_usage SET requests = 0",
    "DELETE FROM gemini_quota_usage",
    "UPDATE gemini_model_cooldowns SET no_quota = false",
    "INSERT INTO gemini_model_cooldowns (project, model) VALUES ('x', 'y')",
])
def test_an_admin_cannot_rewrite_the_pools_counts(db, seeded, admin_actor, statement):
    with pytest.raises(DBAPIError, match="permission denied"), \
            session_scope(admin_actor, engine=db.app_engine) as session:
        session.execute(text(statement))


def test_an_admin_sets_limits_and_clears_a_cooldown(db, seeded, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        session.execute(text("UPDATE gemini_quota_limits SET rpd = 0"))
        assert session.execute(text("DELETE FROM gemini_model_cooldowns")).rowcount == 1


@pytest.mark.parametrize("column", ["rpm", "tpm", "rpd"])
def test_a_negative_limit_is_refused(db, admin_actor, column):
    with pytest.raises(DBAPIError, match="check"), \
            session_scope(admin_actor, engine=db.app_engine) as session:
        session.execute(text(f"INSERT INTO gemini_quota_limits (group_label, model, {column}) "
                             "VALUES ('g', 'm', -1)"))
