"""Every mutating path writes exactly one audit row, in its own transaction, without key material.

Each case drives one public function once, through the same code the pages, the CLI and
the pool call, and compares the audit log before and after. A path whose module has not
landed is skipped with "not landed: ...", so a run shows what is still missing.
"""

from __future__ import annotations

import base64
import importlib
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.session import Actor, session_scope
from lib.audit.log import Action
from tests.support.audit_rows import insert_key
from tests.support.databases import TEST_BCRYPT_ROUNDS, make_user
from tests.support.keys import fake_key

STRONG_PASSWORD = "correct horse battery staple"



def need(module: str, name: str):
    """The public function `module.name`; a missing one fails (every path has landed)."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        pytest.fail(f"audited path missing: {module}.{name}")


@dataclass
class World:
    db: object
    runtime: object
    admin: Actor
    fake: object
    plaintexts: list[str] = field(default_factory=list)

    def session(self, actor: Actor | None = None):
        return session_scope(actor or self.admin, engine=self.runtime.engine)

    def add_key(self, name: str, *, group: str | None = None) -> uuid.UUID:
        add_key = need("lib.keys.writes", "add_key")
        api_key = fake_key()
        self.plaintexts.append(api_key)
        with self.session() as session:
            return add_key(session, self.runtime.master_key, name=name, api_key=api_key,
                           group_label=group).id


@dataclass(frozen=True)
class Outcome:
    action: str
    key_id: uuid.UUID | None
    user_id: uuid.UUID | None
    same_transaction_as_key_change: bool = True


# -- the paths: setup (not audited by the check) then one drive ----------------------------

def key_change(function: str, action: Action, *args, setup: Callable | None = None):
    def drive(w: World) -> Outcome:
        change = need("lib.keys.writes", function)
        key_id = w.add_key("subject", group="project-a")
        if setup:
            with w.session() as session:
                setup(session, key_id)
        yield
        with w.session() as session:
            change(session, key_id, *args)
        return Outcome(action, key_id, w.admin.user_id)
    return drive


def add_key(w: World):
    add = need("lib.keys.writes", "add_key")
    yield
    api_key = fake_key()
    w.plaintexts.append(api_key)
    with w.session() as session:
        key_id = add(session, w.runtime.master_key, name="fresh", api_key=api_key).id
    return Outcome(Action.KEY_ADDED, key_id, w.admin.user_id)


def import_keys(w: World):
    import_keys = need("lib.keys.importing", "import_keys")
    yield
    api_key = fake_key()
    w.plaintexts.append(api_key)
    with w.session() as session:
        result = import_keys(session, w.runtime.master_key, f"imported,{api_key}\n")
    return Outcome(Action.KEY_IMPORTED, result.added[0].id, w.admin.user_id)


def bulk_edit(w: World):
    apply_edits = need("lib.keys.writes", "apply_edits")
    key_edit = need("lib.keys.writes", "KeyEdit")
    key_id = w.add_key("edited")
    yield
    with w.session() as session:
        apply_edits(session, [key_edit(key_id, True, 1, False, 7)])
    return Outcome(Action.KEY_UPDATED, key_id, w.admin.user_id)


def health_check(w: World):
    check = need("lib.pool.health", "check_stored_key")
    key_id = w.add_key("checked")
    w.fake.respond(w.plaintexts[-1], "ok")
    yield
    with w.session() as session:
        result = check(session, w.runtime.master_key, key_id, base_url=w.fake.base_url)
    assert result.ok
    return Outcome(Action.KEY_CHECKED, key_id, w.admin.user_id,
                   same_transaction_as_key_change=False)  # a check changes nothing


def pool_outcome(kind: str, action: Action, *, changes_key: bool = True):
    def drive(w: World):
        key_pool = need("lib.pool", "KeyPool")
        from tests.support.pool import call_fake

        key_id = w.add_key("pooled")
        pool = key_pool(w.runtime)
        w.fake.respond(w.plaintexts[-1], kind)
        yield
        lease = pool.acquire()
        pool.record(lease, "failure", 12.5, error=call_fake(w.fake.base_url, lease.api_key))
        # the pool acts for nobody; a model cooldown changes the project's row, not the key's
        return Outcome(action, key_id, None, same_transaction_as_key_change=changes_key)
    return drive


def rotate_master_key(w: World):
    rotate = need("lib.keys.rotation", "rotate_master_key")
    w.add_key("rotated")
    cli_actor = Actor.service("cli", w.admin.user_id, w.admin.email)
    yield
    with w.session(cli_actor) as session:
        rotate(session, w.runtime.master_key, secrets.token_bytes(32))
    return Outcome(Action.MASTER_KEY_ROTATED, None, w.admin.user_id,
                   same_transaction_as_key_change=False)  # checked through updated_at below


def restore_master_key_check(w: World):
    restore = need("lib.crypto.master_key", "restore_check_row")
    w.add_key("proven")
    with w.db.engine.begin() as connection:  # lost (as the owner): what the restore repairs
        connection.execute(text("DELETE FROM gemini_master_key_check"))
    cli_actor = Actor.service("cli", w.admin.user_id, w.admin.email)
    yield
    with w.session(cli_actor) as session:
        restore(session, w.runtime.master_key)
    return Outcome(Action.MASTER_KEY_CHECK_RESTORED, None, w.admin.user_id,
                   same_transaction_as_key_change=False)  # no key changes


def user_change(action: Action, call: Callable, *, other_is_admin: bool = False):
    def drive(w: World):
        need("lib.users.accounts", call.__name__.removeprefix("_"))
        make_user(w.db, "other@example.com", admin=other_is_admin)
        yield
        with w.session() as session:
            call(session)
        return Outcome(action, None, w.admin.user_id, same_transaction_as_key_change=False)
    return drive


def _create_user(session):
    from lib.users.accounts import create_user
    create_user(session, email="new@example.com", password=STRONG_PASSWORD,
                bcrypt_rounds=TEST_BCRYPT_ROUNDS)


def _set_admin_on(session):
    from lib.users.accounts import set_admin
    assert set_admin(session, email="other@example.com", admin=True)


def _set_admin_off(session):
    from lib.users.accounts import set_admin
    assert set_admin(session, email="other@example.com", admin=False)


def _sign_out_everywhere(session):
    from lib.users.accounts import sign_out_everywhere
    sign_out_everywhere(session, email="other@example.com")


def _reset_password(session):
    from lib.users.accounts import reset_password
    reset_password(session, email="other@example.com", password="another strong passphrase",
                   bcrypt_rounds=TEST_BCRYPT_ROUNDS)


for _f, _name in ((_create_user, "_create_user"), (_set_admin_on, "_set_admin"),
                  (_set_admin_off, "_set_admin"), (_reset_password, "_reset_password"),
                  (_sign_out_everywhere, "_sign_out_everywhere")):
    _f.__name__ = _name


def sign_in_failure(failures_before: int, action: Action):
    def drive(w: World):
        sign_in = need("lib.users.signin", "sign_in")
        make_user(w.db, "other@example.com", admin=False)
        app = Actor.service("app")
        if failures_before:  # counted earlier in this window, as sign_in counts them
            from db.models import SignInFailure
            from lib.users.signin import THROTTLE, client_label
            with w.session(app) as session:
                now = session.scalar(text("SELECT clock_timestamp()::timestamp"))
                session.add(SignInFailure(
                    email="other@example.com", client_address=client_label(None),
                    window_start=THROTTLE.window_start(now), failures=failures_before,
                    first_at=now, last_at=now, last_failed_at=now))
        yield
        with w.session(app) as session:
            result = sign_in(session, "other@example.com", "wrong password!",
                             bcrypt_rounds=TEST_BCRYPT_ROUNDS)
        assert not result.ok
        return Outcome(action, None, None, same_transaction_as_key_change=False)
    return drive


def setup_code(action: Action):
    """Before any admin exists (the world's admin is made a plain user first)."""
    def drive(w: World):
        ensure_setup_code = need("lib.users.setup_code", "ensure_setup_code")
        create_first_admin = need("lib.users.setup_code", "create_first_admin")
        with w.db.engine.begin() as connection:
            connection.execute(text("UPDATE user_profiles SET is_admin = false"))
        app = Actor.service("app")
        if action == Action.SETUP_CODE_FAILED:
            with w.session(app) as session:
                assert ensure_setup_code(session, minutes=60) is not None
        yield
        with w.session(app) as session:
            if action == Action.SETUP_CODE_ISSUED:
                assert ensure_setup_code(session, minutes=60) is not None
            else:
                assert isinstance(create_first_admin(
                    session, code="WRONG-CODE-0000-0000", email="first@example.com",
                    password=STRONG_PASSWORD, password_again=STRONG_PASSWORD,
                    bcrypt_rounds=TEST_BCRYPT_ROUNDS), str)
        return Outcome(action, None, None, same_transaction_as_key_change=False)
    return drive


def quota_change(action: Action):
    """Budgets (issue 16): set a limit, clear it, clear the pool's no-quota mark."""
    def drive(w: World):
        writes = "lib.quotas.writes"
        set_quota = need(writes, "set_quota")
        w.add_key("budgeted", group="project-a")
        if action != Action.QUOTA_SET:
            with w.session() as session:
                set_quota(session, group_label="project-a", model="gemini-2.5-pro", rpd=100)
        if action == Action.MODEL_MARK_CLEARED:
            with w.session(Actor.service("pool")) as session:
                session.execute(text(
                    "INSERT INTO gemini_model_cooldowns (project, model, no_quota)"
                    " VALUES ('project-a', 'gemini-2.5-pro', true)"))
        yield
        with w.session() as session:
            if action == Action.QUOTA_SET:
                set_quota(session, group_label="project-a", model="gemini-2.5-pro", rpm=5)
            elif action == Action.QUOTA_CLEARED:
                need(writes, "clear_quota")(session, group_label="project-a",
                                            model="gemini-2.5-pro")
            else:
                need(writes, "clear_model_mark")(session, project="project-a",
                                                 model="gemini-2.5-pro")
        return Outcome(action, None, w.admin.user_id, same_transaction_as_key_change=False)
    return drive


def _deactivate(session, key_id):
    from lib.keys.writes import set_active
    set_active(session, key_id, False)


def _archive(session, key_id):
    from lib.keys.writes import archive_key
    archive_key(session, key_id)


def token_created(w: World):
    create = need("lib.tokens", "create_token")
    yield
    with w.session() as session:
        _, token = create(session, name="service-a", models="gemini-2.0-flash")
    w.plaintexts.append(token)
    return Outcome(Action.ACCESS_TOKEN_CREATED, None, w.admin.user_id)


def token_revoked(w: World):
    create, revoke = need("lib.tokens", "create_token"), need("lib.tokens", "revoke_token")
    with w.session() as session:
        w.plaintexts.append(create(session, name="service-b")[1])
    yield
    with w.session() as session:
        revoke(session, "service-b")
    return Outcome(Action.ACCESS_TOKEN_REVOKED, None, w.admin.user_id)


PATHS: dict[str, Callable] = {
    "key_added": add_key,
    "key_imported": import_keys,
    "key_renamed": key_change("rename_key", Action.KEY_RENAMED, "renamed"),
    "key_activated": key_change("set_active", Action.KEY_ACTIVATED, True, setup=_deactivate),
    "key_deactivated": key_change("set_active", Action.KEY_DEACTIVATED, False),
    "key_priority_changed": key_change("set_priority", Action.KEY_PRIORITY_CHANGED, 42),
    "key_group_changed": key_change("set_group", Action.KEY_GROUP_CHANGED, "project-b"),
    "key_updated": bulk_edit,
    "key_archived": key_change("archive_key", Action.KEY_ARCHIVED),
    "key_unarchived": key_change("unarchive_key", Action.KEY_UNARCHIVED, setup=_archive),
    "key_deleted": key_change("delete_key", Action.KEY_DELETED),
    "key_checked": health_check,
    "key_auto_disabled": pool_outcome("invalid", Action.KEY_AUTO_DISABLED),
    "key_cooldown": pool_outcome("rate_limited_minute_project", Action.KEY_COOLDOWN),
    "model_cooldown": pool_outcome("rate_limited_day", Action.MODEL_COOLDOWN,
                                   changes_key=False),
    "master_key_rotated": rotate_master_key,
    "master_key_check_restored": restore_master_key_check,
    "user_created": user_change(Action.USER_CREATED, _create_user),
    "admin_granted": user_change(Action.ADMIN_GRANTED, _set_admin_on),
    "admin_revoked": user_change(Action.ADMIN_REVOKED, _set_admin_off, other_is_admin=True),
    "password_reset": user_change(Action.PASSWORD_RESET, _reset_password),
    "signed_out_everywhere": user_change(Action.SIGNED_OUT_EVERYWHERE, _sign_out_everywhere),
    "sign_in_failed": sign_in_failure(0, Action.SIGN_IN_FAILED),
    # Failures past the free ones: the next attempt is refused (once per window in the log).
    "sign_in_throttled": sign_in_failure(10, Action.SIGN_IN_THROTTLED),
    "setup_code_issued": setup_code(Action.SETUP_CODE_ISSUED),
    "setup_code_failed": setup_code(Action.SETUP_CODE_FAILED),
    "quota_set": quota_change(Action.QUOTA_SET),
    "quota_cleared": quota_change(Action.QUOTA_CLEARED),
    "model_mark_cleared": quota_change(Action.MODEL_MARK_CLEARED),
    "access_token_created": token_created,
    "access_token_revoked": token_revoked,
}


def test_every_audit_verb_has_a_driven_path():
    from lib.audit.log import RETIRED_ACTIONS

    assert set(PATHS) == {a.value for a in Action} - RETIRED_ACTIONS


# -- the check ---------------------------------------------------------------------------------

def audit_rows(db) -> dict[uuid.UUID, dict]:
    with db.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, key_id, action, user_id, created_at, details::text AS details "
            "FROM gemini_key_audit_log")).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def key_secrets(db) -> set[str]:
    """Every stored ciphertext, nonce and tag (the material details must never hold)."""
    with db.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT encrypted_key, encryption_iv, encryption_tag FROM gemini_api_keys")).all()
    return {value for row in rows for value in row if value and len(value) >= 12}


