"""Setting and clearing budgets: audited in the same transaction, refused cleanly, and
invisible and unchangeable for anyone but an admin (RLS)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.session import Actor, session_scope
from lib.errors import InvalidInput, NotFound
from lib.quotas.reads import list_quotas, model_marks, quota_usage_today
from lib.quotas.rules import Limits
from lib.quotas.writes import clear_model_mark, clear_quota, set_quota
from tests.support.stats_rows import insert_key


@pytest.fixture
def groups(db) -> None:
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        insert_key(session, "a-1", group="proj-a")
        insert_key(session, "a-2", group="proj-a")
        insert_key(session, "lone")
        insert_key(session, "gone", group="proj-gone", deleted=True)


def stored(db) -> dict[tuple[str, str], tuple]:
    with db.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT group_label, model, rpm, tpm, rpd FROM gemini_quota_limits"))
        return {(r.group_label, r.model): (r.rpm, r.tpm, r.rpd) for r in rows}


def audit(db) -> list[tuple]:
    """The audit rows after the fixtures' own (creating the users)."""
    with db.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(
            "SELECT action, key_id, user_id, details FROM gemini_key_audit_log"
            " WHERE action <> 'user_created' ORDER BY created_at, id"))]


def test_set_quota_stores_the_limits_and_audits_before_and_after(db, groups, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        first = set_quota(session, group_label=" proj-a ", model="models/gemini-2.5-pro",
                          rpm="5", rpd=100)
    with session_scope(admin_actor, engine=db.app_engine) as session:
        second = set_quota(session, group_label="proj-a", model="gemini-2.5-pro", tpm=250_000,
                           rpd=0)
    assert stored(db) == {("proj-a", "gemini-2.5-pro"): (None, 250_000, 0)}
    assert first.before is None and first.after == Limits(5, None, 100)
    assert second.message() == ("Quota of proj-a × gemini-2.5-pro set: rpm no limit, "
                                "tpm 250,000, rpd 0 (no quota) (was rpm 5, tpm no limit, "
                                "rpd 100).")
    rows = audit(db)
    assert [(r[0], r[1], r[2]) for r in rows] == [("quota_set", None, admin_actor.user_id)] * 2
    assert rows[0][3]["before"] is None
    assert rows[0][3]["after"] == {"rpm": 5, "tpm": None, "rpd": 100}
    assert rows[1][3]["before"] == {"rpm": 5, "tpm": None, "rpd": 100}
    assert rows[1][3]["after"] == {"rpm": None, "tpm": 250_000, "rpd": 0}
    assert (rows[1][3]["group_label"], rows[1][3]["model"]) == ("proj-a", "gemini-2.5-pro")
    assert rows[1][3]["source"] == "app" and rows[1][3]["actor_email"] == admin_actor.email
    with db.engine.connect() as connection:  # now() is the transaction's: one transaction
        assert connection.execute(text(
            "SELECT (SELECT updated_at FROM gemini_quota_limits) ="
            " (SELECT max(created_at) FROM gemini_key_audit_log WHERE action = 'quota_set')"
        )).scalar() is True


def test_setting_the_same_limits_again_changes_and_audits_nothing(db, groups, admin_actor):
    for _ in range(2):
        with session_scope(admin_actor, engine=db.app_engine) as session:
            change = set_quota(session, group_label="proj-a", model="m", rpm=10)
    assert not change.changed and "unchanged" in change.message()
    assert len(audit(db)) == 1


@pytest.mark.parametrize("group, model, limits, message", [
    ("proj-nobody", "gemini-2.5-pro", {"rpm": 5}, "No stored key has the group"),
    ("proj-gone", "gemini-2.5-pro", {"rpm": 5}, "No stored key has the group"),  # deleted keys
    ("", "gemini-2.5-pro", {"rpm": 5}, "Choose a group"),
    ("proj-a", "Gemini Pro", {"rpm": 5}, "model id"),
    ("proj-a", "gemini-2.5-pro", {}, "at least one"),
    ("proj-a", "gemini-2.5-pro", {"rpm": -1}, "negative"),
    ("proj-a", "gemini-2.5-pro", {"rpm": 5, "tpm": "lots"}, "whole number"),
    ("proj-a", "gemini-2.5-pro", {"rpd": 10**12}, "too large"),
])
def test_bad_input_is_refused_and_nothing_is_stored(db, groups, admin_actor, group, model,
                                                    limits, message):
    with pytest.raises(InvalidInput, match=message), \
            session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label=group, model=model, **limits)
    assert stored(db) == {} and audit(db) == []


