"""Two admins at once, under AppTest: B's page is the AppTest session, A's changes go in
through lib directly while B's page is open. Nothing B does overwrites A's change unseen, and
nothing B has pending is dropped without a word (issue 19)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import session_scope
from lib.keys.reads import resolve_key
from lib.keys.writes import add_key, rename_key, set_priority
from lib.runtime import build_runtime
from lib.users.accounts import set_admin
from tests.support.apptest import button, current_editor_key, page_test, shown
from tests.support.databases import make_user
from tests.support.keys import fake_key

pytestmark = pytest.mark.one_server


@pytest.fixture
def admin_a(db):
    return make_user(db, "admin-a@example.com", admin=True)


def as_actor(actor):
    return session_scope(actor, engine=build_runtime(apply_migrations=False).engine)


def seed(actor, *specs):
    rt = build_runtime(apply_migrations=False)
    with session_scope(actor, engine=rt.engine) as session:
        for name, priority in specs:
            add_key(session, rt.master_key, name=name, api_key=fake_key(), priority=priority)


def key_id(actor, name):
    with as_actor(actor) as session:
        return resolve_key(session, name).id


def stored(db) -> dict[str, tuple]:
    with db.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT name, is_active, priority FROM gemini_api_keys WHERE deleted_at IS NULL"))
        return {r.name: (r.is_active, r.priority) for r in rows}


def edit_cells(at: AppTest, rows: dict[str, dict]) -> AppTest:
    at.session_state[current_editor_key(at)] = {"edited_rows": rows, "added_rows": [],
                                                "deleted_rows": []}
    return at.run()


def messages(at: AppTest) -> str:
    return "\n".join(shown(m.value) for m in [*at.success, *at.warning, *at.error, *at.info])


def test_grid_save_over_a_change_b_did_not_see_is_refused_naming_a(db, admin_actor, admin_a):
    seed(admin_actor, ("k", 10), ("other", 5))
    b = page_test("keys", admin_actor).run()  # B's page shows k at 10
    with as_actor(admin_a) as session:  # A saves 10 → 11
        set_priority(session, key_id(admin_a, "k"), 11)
    edit_cells(b, {"0": {"priority": 12}, "1": {"priority": 6}})
    button(b, "Save changes (2)").click().run()
    assert not b.exception
    assert stored(db) == {"k": (True, 11), "other": (True, 6)}
    text_ = messages(b)
    assert "Saved 1 key(s): other: priority 5 → 6" in text_
    assert ("k: changed by admin-a@example.com since you loaded the page (priority: 10 → 11); "
            "your priority 12 was not saved") in text_
    frame = next(d for d in b.dataframe if "select" in d.value.columns).value
    assert dict(zip(frame["name"], frame["priority"], strict=True))["k"] == 11  # current value


def test_a_reorder_by_a_keeps_bs_pending_toggle_on_the_same_key(db, admin_actor, admin_a):
    seed(admin_actor, ("a", 30), ("b", 20), ("c", 10))
    b = page_test("keys", admin_actor).run()
    edit_cells(b, {"2": {"active": False}})  # B switches c off, not yet saved
    with as_actor(admin_a) as session:  # A's save moves c to the top
        set_priority(session, key_id(admin_a, "c"), 50)
    b.run()
    assert "Changed elsewhere since you loaded the table: c (priority: 10 → 50)" in messages(b)
    assert "Your 1 pending row edit(s) are kept" in messages(b)
    button(b, "Save changes (1)").click().run()
    assert not b.exception
    assert stored(db) == {"a": (True, 30), "b": (True, 20), "c": (False, 50)}
    assert "Saved 1 key(s): c: active on → off" in messages(b)


def edit_one(at: AppTest, name: str) -> AppTest:
    choice = at.selectbox(key="keys_edit_choice")
    [index] = [i for i, o in enumerate(choice.options) if o.startswith(f"{name} (")]
    return choice.select_index(index).run()


def form_priority(at: AppTest):
    return next(w for w in at.number_input if (w.key or "").startswith("keys_edit_priority_"))


def test_edit_one_stays_on_the_key_a_renamed_and_saves_to_it(db, admin_actor, admin_a):
    seed(admin_actor, ("first", 9), ("edit-me", 5))
    b = edit_one(page_test("keys", admin_actor).run(), "edit-me")
    edited = key_id(admin_a, "edit-me")
    with as_actor(admin_a) as session:
        rename_key(session, edited, "renamed")
    form_priority(b).set_value(7)
    button(b, "Save key").click().run()
    assert not b.exception
    assert stored(db) == {"first": (True, 9), "renamed": (True, 7)}
    assert "changed priority" in messages(b)


def test_edit_one_shows_a_change_made_meanwhile_before_the_save(db, admin_actor, admin_a):
    seed(admin_actor, ("first", 9), ("edit-me", 5))
    b = edit_one(page_test("keys", admin_actor).run(), "edit-me")
    with as_actor(admin_a) as session:
        rename_key(session, key_id(admin_a, "edit-me"), "renamed")
    b.run()
    assert "Changed elsewhere since this form was opened: name: edit-me → renamed" in messages(b)
    assert b.selectbox(key="keys_edit_choice").value == str(key_id(admin_a, "renamed"))


def test_edit_one_refuses_a_priority_a_changed_instead_of_nothing_to_save(db, admin_actor,
                                                                         admin_a):
    seed(admin_actor, ("edit-me", 5))
    b = page_test("keys", admin_actor).run()
    with as_actor(admin_a) as session:  # A: 5 → 6 while B's form shows 5
        set_priority(session, key_id(admin_a, "edit-me"), 6)
    form_priority(b).set_value(7)
    button(b, "Save key").click().run()
    assert not b.exception
    assert "Nothing to save" not in messages(b)
    assert ("edit-me: changed by admin-a@example.com since you loaded the page "
            "(priority: 5 → 6); your priority 7 was not saved") in messages(b)
    assert stored(db) == {"edit-me": (True, 6)}
    assert form_priority(b).value == 6  # the form now shows the current value


def test_admins_page_refuses_acting_on_a_user_whose_admin_right_changed(db, admin_actor,
                                                                        admin_a, member_actor):
    b = page_test("admins", admin_actor, timeout=60).run()  # B sees member as not an admin
    with as_actor(admin_a) as session:
        set_admin(session, email="member@example.com", admin=True)
    b.selectbox(key="gk_sign_out_user").select("member@example.com")
    b.button(key="FormSubmitter:gk_sign_out_everywhere-Sign this user out everywhere"
             ).click().run()
    assert not b.exception and not b.success
    assert ("member@example.com: changed by admin-a@example.com since you loaded the page "
            "(admin: off → on)") in shown(b.error[0].value)
    assert list(b.dataframe[0].value["Admin"]) == [True, True, True]  # current values shown
    b.button(key="FormSubmitter:gk_sign_out_everywhere-Sign this user out everywhere"
             ).click().run()  # seen now: goes through
    assert "Signed member@example.com out everywhere" in shown(b.success[0].value)