@pytest.fixture
def world(db, admin_actor):
    from lib.runtime import build_runtime
    from tests.support.fake_gemini import FakeGemini

    with FakeGemini() as fake:
        yield World(db, build_runtime(), admin_actor, fake)


@pytest.mark.one_server  # application logic; the database guarantees run on both servers
@pytest.mark.parametrize("path", list(PATHS))
def test_mutating_path_writes_exactly_one_audit_row(db, world, path):
    drive = PATHS[path](world)
    next(drive)  # setup done
    before, secrets_before = audit_rows(db), key_secrets(db)
    try:
        next(drive)
    except StopIteration as stop:
        outcome: Outcome = stop.value
    new = [row for row_id, row in audit_rows(db).items() if row_id not in before]

    assert len(new) == 1, [r["action"] for r in new]
    row = new[0]
    assert (row["action"], row["key_id"], row["user_id"]) == (
        outcome.action, outcome.key_id, outcome.user_id)
    details = json.loads(row["details"])
    assert details.get("source") in {"app", "cli", "pool", "system"}
    for material in [*world.plaintexts, *secrets_before, *key_secrets(db)]:
        assert material not in row["details"], path
    for plaintext in world.plaintexts:
        assert base64.b64encode(plaintext.encode()).decode() not in row["details"]
    if outcome.key_id and outcome.same_transaction_as_key_change:
        # now() is the transaction's start: the change and its audit row share it.
        with db.engine.connect() as connection:
            updated_at = connection.scalar(text(
                "SELECT updated_at FROM gemini_api_keys WHERE id = :k"), {"k": outcome.key_id})
        assert updated_at == row["created_at"]


