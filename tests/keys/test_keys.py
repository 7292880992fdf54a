"""The key service: round trip, tampering, lookups, changes and their audit rows."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import lib.keys.writes as key_writes
from db.session import Actor, session_scope
from lib.crypto.sealed import CryptoError, KeyDecryptionError, MasterKey
from lib.errors import InvalidInput, NotFound
from lib.key_format import looks_like_key
from lib.keys.reads import resolve_key, reveal_key
from lib.keys.writes import (
    add_key,
    archive_key,
    delete_key,
    rename_key,
    set_active,
    set_priority,
    unarchive_key,
)
from lib.runtime import build_runtime
from tests.support.keys import audit_rows, dump_tables, dump_text, fake_key, key_audit_rows


@pytest.fixture
def rt(db):
    return build_runtime(apply_migrations=False)


@pytest.fixture
def admin_session(rt, admin_actor):
    def scope():
        return session_scope(admin_actor, engine=rt.engine)
    return scope


def add(rt, actor, name="main", api_key=None, **kwargs):
    with session_scope(actor, engine=rt.engine) as session:
        return add_key(session, rt.master_key, name=name, api_key=api_key or fake_key(),
                            **kwargs)


def load(rt, actor, key_id):
    with session_scope(actor, engine=rt.engine) as session:
        return resolve_key(session, str(key_id))


def owner_update(db, sql, **params):
    with db.engine.begin() as connection:
        connection.execute(text(sql), params)


# -- round trip and what is stored -----------------------------------------------------------

def test_added_key_decrypts_to_the_same_text_in_a_later_transaction(rt, admin_actor):
    secret = fake_key()
    row = add(rt, admin_actor, api_key=f"  {secret}\n")
    assert reveal_key(rt.master_key, load(rt, admin_actor, row.id)) == secret


def test_add_key_stores_hint_fingerprint_version_creator_and_one_audit_row(db, rt, admin_actor):
    secret = fake_key()
    row = add(rt, admin_actor, name="Project A", api_key=secret, priority=7, group_label=" proj ")
    stored = load(rt, admin_actor, row.id)
    assert stored.masked_hint == f"AIza…{secret[-4:]}"
    assert len(stored.fingerprint) == 64
    assert stored.master_key_version == rt.master_key.version
    assert stored.created_by == admin_actor.user_id
    assert (stored.priority, stored.group_label, stored.is_active) == (7, "proj", True)
    [audit] = key_audit_rows(db)
    assert audit["action"] == "key_added"
    assert audit["key_id"] == row.id and audit["user_id"] == admin_actor.user_id
    assert audit["details"]["name"] == "Project A"
    assert secret not in dump_text(db)


def test_two_encryptions_of_one_key_differ(rt, admin_actor):
    first = add(rt, admin_actor, name="a")
    second = add(rt, admin_actor, name="b")
    assert first.encryption_iv != second.encryption_iv


# -- tampering: every case raises KeyDecryptionError naming the key ------------------------

def flip_first_bit(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("column", ["encrypted_key", "encryption_iv", "encryption_tag"])
def test_a_flipped_bit_in_any_column_fails_naming_the_key(db, rt, admin_actor, column):
    row = add(rt, admin_actor, name="tampered")
    owner_update(db, f"UPDATE gemini_api_keys SET {column} = :v WHERE id = :id",
                 v=flip_first_bit(getattr(row, column)), id=row.id)
    with pytest.raises(KeyDecryptionError, match="'tampered'") as caught:
        reveal_key(rt.master_key, load(rt, admin_actor, row.id))
    assert caught.value.key_id == row.id


def test_ciphertext_swapped_between_rows_fails_instead_of_returning_the_other_key(
        db, rt, admin_actor):
    first = add(rt, admin_actor, name="first")
    second = add(rt, admin_actor, name="second")
    owner_update(db, "UPDATE gemini_api_keys SET encrypted_key = :k, encryption_iv = :iv, "
                     "encryption_tag = :tag WHERE id = :id",
                 k=first.encrypted_key, iv=first.encryption_iv, tag=first.encryption_tag,
                 id=second.id)
    with pytest.raises(KeyDecryptionError, match="'second'"):
        reveal_key(rt.master_key, load(rt, admin_actor, second.id))
    reveal_key(rt.master_key, load(rt, admin_actor, first.id))  # the original still works


def test_wrong_master_key_fails_naming_the_key(rt, admin_actor):
    row = add(rt, admin_actor, name="mine")
    other = MasterKey(os.urandom(32), rt.master_key.version)
    with pytest.raises(KeyDecryptionError, match="'mine'"):
        reveal_key(other, load(rt, admin_actor, row.id))


def test_master_key_version_changed_on_the_row_fails_naming_the_key(db, rt, admin_actor):
    row = add(rt, admin_actor, name="versioned")
    owner_update(db, "UPDATE gemini_api_keys SET master_key_version = 2 WHERE id = :id",
                 id=row.id)
    # A newer version on the row reads as "the master key was rotated" (MasterKeyMismatch).
    with pytest.raises(CryptoError, match="'versioned'"):
        reveal_key(rt.master_key, load(rt, admin_actor, row.id))


# -- bad input: a clear message and nothing stored -----------------------------------------

GOOD = {"name": "good-name", "priority": 5, "group_label": "proj"}
BAD_INPUTS = [
    ("empty name", {"name": ""}, "empty"),
    ("blank name", {"name": "   "}, "empty"),
    ("long name", {"name": "n" * 101}, "too long"),
    ("newline in name", {"name": "a\nb"}, "control"),
    ("tab in name", {"name": "a\tb"}, "control"),
    ("nul in name", {"name": "a\x00b"}, "control"),
    ("zero-width in name", {"name": "a\u200bb"}, "control"),
    ("bidi override in name", {"name": "a\u202eb"}, "control"),
    ("key as name", {"name": "KEY"}, "contains an API key"),
    ("uuid as name", {"name": str(uuid.uuid4())}, "uuid"),
    ("non-text name", {"name": 42}, "must be text"),
    ("empty key", {"api_key": ""}, "Gemini API key"),
    ("short key", {"api_key": "AIza123"}, "wrong length"),
    ("long key", {"api_key": "AIza" + "a" * 36}, "wrong length"),
    ("wrong prefix", {"api_key": "BIza" + "a" * 35}, "does not start"),
    ("bad characters", {"api_key": "AIza" + "a" * 34 + "!"}, "other characters"),
    ("space inside key", {"api_key": "AIza" + "a" * 17 + " " + "a" * 17}, "other characters"),
    ("non-text key", {"api_key": None}, "as text"),
    ("priority zero", {"priority": 0}, "from 1 to 1000"),
    ("priority too high", {"priority": 1001}, "from 1 to 1000"),
    ("negative priority", {"priority": -5}, "from 1 to 1000"),
    ("fractional priority", {"priority": 2.5}, "whole number"),
    ("text priority", {"priority": "high"}, "whole number"),
    ("boolean priority", {"priority": True}, "true/false"),
    ("long group", {"group_label": "g" * 101}, "too long"),
    ("control char in group", {"group_label": "g\x07"}, "control"),
    ("key as group", {"group_label": "KEY"}, "contains an API key"),
]


# Validation happens before the database; one server is enough.
@pytest.mark.one_server
@pytest.mark.parametrize(("case", "override", "message"), BAD_INPUTS,
                         ids=[case for case, _, _ in BAD_INPUTS])
def test_add_key_refuses_bad_input_and_stores_nothing(db, rt, admin_actor, case, override,
                                                      message):
    secret = fake_key()
    values = {**GOOD, "api_key": secret, **override}
    values = {k: (fake_key() if v == "KEY" else v) for k, v in values.items()}
    before = dump_tables(db)
    with pytest.raises(InvalidInput, match=message) as caught, \
            session_scope(admin_actor, engine=rt.engine) as session:
        add_key(session, rt.master_key, **values)
    assert dump_tables(db) == before
    for value in values.values():
        if isinstance(value, str) and looks_like_key(value):
            assert value.strip() not in str(caught.value)


@pytest.mark.parametrize("same", ["name", "name-other-case", "key", "key-with-spaces"])
def test_add_key_refuses_duplicates(db, rt, admin_actor, same):
    secret = fake_key()
    add(rt, admin_actor, name="Primary", api_key=secret)
    name = {"name": "Primary", "name-other-case": "PRIMARY"}.get(same, "another")
    api_key = {"key": secret, "key-with-spaces": f" {secret} "}.get(same, fake_key())
    before = dump_tables(db)
    with pytest.raises(InvalidInput, match="already"), \
            session_scope(admin_actor, engine=rt.engine) as session:
        add_key(session, rt.master_key, name=name, api_key=api_key)
    assert dump_tables(db) == before


# -- lookups --------------------------------------------------------------------------------

def test_resolve_key_by_id_and_by_name_in_any_case(rt, admin_actor):
    row = add(rt, admin_actor, name="Project-A")
    with session_scope(admin_actor, engine=rt.engine) as session:
        assert resolve_key(session, str(row.id)).id == row.id
        assert resolve_key(session, row.id).id == row.id
        assert resolve_key(session, " project-a ").id == row.id


@pytest.mark.parametrize("argument", ["nope", "", str(uuid.uuid4())],
                         ids=["unknown name", "empty", "unknown id"])
def test_resolve_key_raises_not_found(rt, admin_actor, argument):
    add(rt, admin_actor, name="exists")
    with pytest.raises(NotFound), session_scope(admin_actor, engine=rt.engine) as session:
        resolve_key(session, argument)


def test_resolve_key_does_not_echo_an_api_key_passed_as_the_name(rt, admin_actor):
    secret = fake_key()
    add(rt, admin_actor, name="exists", api_key=secret)
    with pytest.raises(NotFound) as caught, \
            session_scope(admin_actor, engine=rt.engine) as session:
        resolve_key(session, secret)
    assert secret not in str(caught.value)


def test_non_admin_cannot_see_keys(rt, admin_actor, member_actor):
    row = add(rt, admin_actor, name="hidden")
    with pytest.raises(NotFound), session_scope(member_actor, engine=rt.engine) as session:
        resolve_key(session, str(row.id))


# -- changes: exactly one audit row each, none when nothing changes -------------------------

CHANGES = [
    ("set_active", (False,), {"reason": "leaked"}, "key_deactivated",
     {"is_active": False, "disabled_reason": "leaked"}),
    ("set_priority", (900,), {}, "key_priority_changed", {"priority": 900}),
    ("rename_key", ("renamed",), {}, "key_renamed", {"name": "renamed"}),
    ("set_group", ("proj-b",), {}, "key_group_changed", {"group_label": "proj-b"}),
]


@pytest.mark.parametrize(("function", "args", "kwargs", "action", "after"), CHANGES,
                         ids=[c[0] for c in CHANGES])
def test_each_change_writes_one_audit_row_with_before_and_after(
        db, rt, admin_actor, function, args, kwargs, action, after):
    row = add(rt, admin_actor, name="k", priority=3, group_label="proj-a")
    with session_scope(admin_actor, engine=rt.engine) as session:
        changed = getattr(key_writes, function)(session, row.id, *args, **kwargs)
        assert {c: getattr(changed, c) for c in after} == after
    [audit] = key_audit_rows(db)[1:]
    assert audit["action"] == action and audit["key_id"] == row.id
    assert audit["user_id"] == admin_actor.user_id
    assert audit["details"]["after"] == after
    assert set(audit["details"]["before"]) >= set(after)
    # Repeating the same change is a no-op: no second audit row.
    with session_scope(admin_actor, engine=rt.engine) as session:
        getattr(key_writes, function)(session, row.id, *args, **kwargs)
    assert len(key_audit_rows(db)) == 2


def test_activating_clears_an_automatic_disable(db, rt, admin_actor):
    row = add(rt, admin_actor)
    owner_update(db, "UPDATE gemini_api_keys SET is_active = false, consecutive_failures = 5,"
                     " disabled_reason = 'API_KEY_INVALID' WHERE id = :id", id=row.id)
    with session_scope(admin_actor, engine=rt.engine) as session:
        key = set_active(session, row.id, True)
        assert (key.is_active, key.disabled_reason, key.consecutive_failures) == (True, None, 0)
    assert audit_rows(db, "key_activated")[0]["details"]["before"]["disabled_reason"] \
        == "API_KEY_INVALID"


def test_rename_refuses_a_name_in_use(db, rt, admin_actor):
    add(rt, admin_actor, name="taken")
    row = add(rt, admin_actor, name="mine")
    before = dump_tables(db)
    with pytest.raises(InvalidInput, match="already exists"), \
            session_scope(admin_actor, engine=rt.engine) as session:
        rename_key(session, row.id, "TAKEN")
    assert dump_tables(db) == before


def test_archive_and_unarchive_are_audited_once_each(db, rt, admin_actor):
    row = add(rt, admin_actor)
    for _ in range(2):
        with session_scope(admin_actor, engine=rt.engine) as session:
            assert archive_key(session, row.id).archived_at is not None
    for _ in range(2):
        with session_scope(admin_actor, engine=rt.engine) as session:
            assert unarchive_key(session, row.id).archived_at is None
    assert [a["action"] for a in key_audit_rows(db)] == ["key_added", "key_archived",
                                                         "key_unarchived"]


def test_delete_tombstones_the_row_keeping_history_and_freeing_name_and_key(
        db, rt, admin_actor):
    secret = fake_key()
    row = add(rt, admin_actor, name="doomed", api_key=secret)
    with session_scope(admin_actor, engine=rt.engine) as session:
        set_priority(session, row.id, 10)
    with session_scope(admin_actor, engine=rt.engine) as session:
        delete_key(session, "doomed")
    with db.engine.connect() as connection:
        stored = connection.execute(text("SELECT * FROM gemini_api_keys WHERE id = :id"),
                                    {"id": row.id}).one()
    assert stored.deleted_at is not None and stored.is_active is False
    assert (stored.encrypted_key, stored.encryption_iv, stored.encryption_tag,
            stored.fingerprint) == ("", "", "", None)
    assert [a["action"] for a in key_audit_rows(db)] == [
        "key_added", "key_priority_changed", "key_deleted"]
    with pytest.raises(KeyDecryptionError, match="'doomed'"):
        reveal_key(rt.master_key, stored)
    with pytest.raises(NotFound), session_scope(admin_actor, engine=rt.engine) as session:
        resolve_key(session, str(row.id))
    again = add(rt, admin_actor, name="doomed", api_key=secret)  # name and key are free again
    assert reveal_key(rt.master_key, load(rt, admin_actor, again.id)) == secret


def test_a_key_row_cannot_be_deleted_outright_because_its_history_must_stay(db, rt,
                                                                            admin_actor):
    row = add(rt, admin_actor)
    with pytest.raises(DBAPIError, match="append-only"), \
            session_scope(Actor.service("cli"), engine=rt.engine) as session:
        session.execute(text("DELETE FROM gemini_api_keys WHERE id = :id"), {"id": row.id})
    assert len(key_audit_rows(db)) == 1


def test_changes_to_a_deleted_key_are_refused(rt, admin_actor):
    row = add(rt, admin_actor)
    with session_scope(admin_actor, engine=rt.engine) as session:
        delete_key(session, row.id)
    with pytest.raises(NotFound), session_scope(admin_actor, engine=rt.engine) as session:
        set_priority(session, row.id, 5)


@pytest.mark.parametrize(("function", "args"), [
    ("set_priority", (0,)), ("set_priority", ("x",)), ("rename_key", ("",)),
    ("rename_key", ("a\nb",)), ("set_group", ("g" * 101,)), ("set_active", ("yes",)),
])
def test_bad_changes_leave_everything_unchanged(db, rt, admin_actor, function, args):
    row = add(rt, admin_actor)
    before = dump_tables(db)
    with pytest.raises(InvalidInput), session_scope(admin_actor, engine=rt.engine) as session:
        getattr(key_writes, function)(session, row.id, *args)
    assert dump_tables(db) == before
