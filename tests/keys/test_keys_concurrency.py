"""Optimistic concurrency (lib/concurrency.py): every admin edit carries the values the admin
saw; a save whose row moved since is refused for that row, naming who changed it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.concurrency import EditConflict, check_edit
from lib.keys.writes import (
    KeyEdit,
    add_key,
    apply_edits,
    auto_disable,
    delete_key,
    edit_key,
    rename_key,
    set_archived_many,
    set_priority,
)
from lib.runtime import build_runtime
from lib.users.accounts import reset_password, set_admin, sign_out_everywhere
from tests.support.databases import make_user
from tests.support.keys import fake_key, key_audit_rows


@pytest.fixture
def rt(db):
    return build_runtime(apply_migrations=False)


@pytest.fixture
def other_admin(db):
    return make_user(db, "other-admin@example.com", admin=True)


def scope(rt, actor):
    return session_scope(actor, engine=rt.engine)


def add(rt, actor, name, **kwargs):
    with scope(rt, actor) as session:
        return add_key(session, rt.master_key, name=name, api_key=fake_key(), **kwargs)


def stored(db, name):
    with db.engine.connect() as connection:
        return connection.execute(text(
            "SELECT name, is_active, priority, group_label FROM gemini_api_keys "
            "WHERE deleted_at IS NULL AND (name = :n OR id::text = :n)"), {"n": name}).one()


def test_the_rule_merges_fields_refuses_moved_ones_and_accepts_what_is_already_so():
    check = check_edit({"priority": 10, "active": True}, {"priority": 11, "active": True},
                       {"priority": 12, "active": True})
    assert check.apply == {} and [c.describe() for c in check.conflicts] == ["priority: 10 → 11"]
    check = check_edit({"priority": 10, "active": True}, {"priority": 10, "active": False},
                       {"priority": 12, "active": True})
    assert check.apply == {"priority": 12} and not check.conflicts
    assert [c.describe() for c in check.notes] == ["active: on → off"]
    check = check_edit({"active": True}, {"active": False}, {"active": False})
    assert check.apply == {} and not check.conflicts and not check.notes


def test_grid_save_on_a_stale_value_is_refused_naming_the_other_admin(db, rt, admin_actor,
                                                                      other_admin):
    a = add(rt, admin_actor, "a", priority=10)
    b = add(rt, admin_actor, "b", priority=20)
    # A (other_admin) saves 10 → 11; B's page still shows 10 and B saves 12, and b 20 → 21.
    with scope(rt, other_admin) as session:
        apply_edits(session, [KeyEdit(a.id, True, 10, True, 11)])
    with scope(rt, admin_actor) as session:
        report = apply_edits(session, [KeyEdit(a.id, True, 10, True, 12),
                                       KeyEdit(b.id, True, 20, True, 21)])
    assert stored(db, "a").priority == 11 and stored(db, "b").priority == 21
    assert report.changed == ["b: priority 20 → 21"]
    [conflict] = report.conflicts
    assert conflict.describe() == ("a: changed by other-admin@example.com since you loaded the "
                                   "page (priority: 10 → 11); your priority 12 was not saved")
    message = report.message()
    assert "Saved 1 key(s): b: priority 20 → 21" in message and "Not saved, 1 key(s)" in message
    assert [r["action"] for r in key_audit_rows(db)].count("key_priority_changed") == 2


def test_grid_edits_of_different_fields_merge(db, rt, admin_actor, other_admin):
    a = add(rt, admin_actor, "a", priority=10)
    with scope(rt, other_admin) as session:
        apply_edits(session, [KeyEdit(a.id, True, 10, False, 10)])  # A switches it off
    with scope(rt, admin_actor) as session:  # B saw it on, at 10, and sets 12
        report = apply_edits(session, [KeyEdit(a.id, True, 10, True, 12)])
    assert report.changed == ["a: priority 10 → 12"] and not report.conflicts
    assert "other-admin@example.com" in report.message()  # told: active on → off meanwhile
    assert (stored(db, "a").is_active, stored(db, "a").priority) == (False, 12)


def test_switching_off_a_key_the_pool_already_disabled_is_no_error(db, rt, admin_actor):
    a = add(rt, admin_actor, "a", priority=10)
    with scope(rt, Actor.service("pool")) as session:
        assert auto_disable(session, a.id, reason="invalid key")
    before = len(key_audit_rows(db))
    with scope(rt, admin_actor) as session:
        report = apply_edits(session, [KeyEdit(a.id, True, 10, False, 10)])
    assert not report.conflicts and not report.changed and len(key_audit_rows(db)) == before


def test_edit_one_tells_that_the_pool_disabled_the_key_and_keeps_it_off(db, rt, admin_actor):
    a = add(rt, admin_actor, "a", priority=10)
    seen = {"name": "a", "group": None, "active": True, "priority": 10}
    with scope(rt, Actor.service("pool")) as session:
        auto_disable(session, a.id, reason="invalid key")
    with scope(rt, admin_actor) as session:
        result = edit_key(session, a.id, name="a", group_label="", active=True, priority=11,
                          expected=seen)
    assert result.changed == ["priority"]
    assert [n.describe() for n in result.notes] == [
        "a: meanwhile changed by the key pool (active: on → off); left as it is now"]
    assert (stored(db, "a").is_active, stored(db, "a").priority) == (False, 11)


def test_edit_one_follows_the_key_id_across_a_rename_and_refuses_a_stale_field(
        db, rt, admin_actor, other_admin):
    a = add(rt, admin_actor, "a", priority=10)
    seen = {"name": "a", "group": None, "active": True, "priority": 10}
    with scope(rt, other_admin) as session:
        rename_key(session, a.id, "renamed", expected={"name": "a"})
    with scope(rt, admin_actor) as session:  # B changes the priority only: merged
        assert edit_key(session, a.id, name="a", group_label=None, active=True, priority=12,
                        expected=seen).changed == ["priority"]
    assert (stored(db, str(a.id)).name, stored(db, str(a.id)).priority) == ("renamed", 12)
    before = len(key_audit_rows(db))
    with pytest.raises(EditConflict, match="changed by other-admin@example.com") as refused, \
            scope(rt, admin_actor) as session:  # B renames too, and changes the group
        edit_key(session, a.id, name="b-name", group_label="g", active=True, priority=12,
                 expected={**seen, "priority": 12})
    assert "name: a → renamed" in str(refused.value) and "your name b-name" in str(refused.value)
    assert stored(db, str(a.id)).group_label is None and len(key_audit_rows(db)) == before


def test_single_writes_check_expected_and_unchecked_ones_stay_as_before(db, rt, admin_actor,
                                                                        other_admin):
    a = add(rt, admin_actor, "a", priority=10)
    with scope(rt, other_admin) as session:
        set_priority(session, a.id, 11, expected={"priority": 10})
    with pytest.raises(EditConflict, match=r"priority: 10 → 11"), scope(rt, admin_actor) as s:
        set_priority(s, a.id, 12, expected={"priority": 10})
    with scope(rt, admin_actor) as session:
        set_priority(session, a.id, 12)  # the CLI: no view, no check
    assert stored(db, "a").priority == 12


def test_a_key_deleted_meanwhile_is_reported_and_the_others_saved(db, rt, admin_actor):
    a = add(rt, admin_actor, "a", priority=10)
    b = add(rt, admin_actor, "b", priority=20)
    with scope(rt, admin_actor) as session:
        delete_key(session, a.id)
    with scope(rt, admin_actor) as session:
        report = apply_edits(session, [KeyEdit(a.id, True, 10, True, 12),
                                       KeyEdit(b.id, True, 20, False, 20)], names={a.id: "a"})
    assert [c.describe() for c in report.conflicts] == [
        "a: it was deleted since you loaded the page"]
    assert report.changed == ["b: active on → off"]
    with scope(rt, admin_actor) as session:
        report = set_archived_many(session, [a.id, b.id], True, names={a.id: "a"})
    assert report.changed == ["b: archived"] and report.conflicts[0].gone


def test_admins_page_changes_refuse_a_user_whose_admin_right_changed(db, rt, admin_actor,
                                                                     other_admin, member_actor):
    with scope(rt, other_admin) as session:
        assert set_admin(session, email="member@example.com", admin=True, expected_admin=False)
    for change in (
            lambda s: set_admin(s, email="member@example.com", admin=True,
                                expected_admin=False),
            lambda s: set_admin(s, email="member@example.com", admin=False,
                                expected_admin=False),
            lambda s: reset_password(s, email="member@example.com",
                                     password="a new long passphrase 42", bcrypt_rounds=4,
                                     expected_admin=False),
            lambda s: sign_out_everywhere(s, email="member@example.com",
                                          expected_admin=False)):
        with pytest.raises(EditConflict) as refused, scope(rt, admin_actor) as session:
            change(session)
        assert ("member@example.com: changed by other-admin@example.com since you loaded the "
                "page (admin: off → on)") in str(refused.value)
    with scope(rt, admin_actor) as session:  # with the current view it goes through
        assert set_admin(session, email="member@example.com", admin=False,
                         expected_admin=True)
