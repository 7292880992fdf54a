"""Master key fails closed: a process with the wrong key stops and disables nothing; a
tampered row is reported and skipped without stopping the pool or a health-check batch."""

from __future__ import annotations

import os

import pytest

from db.session import Actor
from lib.crypto.sealed import MasterKey, MasterKeyMismatch
from lib.pool import KeyPool
from lib.pool.health import check_keys
from tests.support.keys import audit_rows
from tests.support.pool import add, key_row, set_columns


def wrong_key_pool(runtime) -> KeyPool:
    return KeyPool(engine=runtime.engine, master_key=MasterKey(os.urandom(32)))


def all_active(db, key_ids) -> bool:
    return all(key_row(db, k)["is_active"] for k in key_ids)


def test_a_process_with_the_wrong_master_key_stops_and_disables_nothing(db, runtime):
    keys = [add(runtime, f"k{i}")[0] for i in range(4)]
    with pytest.raises(MasterKeyMismatch):
        wrong_key_pool(runtime).acquire()
    assert all_active(db, keys) and audit_rows(db, "key_auto_disabled") == []


def test_a_health_check_batch_with_the_wrong_master_key_stops_and_disables_nothing(
        db, runtime, fake):
    keys = [add(runtime, f"k{i}")[0] for i in range(3)]
    with pytest.raises(MasterKeyMismatch):
        check_keys(keys, master=MasterKey(os.urandom(32)), actor=Actor.service("cli"),
                   engine=runtime.engine, base_url=fake.base_url, workers=1)
    assert all_active(db, keys) and audit_rows(db, "key_auto_disabled") == []


@pytest.mark.parametrize("forged_version", [0, 7])
def test_a_row_with_a_tampered_master_key_version_is_reported_and_skipped(db, runtime, pool,
                                                                          forged_version):
    tampered, _ = add(runtime, "tampered", priority=9)
    good, good_plain = add(runtime, "good", priority=1)
    set_columns(db, tampered, "master_key_version = :v", v=forged_version)

    assert pool.acquire().api_key == good_plain

    assert key_row(db, tampered)["is_active"] is False
    [audit] = audit_rows(db, "key_auto_disabled")
    assert audit["key_id"] == tampered and audit["details"]["reason"] == "decryption failed"
    assert f"version {forged_version}" in audit["details"]["detail"]


def test_a_health_check_batch_reports_a_tampered_row_and_checks_the_rest(db, runtime, fake):
    tampered, _ = add(runtime, "tampered")
    good, plain = add(runtime, "good")
    fake.respond(plain, "ok")
    set_columns(db, tampered, "master_key_version = 7")

    results = check_keys([tampered, good], master=runtime.master_key,
                         actor=Actor.service("cli"), engine=runtime.engine,
                         base_url=fake.base_url, workers=2)

    assert [r.status for r in results] == ["decryption_failed", "ok"]
    assert "tampered row" in results[0].message
    assert key_row(db, good)["is_active"] is True