@pytest.mark.one_server
def test_rotation_audit_row_shares_the_transaction_of_the_re_encryption(db, world):
    drive = rotate_master_key(world)
    next(drive)
    with pytest.raises(StopIteration):
        next(drive)
    with db.engine.connect() as connection:
        updated, audited = connection.execute(text(
            "SELECT (SELECT max(updated_at) FROM gemini_api_keys),"
            " (SELECT created_at FROM gemini_key_audit_log"
            "  WHERE action = 'master_key_rotated')")).one()
    assert updated == audited


@pytest.mark.one_server
def test_a_change_whose_audit_row_fails_does_not_happen(db, world):
    """The audit row names a user that does not exist: its insert fails, the change rolls back."""
    set_priority = need("lib.keys.writes", "set_priority")
    key_id = world.add_key("kept")
    ghost = Actor.service("cli", uuid.uuid4(), "ghost@example.com")
    before = audit_rows(db)
    with pytest.raises(DBAPIError), world.session(ghost) as session:
        set_priority(session, key_id, 99)
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT priority FROM gemini_api_keys WHERE id = :k"),
                                 {"k": key_id}) == 1
    assert audit_rows(db) == before


# -- append-only -------------------------------------------------------------------------------

TAMPERING = {
    "update": "UPDATE gemini_key_audit_log SET action = 'forged'",
    "update details": "UPDATE gemini_key_audit_log SET details = '{}'::jsonb WHERE key_id = :k",
    "delete": "DELETE FROM gemini_key_audit_log",
    "delete one": "DELETE FROM gemini_key_audit_log WHERE key_id = :k",
    "truncate": "TRUNCATE gemini_key_audit_log",
    "delete the key (cascade)": "DELETE FROM gemini_api_keys WHERE id = :k",
}


