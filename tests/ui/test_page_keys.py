"""The Keys page under AppTest: admin flows, filters, and nothing for anyone else."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import session_scope
from lib.keys.writes import add_key, set_active
from lib.runtime import build_runtime
from tests.support.apptest import button, current_editor_key, page_test, rendered_text, shown
from tests.support.keys import fake_key, key_audit_rows

pytestmark = pytest.mark.one_server


def page(actor=None) -> AppTest:
    return page_test("keys", actor)


def seed(actor, *specs):
    rt = build_runtime(apply_migrations=False)
    secrets_ = []
    with session_scope(actor, engine=rt.engine) as session:
        for name, priority, group in specs:
            secrets_.append(fake_key())
            add_key(session, rt.master_key, name=name, api_key=secrets_[-1],
                         priority=priority, group_label=group)
    return secrets_


def stored(db) -> dict[str, tuple]:
    with db.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT name, is_active, priority, archived_at IS NOT NULL AS archived "
            "FROM gemini_api_keys WHERE deleted_at IS NULL"))
        return {r.name: (r.is_active, r.priority, r.archived) for r in rows}


def table_names(at: AppTest) -> list[str]:
    [editor_frame] = [d for d in at.dataframe if "select" in d.value.columns]
    return list(editor_frame.value["name"])


def test_new_install_shows_a_clear_empty_state(db, admin_actor):
    at = page(admin_actor).run()
    assert not at.exception
    assert "No keys yet" in shown(at.info[0].value)
    assert not [d for d in at.dataframe]


def test_add_one_stores_the_key_and_shows_it_masked(db, admin_actor):
    secret = fake_key()
    at = page(admin_actor).run()
    at.text_input(key="keys_add_name_0").input("Project A")
    at.text_input(key="keys_add_key_0").input(f" {secret} ")
    at.number_input(key="keys_add_priority_0").set_value(7)
    at.text_input(key="keys_add_group_0").input("proj-a")
    button(at, "Add key").click().run()
    assert not at.exception
    assert shown(at.success[0].value) == f"Added Project A (AIza…{secret[-4:]})."
    assert stored(db) == {"Project A": (True, 7, False)}
    assert table_names(at) == ["Project A"]
    assert secret not in rendered_text(at, include_inputs=True)


def test_add_one_with_a_bad_key_explains_and_stores_nothing(db, admin_actor):
    at = page(admin_actor).run()
    at.text_input(key="keys_add_name_0").input("x")
    at.text_input(key="keys_add_key_0").input("AIzaNotAKey")
    button(at, "Add key").click().run()
    assert "Not added" in shown(at.error[0].value) and "Gemini API key" in shown(at.error[0].value)
    assert "AIzaNotAKey" not in rendered_text(at, include_inputs=True)
    assert stored(db) == {}


def test_add_many_previews_then_adds_only_the_good_lines(db, admin_actor):
    good, other = fake_key(), fake_key()
    at = page(admin_actor).run()
    [box] = [t for t in at.text_area if t.label == "Keys"]
    box.input(f"alpha,{good}\nbeta,not-a-key\n{other}\n")
    button(at, "Add the keys").click().run()  # without a preview first: nothing is added
    assert stored(db) == {}
    assert "Check the preview" in shown(at.warning[0].value)
    button(at, "Preview").click().run()
    assert "1 will be added" not in shown(at.markdown[-1].value)  # two lines pass
    assert "2 will be added, 1 refused" in shown(at.markdown[-1].value)
    preview = at.dataframe[-1].value
    assert list(preview["line"]) == [1, 2, 3]
    assert preview["result"][1].startswith("refused: doesn't look like a Gemini API key")
    button(at, "Add the keys").click().run()
    assert not at.exception
    assert "Added 2 key(s); skipped 1 refused line(s)." in shown(at.success[0].value)
    assert set(stored(db)) == {"alpha", next(n for n in stored(db) if n.startswith("key-"))}
    text_ = rendered_text(at, include_inputs=True)
    assert good not in text_ and other not in text_
    assert all(t.value == "" for t in at.text_area)  # the paste box was replaced by a fresh one


def test_bulk_edit_saves_active_and_priority_once_with_an_audit_row_per_key(db, admin_actor):
    seed(admin_actor, ("a", 30, None), ("b", 20, None), ("c", 10, None))
    at = page(admin_actor).run()
    assert table_names(at) == ["a", "b", "c"]
    editor_key = current_editor_key(at)
    at.session_state[editor_key] = {"edited_rows": {"0": {"active": False},
                                                    "1": {"priority": 500},
                                                    "2": {"active": False, "priority": 5}},
                                    "added_rows": [], "deleted_rows": []}
    at.run()
    button(at, "Save changes (3)").click().run()
    assert not at.exception
    message = shown(at.success[0].value)
    assert "Saved 3 key(s)" in message and "b: priority 20 → 500" in message
    assert stored(db) == {"a": (False, 30, False), "b": (True, 500, False),
                          "c": (False, 5, False)}
    assert sorted(a["action"] for a in key_audit_rows(db)[3:]) == [
        "key_deactivated", "key_priority_changed", "key_updated"]
    assert table_names(at) == ["b", "a", "c"]  # fresh data, new order


def test_archive_asks_for_confirmation_first(db, admin_actor):
    seed(admin_actor, ("keep", 2, None), ("old", 1, None))
    at = page(admin_actor).run()
    editor_key = current_editor_key(at)
    at.session_state[editor_key] = {"edited_rows": {"1": {"select": True}},
                                    "added_rows": [], "deleted_rows": []}
    at.run()
    button(at, "Archive ticked (1)").click().run()
    assert "Archive 1 key(s): old?" in shown(at.warning[0].value)
    assert stored(db)["old"][2] is False  # not yet
    button(at, "Cancel").click().run()
    assert not at.warning and stored(db)["old"][2] is False
    at.session_state[editor_key] = {"edited_rows": {"1": {"select": True}},
                                    "added_rows": [], "deleted_rows": []}
    at.run()
    button(at, "Archive ticked (1)").click().run()
    button(at, "Yes, archive").click().run()
    assert not at.exception
    assert "Archived 1 key(s): old." in shown(at.success[0].value)
    assert stored(db)["old"][2] is True
    assert table_names(at) == ["keep"]
    assert [a["action"] for a in key_audit_rows(db)][-1] == "key_archived"


def test_filters_narrow_the_table(db, admin_actor):
    seed(admin_actor, ("alpha-main", 3, "proj-a"), ("beta-main", 2, "proj-b"),
         ("gamma", 1, None))
    with session_scope(admin_actor, engine=build_runtime(apply_migrations=False).engine) as s:
        set_active(s, "gamma", False)
    at = page(admin_actor).run()
    assert table_names(at) == ["alpha-main", "beta-main", "gamma"]
    at.text_input(key="keys_search").input("MAIN").run()
    assert table_names(at) == ["alpha-main", "beta-main"]
    at.selectbox(key="keys_group").set_value("proj-b").run()
    assert table_names(at) == ["beta-main"]
    at.text_input(key="keys_search").input("").run()
    at.selectbox(key="keys_group").set_value("(no group)").run()
    assert table_names(at) == ["gamma"]
    at.selectbox(key="keys_group").set_value("All groups")
    at.selectbox(key="keys_status").set_value("Inactive").run()
    assert table_names(at) == ["gamma"]
    at.text_input(key="keys_search").input("nothing-like-this").run()
    assert "No key matches" in shown(at.info[0].value)


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_no_key_data_for_anyone_but_an_admin(db, admin_actor, member_actor, who):
    secrets_ = seed(admin_actor, ("visible-only-to-admins", 1, "secret-project"))
    at = page(member_actor if who == "member" else None).run()
    shown = rendered_text(at, include_inputs=True)
    assert "visible-only-to-admins" not in shown and "secret-project" not in shown
    assert secrets_[0] not in shown and secrets_[0][-4:] + "\n" not in shown
    assert not at.dataframe
    assert not [w for w in [*at.text_input, *at.text_area, *at.button]
                if (w.key or "").startswith("keys_")]
    assert "Keys" not in [t.value for t in at.title]
    if who == "member":
        assert "No access" in shown


def test_row_actions_hook_gets_the_ticked_rows(db, admin_actor, monkeypatch):
    """The extension point the key pool's "Check" action plugs into."""
    from lib.ui import keys as keys_widgets

    seen = []

    def check(ctx, rows):
        seen.append([r.name for r in rows])
        return f"Checked {len(rows)} key(s)."

    monkeypatch.setitem(keys_widgets.ROW_ACTIONS, "Check", check)
    seed(admin_actor, ("a", 2, None), ("b", 1, None))
    at = page(admin_actor).run()
    at.session_state[current_editor_key(at)] = {"edited_rows": {"1": {"select": True}},
                                                "added_rows": [], "deleted_rows": []}
    at.run()
    button(at, "Check (1)").click().run()
    assert seen == [["b"]]
    assert shown(at.info[0].value) == "Checked 1 key(s)."


