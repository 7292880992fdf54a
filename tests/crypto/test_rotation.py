"""Master-key rotation: nothing lost, nothing half-done, the old key refused afterwards."""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import stat
import subprocess
import sys
import threading
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, text
from sqlalchemy.exc import OperationalError

from db.models import ApiKey
from db.session import Actor, session_scope
from lib.cli import cli
from lib.crypto.master_key import verify_master_key
from lib.crypto.sealed import (
    KeyDecryptionError,
    MasterKey,
    MasterKeyMismatch,
    fingerprint,
    generate_master_key_b64,
    seal,
    unseal,
    verify_check_value,
)
from lib.key_format import ApiKeyText
from lib.keys.rotation import rotate_master_key
from lib.keys.writes import add_key, delete_key
from lib.runtime import build_runtime
from tests.support.databases import REPO_ROOT, TEST_MASTER_KEY, make_user
from tests.support.keys import fake_key


def master_from(text_b64: str, version: int = 1) -> MasterKey:
    return MasterKey.from_base64(text_b64, version)


def seed(db, master: MasterKey, count: int, *, tombstones: int = 0) -> dict[uuid.UUID, str]:
    """`count` live keys encrypted under `master` (bulk insert) plus wiped tombstones."""
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        verify_master_key(session, master)  # records the check value, as a first start does
    plaintexts, rows, gone = {}, [], []
    for i in range(count):
        key_id, plaintext = uuid.uuid4(), fake_key()
        plaintexts[key_id] = plaintext
        rows.append({"id": key_id, "name": f"key-{i:05d}",
                     **seal(master, key_id, ApiKeyText(plaintext)).columns()})
    for i in range(tombstones):
        gone.append({"id": uuid.uuid4(), "name": f"gone-{i}", "encrypted_key": "",
                     "encryption_iv": "", "encryption_tag": "", "master_key_version": 1,
                     "fingerprint": None, "masked_hint": "…", "is_active": False,
                     "deleted_at": dt.datetime(2026, 1, 1)})
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        for batch in (rows, gone):
            if batch:
                session.execute(insert(ApiKey), batch)
    return plaintexts


def stored_keys(db) -> list:
    with db.engine.connect() as connection:
        return connection.execute(text(
            "SELECT id, name, encrypted_key, encryption_iv, encryption_tag, master_key_version,"
            " fingerprint, deleted_at FROM gemini_api_keys ORDER BY id")).all()


def snapshot(db) -> tuple:
    with db.engine.connect() as connection:
        check = connection.execute(text(
            "SELECT master_key_version, check_value, updated_at FROM gemini_master_key_check"
        )).all()
        audit = connection.scalar(text("SELECT count(*) FROM gemini_key_audit_log"))
    return stored_keys(db), check, audit


def decrypts_all(db, master: MasterKey, plaintexts: dict[uuid.UUID, str]) -> bool:
    """True when every live key decrypts under `master` to its original plaintext."""
    live = [row for row in stored_keys(db) if row.deleted_at is None]
    assert {row.id for row in live} == set(plaintexts)
    for row in live:
        try:
            plain = unseal(master, row)
        except KeyDecryptionError:
            return False
        assert plain == plaintexts[row.id]
    return True