@pytest.fixture
def audited_key(db) -> uuid.UUID:
    """A key with audit history, written directly (no bcrypt, no runtime: these tests are
    about the database's guarantees)."""
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        key_id = insert_key(session, "audited")
        session.execute(text("INSERT INTO gemini_key_audit_log (key_id, action, details) "
                             "VALUES (:k, 'key_added', '{}'), (:k, 'key_renamed', '{}')"),
                        {"k": key_id})
    return key_id


@pytest.fixture
def quick_admin(db) -> Actor:
    """An admin user inserted directly (make_user would spend a bcrypt hash)."""
    with db.engine.begin() as connection:
        user_id = connection.scalar(text(
            "INSERT INTO auth.users (email) VALUES ('quick@example.com') RETURNING id"))
        connection.execute(text("INSERT INTO user_profiles (user_id, is_admin) "
                                "VALUES (:u, true)"), {"u": user_id})
    return Actor.user(user_id, "quick@example.com")


@pytest.mark.parametrize("who", ["admin", "service", "owner"])
def test_audit_rows_cannot_be_changed_or_erased(db, audited_key, quick_admin, who):
    before = audit_rows(db)
    for name, statement in TAMPERING.items():
        if who == "owner":
            if name == "truncate":
                continue  # the owner may TRUNCATE its own table (triggers don't fire on it)
            with pytest.raises(DBAPIError, match="append-only"), \
                    db.engine.begin() as connection:
                connection.execute(text(statement), {"k": audited_key})
        else:
            actor = quick_admin if who == "admin" else Actor.service("cli")
            with pytest.raises(DBAPIError, match="permission denied|append-only"), \
                    session_scope(actor, engine=db.engine) as session:
                session.execute(text(statement), {"k": audited_key})
        assert audit_rows(db) == before, (who, name)