def test_check_action_asks_gemini_and_deactivates_an_invalid_key(db, admin_actor, monkeypatch,
                                                                 request):
    from lib.ui.runtime import _runtime
    from tests.support.fake_gemini import FakeGemini

    good, bad = seed(admin_actor, ("good", 2, None), ("bad", 1, None))
    with FakeGemini() as fake:
        fake.respond(good, "ok")
        fake.respond(bad, "invalid")
        monkeypatch.setenv("GEMINI_API_BASE_URL", fake.base_url)
        _runtime.clear()  # the server-wide runtime holds the settings it started with
        request.addfinalizer(_runtime.clear)
        at = page(admin_actor).run()
        at.session_state[current_editor_key(at)] = {
            "edited_rows": {"0": {"select": True}, "1": {"select": True}},
            "added_rows": [], "deleted_rows": []}
        at.run()
        button(at, "Check (2)").click().run()
        assert {r.headers.get("x-goog-api-key") for r in fake.requests} == {good, bad}
    message = shown(at.info[0].value)
    assert "**good**: ok" in message and "**bad**: invalid (deactivated)" in message
    page_text = rendered_text(at, include_inputs=True)
    assert good not in page_text and bad not in page_text
    assert stored(db)["bad"][0] is False and stored(db)["good"][0] is True
    actions = [r["action"] for r in key_audit_rows(db)]
    assert actions.count("key_checked") == 2 and actions.count("key_auto_disabled") == 1