def rotation_audits(db) -> list[dict]:
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text(
            "SELECT user_id, details, details::text AS raw FROM gemini_key_audit_log"
            " WHERE action = 'master_key_rotated'"))]


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def test_rotation_round_trip_at_1000_keys(db):
    old = master_from(TEST_MASTER_KEY)
    plaintexts = seed(db, old, 1000, tombstones=3)
    tombstones_before = [r for r in stored_keys(db) if r.deleted_at is not None]
    new_b64 = generate_master_key_b64()
    seen = []
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        result = rotate_master_key(session, old, base64.b64decode(new_b64),
                                   progress=lambda done, total: seen.append((done, total)))
    assert (result.rotated, result.skipped_deleted) == (1000, 3)
    assert (result.old_version, result.new_version) == (1, 2)
    assert seen[0] == (0, 1000) and seen[-1] == (1000, 1000) and len(seen) > 2

    new = master_from(new_b64, 2)
    assert decrypts_all(db, new, plaintexts)
    assert not decrypts_all(db, master_from(TEST_MASTER_KEY, 2), plaintexts)
    rows = stored_keys(db)
    assert all(r.fingerprint == fingerprint(new, ApiKeyText(plaintexts[r.id]))
               for r in rows if r.deleted_at is None)
    assert [r for r in rows if r.deleted_at is not None] == tombstones_before
    with db.engine.connect() as connection:
        version, check = connection.execute(text(
            "SELECT master_key_version, check_value FROM gemini_master_key_check")).one()
    assert version == 2
    verify_check_value(new, check)
    with pytest.raises(MasterKeyMismatch):
        verify_check_value(master_from(TEST_MASTER_KEY, 2), check)
    [audit] = rotation_audits(db)
    assert {k: audit["details"][k] for k in ("count", "old_version", "new_version")} == {
        "count": 1000, "old_version": 1, "new_version": 2}
    assert new_b64 not in audit["raw"] and TEST_MASTER_KEY not in audit["raw"]


def test_cli_rotation_with_given_key_prints_no_key_and_records_the_actor(db):
    admin = make_user(db, "ops@example.com", admin=True)
    plaintexts = seed(db, master_from(TEST_MASTER_KEY), 5)
    new_b64 = generate_master_key_b64()
    result = run_cli("rotate-master-key", "--actor", "ops@example.com",
                     env={"GEMINI_KEYS_NEW_MASTER_KEY": new_b64})
    assert result.exit_code == 0, result.output
    assert "rotated from version 1 to 2: 5 keys re-encrypted" in result.output
    assert "re-encrypted 5/5 keys" in result.output  # progress (stderr, mixed in here)
    assert new_b64 not in result.output and TEST_MASTER_KEY not in result.output
    [audit] = rotation_audits(db)
    assert audit["user_id"] == admin.user_id
    assert audit["details"]["actor_email"] == "ops@example.com"
    assert decrypts_all(db, master_from(new_b64, 2), plaintexts)


def test_cli_rotation_generates_a_0600_key_file_and_prints_only_its_path(db, tmp_path):
    plaintexts = seed(db, master_from(TEST_MASTER_KEY), 3)
    target = tmp_path / "secrets" / "new.key"
    result = run_cli("rotate-master-key", "--new-key-file", str(target))
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    new_b64 = target.read_text().strip()
    assert new_b64 not in result.output
    assert decrypts_all(db, master_from(new_b64, 2), plaintexts)
    # The app starts with the new key at the stored version.
    runtime = build_runtime(env={**os.environ, "GEMINI_KEYS_MASTER_KEY": new_b64})
    assert runtime.master_key.version == 2


def test_rotations_chain_and_tombstoned_keys_stay_wiped(db):
    old = master_from(TEST_MASTER_KEY)
    plaintexts = seed(db, old, 4)
    victim = next(iter(plaintexts))
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        delete_key(session, victim)
    del plaintexts[victim]
    first, second = generate_master_key_b64(), generate_master_key_b64()
    assert run_cli("rotate-master-key", env={"GEMINI_KEYS_NEW_MASTER_KEY": first}).exit_code == 0
    result = run_cli("rotate-master-key", env={"GEMINI_KEYS_MASTER_KEY": first,
                                               "GEMINI_KEYS_NEW_MASTER_KEY": second})
    assert result.exit_code == 0, result.output
    assert "from version 2 to 3: 3 keys re-encrypted (1 deleted keys skipped)" in result.output
    assert decrypts_all(db, master_from(second, 3), plaintexts)
    [gone] = [r for r in stored_keys(db) if r.id == victim]
    assert (gone.encrypted_key, gone.fingerprint) == ("", None)