def test_the_app_role_can_read_and_append_but_not_rewrite(db):
    with db.engine.connect() as connection:
        privileges = {(role, privilege) for role, privilege in connection.execute(text(
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_name = 'gemini_key_audit_log' "
            "AND grantee IN ('authenticated', 'service_role', 'anon')"))}
    assert privileges == {(r, p) for r in ("authenticated", "service_role")
                          for p in ("SELECT", "INSERT")}


def test_created_at_cannot_be_left_empty(db):
    with pytest.raises(DBAPIError, match="gemini_audit_created_at_present"), \
            session_scope(Actor.service("cli"), engine=db.engine) as session:
        session.execute(text("INSERT INTO gemini_key_audit_log (action, created_at) "
                             "VALUES ('key_checked', NULL)"))


@pytest.mark.one_server
def test_a_deleted_key_keeps_its_history(db, world):
    delete_key = need("lib.keys.writes", "delete_key")
    key_id = world.add_key("retired")
    with world.session() as session:
        delete_key(session, key_id)
    rows = [r for r in audit_rows(db).values() if r["key_id"] == key_id]
    assert sorted(r["action"] for r in rows) == ["key_added", "key_deleted"]


def test_anonymous_cannot_call_the_user_directory(db):
    with pytest.raises(DBAPIError, match="permission denied"), \
            session_scope(Actor.anonymous(), engine=db.engine) as session:
        session.execute(text("SELECT * FROM public.gemini_user_directory()"))