def test_clear_quota_removes_the_row_and_audits_what_it_was(db, groups, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-flash", rpm=10, rpd=250)
    with session_scope(admin_actor, engine=db.app_engine) as session:
        change = clear_quota(session, group_label="proj-a", model="gemini-2.5-flash")
    assert stored(db) == {}
    assert change.message() == ("Cleared the quota of proj-a × gemini-2.5-flash "
                                "(was rpm 10, tpm no limit, rpd 250).")
    action, _, _, details = audit(db)[-1]
    assert action == "quota_cleared"
    assert details["before"] == {"rpm": 10, "tpm": None, "rpd": 250} and details["after"] is None


def test_clearing_a_quota_that_is_not_set_says_so(db, groups, admin_actor):
    with pytest.raises(NotFound, match="No quota is set for proj-a × gemini-2.5-flash"), \
            session_scope(admin_actor, engine=db.app_engine) as session:
        clear_quota(session, group_label="proj-a", model="gemini-2.5-flash")
    assert audit(db) == []


def insert_mark(db, project: str, model: str, *, no_quota: bool = True,
                minutes: int | None = None) -> None:
    with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
        session.execute(text(
            "INSERT INTO gemini_model_cooldowns (project, model, no_quota, cooldown_until,"
            " reason) VALUES (:p, :m, :nq, now() + make_interval(mins => :min), 'limit: 0')"),
            {"p": project, "m": model, "nq": no_quota, "min": minutes})


def test_clearing_a_no_quota_mark_deletes_it_and_audits_it(db, groups, admin_actor):
    insert_mark(db, "proj-a", "gemini-2.5-pro")
    with session_scope(admin_actor, engine=db.app_engine) as session:
        message = clear_model_mark(session, project="proj-a", model="gemini-2.5-pro")
    assert message == "Cleared the no-quota mark of proj-a × gemini-2.5-pro."
    with session_scope(admin_actor, engine=db.app_engine) as session:
        assert model_marks(session) == []
    action, _, user_id, details = audit(db)[-1]
    assert (action, user_id) == ("model_mark_cleared", admin_actor.user_id)
    assert details["before"] == {"no_quota": True, "cooldown_until": None,
                                 "reason": "limit: 0"}


def test_clearing_a_mark_that_is_gone_says_so(db, groups, admin_actor):
    with pytest.raises(NotFound, match="perhaps the pool lifted it"), \
            session_scope(admin_actor, engine=db.app_engine) as session:
        clear_model_mark(session, project="proj-a", model="gemini-2.5-pro")


@pytest.mark.parametrize("project, model, message", [
    ("", "gemini-2.5-pro", "Choose the project"), ("proj-a", " ", "Choose the model"),
    ("proj\x00a", "gemini-2.5-pro", "NUL"), ("proj-a", "gemini\x00", "NUL"),
])
def test_clearing_a_mark_refuses_bad_input(db, groups, admin_actor, project, model, message):
    with pytest.raises(InvalidInput, match=message), \
            session_scope(admin_actor, engine=db.app_engine) as session:
        clear_model_mark(session, project=project, model=model)


def test_a_change_whose_audit_row_fails_is_not_stored(db, groups):
    ghost = Actor.service("cli", uuid.uuid4(), "ghost@example.com")  # no such user: FK fails
    with pytest.raises(DBAPIError), session_scope(ghost, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-pro", rpm=5)
    assert stored(db) == {}


def test_a_non_admin_sees_nothing_and_changes_nothing(db, groups, admin_actor, member_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-pro", rpm=5)
    insert_mark(db, "proj-a", "gemini-2.5-flash")
    before = (stored(db), audit(db))
    with session_scope(member_actor, engine=db.app_engine) as session:
        assert list_quotas(session) == []
        today = quota_usage_today(session)
        assert today.rows == [] and today.marks == []
    with pytest.raises(InvalidInput, match="No stored key"), \
            session_scope(member_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-pro", rpm=500)
    with pytest.raises(NotFound), session_scope(member_actor, engine=db.app_engine) as session:
        clear_quota(session, group_label="proj-a", model="gemini-2.5-pro")
    with pytest.raises(NotFound), session_scope(member_actor, engine=db.app_engine) as session:
        clear_model_mark(session, project="proj-a", model="gemini-2.5-flash")
    with session_scope(member_actor, engine=db.app_engine) as session:  # past the domain too
        assert session.execute(text("UPDATE gemini_quota_limits SET rpm = 1")).rowcount == 0
        assert session.execute(text("DELETE FROM gemini_model_cooldowns")).rowcount == 0
    with pytest.raises(DBAPIError, match="row-level security"), \
            session_scope(member_actor, engine=db.app_engine) as session:
        session.execute(text("INSERT INTO gemini_quota_limits (group_label, model, rpm)"
                             " VALUES ('proj-a', 'other', 1)"))
    assert (stored(db), audit(db)) == before