@pytest.mark.parametrize("wrong", ["other key", "old key after a rotation"])
def test_rotation_with_a_wrong_current_key_changes_nothing(db, tmp_path, wrong):
    plaintexts = seed(db, master_from(TEST_MASTER_KEY), 5)
    current = TEST_MASTER_KEY
    if wrong == "old key after a rotation":
        current = generate_master_key_b64()
        run_cli("rotate-master-key", env={"GEMINI_KEYS_NEW_MASTER_KEY": current})
        plaintexts_master = master_from(current, 2)
        wrong_key = TEST_MASTER_KEY
    else:
        plaintexts_master = master_from(TEST_MASTER_KEY)
        wrong_key = generate_master_key_b64()
    before = snapshot(db)
    target = tmp_path / "never.key"
    result = run_cli("rotate-master-key", "--new-key-file", str(target),
                     env={"GEMINI_KEYS_MASTER_KEY": wrong_key})
    assert result.exit_code == 1
    assert "rotation refused, nothing changed" in result.output
    assert "cannot decrypt the keys stored in this database" in result.output
    assert snapshot(db) == before
    assert not target.exists()
    assert decrypts_all(db, plaintexts_master, plaintexts)


def test_rotation_without_a_check_row_refuses_a_key_that_cannot_decrypt(db):
    plaintexts = seed(db, master_from(TEST_MASTER_KEY), 3)
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM gemini_master_key_check"))
    before = snapshot(db)
    result = run_cli("rotate-master-key",
                     env={"GEMINI_KEYS_MASTER_KEY": generate_master_key_b64(),
                          "GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64()})
    assert result.exit_code == 1 and "rotation refused, nothing changed" in result.output
    assert snapshot(db) == before
    assert decrypts_all(db, master_from(TEST_MASTER_KEY), plaintexts)


@pytest.mark.parametrize(("new_value", "message"), [
    ("changeme", "placeholder"),
    (base64.b64encode(os.urandom(16)).decode(), "decodes to 16 bytes"),
    (TEST_MASTER_KEY, "same as the current one"),
], ids=["placeholder", "16 bytes", "the current key"])
def test_bad_new_master_key_is_refused_and_nothing_changes(db, new_value, message):
    seed(db, master_from(TEST_MASTER_KEY), 2)
    before = snapshot(db)
    result = run_cli("rotate-master-key", env={"GEMINI_KEYS_NEW_MASTER_KEY": new_value})
    assert result.exit_code == 1 and message in result.output
    assert new_value not in result.output
    assert snapshot(db) == before


def test_old_master_key_is_refused_at_start_up_after_rotation(db):
    seed(db, master_from(TEST_MASTER_KEY), 2)
    new_b64 = generate_master_key_b64()
    assert run_cli("rotate-master-key",
                   env={"GEMINI_KEYS_NEW_MASTER_KEY": new_b64}).exit_code == 0
    with pytest.raises(MasterKeyMismatch) as info:
        build_runtime()  # the environment still holds the old key
    message = str(info.value)
    assert "master key was rotated" in message and "Restart with the NEW key" in message
    assert TEST_MASTER_KEY not in message and new_b64 not in message


def test_a_process_with_the_old_key_cannot_add_keys_after_rotation(db):
    old = master_from(TEST_MASTER_KEY)
    seed(db, old, 1)
    assert run_cli("rotate-master-key",
                   env={"GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64()}).exit_code == 0
    key = fake_key()
    with pytest.raises(OperationalError, match="the master key was rotated") as info, \
            session_scope(Actor.service("cli"), engine=db.engine) as session:
        add_key(session, old, name="late", api_key=key)
    assert key not in str(info.value)


def test_an_add_racing_a_rotation_waits_then_is_refused(db):
    old = master_from(TEST_MASTER_KEY)
    plaintexts = seed(db, old, 3)
    outcome: dict[str, BaseException | None] = {}

    def late_add() -> None:
        try:
            with session_scope(Actor.service("cli"), engine=db.engine) as session:
                add_key(session, old, name="racer", api_key=fake_key())
            outcome["error"] = None
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            outcome["error"] = error

    def waiters() -> int:
        with db.engine.connect() as connection:
            return connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"))

    thread = threading.Thread(target=late_add)

    def progress(done: int, total: int) -> None:
        if done == 0:  # the rotation holds its locks now
            thread.start()
            for _ in range(500):  # the add blocks on the check row's lock
                if waiters():
                    return
                threading.Event().wait(0.02)
            raise AssertionError("the concurrent add never waited for the rotation")

    new_b64 = generate_master_key_b64()
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        rotate_master_key(session, old, base64.b64decode(new_b64), progress=progress)
    thread.join(timeout=30)
    assert isinstance(outcome["error"], OperationalError)
    assert "master key was rotated" in str(outcome["error"])
    assert decrypts_all(db, master_from(new_b64, 2), plaintexts)  # and no stray v1 row


@pytest.mark.one_server
def test_rotation_killed_midway_leaves_every_key_on_the_old_master_key(db, tmp_path):
    old = master_from(TEST_MASTER_KEY)
    plaintexts = seed(db, old, 1000)
    before = snapshot(db)
    env = {**os.environ, "GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64(),
           "GEMINI_KEYS_ROTATION_TEST_DELAY": "0.3"}
    process = subprocess.Popen([sys.executable, "-m", "lib.cli", "rotate-master-key"],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    progress_lines = []
    try:
        for line in process.stderr:
            progress_lines.append(line.strip())
            if line.startswith("re-encrypted 500/1000"):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=30)
    assert progress_lines[-1] == "re-encrypted 500/1000 keys", progress_lines
    assert process.returncode == -signal.SIGKILL
    # The killed client's transaction is rolled back by the server: nothing changed.
    assert snapshot(db) == before
    assert decrypts_all(db, old, plaintexts)
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        assert verify_master_key(session, old).version == 1
    # And a new rotation then goes through.
    result = run_cli("rotate-master-key", env={"GEMINI_KEYS_NEW_MASTER_KEY": env[
        "GEMINI_KEYS_NEW_MASTER_KEY"]})
    assert result.exit_code == 0, result.output
    assert decrypts_all(db, master_from(env["GEMINI_KEYS_NEW_MASTER_KEY"], 2), plaintexts)


def test_decrypting_under_a_newer_version_tells_a_stale_process_to_restart(db):
    from lib.keys.reads import reveal_key

    old = master_from(TEST_MASTER_KEY)
    seed(db, old, 1)
    assert run_cli("rotate-master-key",
                   env={"GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64()}).exit_code == 0
    with session_scope(Actor.service("cli"), engine=db.engine) as session:
        key = session.scalars(select(ApiKey)).one()
        with pytest.raises(MasterKeyMismatch, match="Restart with the NEW key"):
            reveal_key(old, key)


def test_a_pool_running_through_a_rotation_disables_no_key(db):
    from lib.pool import KeyPool

    old = master_from(TEST_MASTER_KEY)
    seed(db, old, 3)
    pool = KeyPool(engine=db.engine, master_key=old)  # started before the rotation
    assert run_cli("rotate-master-key",
                   env={"GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64()}).exit_code == 0
    for _ in range(3):
        with pytest.raises(MasterKeyMismatch):
            pool.acquire()
    with db.engine.connect() as connection:
        assert connection.scalar(text(
            "SELECT count(*) FROM gemini_api_keys WHERE is_active")) == 3


def test_cli_commands_with_the_old_key_stop_and_explain_the_rotation(db):
    seed(db, master_from(TEST_MASTER_KEY), 1)
    assert run_cli("rotate-master-key",
                   env={"GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64()}).exit_code == 0
    key = fake_key()
    result = run_cli("add-key", "--name", "late", input=key + "\n")
    assert result.exit_code == 1
    assert "master key was rotated" in result.output and key not in result.output


def test_a_health_check_after_a_rotation_disables_no_key(db):
    from lib.pool.health import check_stored_key

    old = master_from(TEST_MASTER_KEY)
    seed(db, old, 1)
    assert run_cli("rotate-master-key",
                   env={"GEMINI_KEYS_NEW_MASTER_KEY": generate_master_key_b64()}).exit_code == 0
    with pytest.raises(MasterKeyMismatch), \
            session_scope(Actor.service("cli"), engine=db.engine) as session:
        check_stored_key(session, old, session.scalars(select(ApiKey)).one(),
                         base_url="http://127.0.0.1:9")
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM gemini_api_keys WHERE is_active")) == 1
