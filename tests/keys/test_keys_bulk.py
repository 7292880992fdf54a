"""Bulk import with its preview, the masked keys list with filters, and bulk edits."""

from __future__ import annotations

import pytest

from db.session import session_scope
from lib.errors import InvalidInput
from lib.keys.importing import import_keys, preview_import
from lib.keys.reads import KeyFilter, key_groups, list_keys, resolve_key, reveal_key
from lib.keys.writes import KeyEdit, add_key, apply_edits, archive_key, set_active, set_priority
from lib.runtime import build_runtime
from tests.support.keys import dump_tables, dump_text, fake_key, key_audit_rows


@pytest.fixture
def rt(db):
    return build_runtime(apply_migrations=False)


def scope(rt, actor):
    return session_scope(actor, engine=rt.engine)


def add(rt, actor, name, **kwargs):
    with scope(rt, actor) as session:
        return add_key(session, rt.master_key, name=name, api_key=fake_key(), **kwargs)


# -- import ---------------------------------------------------------------------------------

def test_preview_reports_each_refused_line_by_number_and_why(rt, admin_actor):
    stored = fake_key()
    with scope(rt, admin_actor) as session:
        add_key(session, rt.master_key, name="existing", api_key=stored)
    a, b = fake_key(), fake_key()
    paste = "\n".join([
        "name,key",                 # header, skipped
        f"alpha,{a}",               # 2 ok
        "",                         # blank
        f"# comment {fake_key()}",  # comment
        f"{b}",                     # 5 ok, auto-named
        "beta,AIzaTooShort",        # 6 bad shape
        f"gamma,{a}",               # 7 same key as line 2
        f"ALPHA,{fake_key()}",      # 8 same name as line 2
        f"existing,{fake_key()}",   # 9 name in the database
        f"delta,{stored}",          # 10 key in the database
        f"{fake_key()},epsilon",    # 11 swapped columns
        f"bad\x01name,{fake_key()}",  # 12 control character
    ])
    with scope(rt, admin_actor) as session:
        preview = preview_import(session, rt.master_key, paste)
    assert [(line.line_no, line.name) for line in preview.to_add] == [
        (2, "alpha"), (5, preview.to_add[1].name)]
    assert preview.to_add[1].name.startswith("key-")
    problems = {line.line_no: line.problem for line in preview.refused}
    assert set(problems) == {6, 7, 8, 9, 10, 11, 12}
    assert "wrong length" in problems[6]
    assert problems[7] == "the same key as line 2"
    assert problems[8] == "the same name as line 2"
    assert "'existing' already exists" in problems[9]
    assert "already stored, as 'existing'" in problems[10]
    assert "swapped" in problems[11]
    assert "control" in problems[12]
    shown = repr(preview) + str(preview.rows()) + preview.refused_summary()
    for secret in (a, b, stored):
        assert secret not in shown


def test_import_with_a_refused_line_adds_nothing_unless_told_to_skip_it(db, rt, admin_actor):
    good, other = fake_key(), fake_key()
    paste = f"one,{good}\ntwo,not-a-key\nthree,{other}\n"
    before = dump_tables(db)
    with pytest.raises(InvalidInput, match="Nothing was added: 1 line.*line 2"), \
            scope(rt, admin_actor) as session:
        import_keys(session, rt.master_key, paste)
    assert dump_tables(db) == before
    with scope(rt, admin_actor) as session:
        result = import_keys(session, rt.master_key, paste, priority=9, group_label="proj",
                             skip_refused=True)
        assert [row.name for row in result.added] == ["one", "three"]
        assert [line.line_no for line in result.refused] == [2]
    audits = key_audit_rows(db)
    assert sorted((a["action"], a["details"]["line"]) for a in audits) == [
        ("key_imported", 1), ("key_imported", 3)]
    with scope(rt, admin_actor) as session:
        row = resolve_key(session, "three")
        assert (row.priority, row.group_label) == (9, "proj")
        assert reveal_key(rt.master_key, row) == other
    assert good not in dump_text(db) and other not in dump_text(db)


@pytest.mark.parametrize(("paste", "options", "message"), [
    ("", {}, "empty"),
    ("\n# only a comment\n\n", {}, "empty"),
    ("name,key\n", {}, "empty"),
    ("x" * 1_000_001, {}, "too large"),
    ("\n".join(f"k{i},x" for i in range(5001)), {}, "Too many lines"),
    ("KEY", {"priority": 0}, "from 1 to 1000"),
    ("KEY", {"group_label": "g" * 101}, "too long"),
    ("only,garbage\n", {"skip_refused": True}, "every line was refused"),
])
def test_bad_imports_store_nothing(db, rt, admin_actor, paste, options, message):
    paste = paste.replace("KEY", fake_key())
    before = dump_tables(db)
    with pytest.raises(InvalidInput, match=message), scope(rt, admin_actor) as session:
        import_keys(session, rt.master_key, paste, **options)
    assert dump_tables(db) == before