def edit_form_inputs(at: AppTest):
    name = next(w for w in at.text_input if w.label == "Name" and w.value == "edit-me")
    group = next(w for w in at.text_input if w.label.startswith("Group (") and
                 w.value == "old-project")
    priority = next(w for w in at.number_input if w.label.startswith("Priority")
                    and w.value == 5)
    active = next(w for w in at.toggle if w.label.startswith("Active"))
    return name, group, priority, active


def test_edit_one_key_changes_each_field_with_its_own_audit_row(db, admin_actor):
    seed(admin_actor, ("edit-me", 5, "old-project"))
    at = page(admin_actor).run()
    name, group, priority, active = edit_form_inputs(at)
    name.input("edited")
    group.input("new-project")
    priority.set_value(7)
    active.set_value(False)
    button(at, "Save key").click().run()
    assert not at.exception
    assert "changed name, group, priority, active" in shown(at.success[0].value)
    assert stored(db) == {"edited": (False, 7, False)}
    actions = [r["action"] for r in key_audit_rows(db)]
    assert actions.count("key_added") == 1 and len(actions) == 5
    assert {"key_renamed", "key_group_changed", "key_priority_changed",
            "key_deactivated"} <= set(actions)


def test_edit_one_key_with_a_bad_field_stores_nothing(db, admin_actor):
    seed(admin_actor, ("edit-me", 5, "old-project"), ("taken", 1, None))
    at = page(admin_actor).run()
    name, group, priority, active = edit_form_inputs(at)
    group.input("another-project")
    name.input("TAKEN")
    button(at, "Save key").click().run()
    assert "Not saved" in shown(at.error[0].value) and "already exists" in shown(at.error[0].value)
    assert stored(db)["edit-me"] == (True, 5, False)
    assert [r["action"] for r in key_audit_rows(db)] == ["key_added", "key_added"]