# -- list -----------------------------------------------------------------------------------

def test_list_keys_is_masked_filtered_and_names_the_creator(rt, admin_actor):
    add(rt, admin_actor, "alpha-main", priority=5, group_label="project-a")
    add(rt, admin_actor, "beta_backup", group_label="project-b")
    gamma = add(rt, admin_actor, "gamma")
    with scope(rt, admin_actor) as session:
        set_active(session, gamma.id, False)
        archive_key(session, resolve_key(session, "beta_backup").id)
    with scope(rt, admin_actor) as session:
        def names(**filters):
            return [r.name for r in list_keys(session, KeyFilter(**filters),
                                              master=rt.master_key)]
        rows = list_keys(session)
        # highest priority first; archived keys hidden by default
        assert [r.name for r in rows] == ["alpha-main", "gamma"]
        assert rows[0].created_by_email == "admin@example.com"
        assert rows[0].masked_hint.startswith("AIza…")
        fields = set(vars(rows[0]))
        assert "encrypted_key" not in fields and "fingerprint" not in fields
        assert names(search="MAIN") == ["alpha-main"]
        assert names(search="project-") == ["alpha-main"]
        assert names(search="_") == []  # LIKE wildcards are literal (beta_backup is archived)
        assert names(search="_", archived=None) == ["beta_backup"]
        assert names(active=False) == ["gamma"]
        assert names(group="project-a") == ["alpha-main"]
        assert names(group="") == ["gamma"]
        assert names(archived=True) == ["beta_backup"]
        assert key_groups(session) == ["project-a", "project-b"]


def test_pasting_a_whole_key_into_the_search_finds_its_row(rt, admin_actor):
    secret = fake_key()
    with scope(rt, admin_actor) as session:
        add_key(session, rt.master_key, name="findme", api_key=secret)
        add_key(session, rt.master_key, name="other", api_key=fake_key())
    with scope(rt, admin_actor) as session:
        rows = list_keys(session, KeyFilter(search=f" {secret} "), master=rt.master_key)
    assert [r.name for r in rows] == ["findme"]


def test_non_admin_lists_nothing(rt, admin_actor, member_actor):
    add(rt, admin_actor, "secret-one")
    with scope(rt, member_actor) as session:
        assert list_keys(session) == []


# -- bulk edit ------------------------------------------------------------------------------

def test_bulk_edit_saves_once_with_one_audit_row_per_changed_key(db, rt, admin_actor):
    a = add(rt, admin_actor, "a", priority=1)
    b = add(rt, admin_actor, "b", priority=2)
    c = add(rt, admin_actor, "c", priority=3)
    edits = [KeyEdit(a.id, True, 1, False, 1),     # active only
             KeyEdit(b.id, True, 2, True, 50),     # priority only
             KeyEdit(c.id, True, 3, False, 70)]    # both
    with scope(rt, admin_actor) as session:
        summary = apply_edits(session, [*edits, KeyEdit(a.id, True, 1, True, 1)])
    assert summary.changed == ["a: active on → off", "b: priority 2 → 50",
                               "c: active on → off, priority 3 → 70"]
    assert summary.conflicts == []
    audits = key_audit_rows(db)[3:]
    assert sorted((a_["action"], a_["details"]["name"]) for a_ in audits) == [
        ("key_deactivated", "a"), ("key_priority_changed", "b"), ("key_updated", "c")]
    assert next(x for x in audits if x["details"]["name"] == "c")["details"]["after"] == {
        "is_active": False, "priority": 70}
    with scope(rt, admin_actor) as session:
        rows = {r.name: (r.is_active, r.priority) for r in list_keys(session)}
    assert rows == {"a": (False, 1), "b": (True, 50), "c": (False, 70)}


def test_bulk_edit_skips_keys_changed_elsewhere_and_refuses_bad_priorities(db, rt,
                                                                          admin_actor):
    a = add(rt, admin_actor, "a", priority=1)
    b = add(rt, admin_actor, "b", priority=2)
    with scope(rt, admin_actor) as session:
        set_priority(session, a.id, 9)  # someone else, after the table was loaded
    with scope(rt, admin_actor) as session:
        summary = apply_edits(session, [KeyEdit(a.id, True, 1, True, 4),
                                        KeyEdit(b.id, True, 2, True, 3)])
    assert [c.target for c in summary.conflicts] == ["a"]
    assert summary.changed == ["b: priority 2 → 3"]
    before = dump_tables(db)
    with pytest.raises(InvalidInput, match="Nothing was saved"), \
            scope(rt, admin_actor) as session:
        apply_edits(session, [KeyEdit(b.id, True, 3, False, 3),
                              KeyEdit(a.id, True, 9, True, 1001)])
    assert dump_tables(db) == before
    with scope(rt, admin_actor) as session:
        assert apply_edits(session, [KeyEdit(b.id, True, 3, True, 3)]).message() \
            == "Nothing changed."
