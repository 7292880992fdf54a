"""Events fire from the real flows, after their transaction commits: the pool disabling a key
the fake Gemini rejects, a per-day 429 cooling a group (and its tier), a master-key rotation
through the CLI in its own process; a change that rolls back sends nothing; no payload holds
a key, a token or a hash."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.crypto.master_key import generate_master_key_b64
from lib.keys.writes import add_key, apply_cooldown, auto_disable
from lib.notify import delivery, quota_near_limit
from lib.pool import KeyPool
from lib.quotas.writes import set_quota
from lib.runtime import build_runtime
from tests.support.databases import REPO_ROOT
from tests.support.keys import KINDS, fake_key
from tests.support.pool import call_fake, key_row


@pytest.fixture
def runtime(db, webhooks):
    runtime = build_runtime()  # configures this process's notifier from the environment
    assert delivery.current() is not None
    return runtime


def add(runtime, name: str, *, kind: str = "standard", priority: int = 1,
        group: str | None = None):
    api_key = fake_key(kind)
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        row = add_key(session, runtime.master_key, name=name, api_key=api_key,
                      priority=priority, group_label=group)
        return row.id, api_key


def settle() -> None:
    """Everything this process queued has been handled (sent, failed or dropped)."""
    assert delivery.current().flush(30)


def secrets_of(db, plaintexts: list[str]) -> list[str]:
    """The plaintexts and everything stored that derives from them (ciphertext, hash)."""
    with db.engine.connect() as connection:
        stored = connection.execute(text(
            "SELECT fingerprint, encrypted_key, encryption_iv, encryption_tag"
            " FROM gemini_api_keys")).all()
    return plaintexts + [value for row in stored for value in row if value]


def assert_no_leak(receiver, secrets: list[str]) -> None:
    bodies = [d.body.decode() for d in receiver.received]
    assert bodies
    for secret in secrets:
        assert not any(secret in body for body in bodies), "a secret reached a webhook"


def test_the_pool_disabling_a_rejected_key_notifies(db, runtime, webhooks, fake):
    bad_id, bad = add(runtime, "bad", kind="authorization", priority=9, group="proj-a")
    _, good = add(runtime, "good", kind="standard", group="proj-a")
    fake.respond(bad, "permission_denied")  # Google's 403 body quotes the key itself
    pool = KeyPool(runtime)
    lease = pool.acquire()
    assert lease.key_id == bad_id

    pool.record(lease, "failure", 9, error=call_fake(fake.base_url, bad))
    webhooks.wait_for(1, kind="key.auto_disabled")
    webhooks.wait_for(1, kind="pool.few_usable_keys")
    settle()

    [disabled] = webhooks.events("key.auto_disabled")
    assert disabled["data"]["key_name"] == "bad" and disabled["data"]["group"] == "proj-a"
    assert disabled["data"]["key_hint"] == key_row(db, bad_id)["masked_hint"]
    assert "403" in disabled["data"]["reason"]
    [few] = webhooks.events("pool.few_usable_keys")
    assert few["data"] == {"usable": 1, "minimum": 2, "live": 2}
    assert_no_leak(webhooks, secrets_of(db, [bad, good]))


def test_a_per_day_429_notifies_the_group_and_its_tier(db, runtime, webhooks, fake,
                                                        monkeypatch):
    hit_id, hit = add(runtime, "hit", priority=9, group="project-1")
    add(runtime, "mate", kind="authorization", priority=9, group="project-1")
    add(runtime, "other", priority=1, group="project-2")
    fake.respond(hit, "rate_limited_day_project")  # a per-day 429 naming no model
    pool = KeyPool(runtime)
    lease = pool.acquire()
    assert lease.key_id == hit_id

    pool.record(lease, "failure", 20, error=call_fake(fake.base_url, hit))
    webhooks.wait_for(1, kind="group.cooling_down")
    webhooks.wait_for(1, kind="tier.cooling_down")
    # The same group hitting its limit again changes nothing, so says nothing.
    until = key_row(db, hit_id)["cooldown_until"].replace(tzinfo=UTC)
    with session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        assert apply_cooldown(session, hit_id, until=until, group_label="project-1",
                              whole_group=True, scope="day") == []
    settle()

    kinds = sorted(e["event"] for e in webhooks.events())
    assert kinds == ["group.cooling_down", "pool.few_usable_keys", "tier.cooling_down"]
    [group] = webhooks.events("group.cooling_down")
    assert group["data"]["group"] == "project-1" and group["data"]["keys"] == 2
    assert group["data"]["scope"] == "day" and group["data"]["caused_by_key_name"] == "hit"
    [tier] = webhooks.events("tier.cooling_down")
    assert tier["data"]["priority"] == 9 and tier["data"]["keys"] == 2
    assert_no_leak(webhooks, secrets_of(db, [hit]))


def test_a_per_day_429_for_one_model_notifies_that_model_only(db, runtime, webhooks, fake):
    hit_id, hit = add(runtime, "hit", priority=9, group="project-1")
    add(runtime, "mate", kind="authorization", priority=5, group="project-1")
    fake.respond(hit, "rate_limited_day")  # Google's body names the model
    pool = KeyPool(runtime)
    lease = pool.acquire("gemini-2.0-flash")
    assert lease.key_id == hit_id

    pool.record(lease, "failure", 20, error=call_fake(fake.base_url, hit, "gemini-2.0-flash"))
    webhooks.wait_for(1, kind="group.cooling_down")
    settle()

    [group] = webhooks.events("group.cooling_down")
    assert group["data"]["group"] == "project-1" and group["data"]["model"] == "gemini-2.0-flash"
    assert group["data"]["scope"] == "day" and group["data"]["caused_by_key_name"] == "hit"
    assert "its other models stay usable" in group["summary"]
    assert webhooks.events("tier.cooling_down") == []  # the keys still serve other models
    assert_no_leak(webhooks, secrets_of(db, [hit]))


def test_the_pool_announces_a_budget_at_90_percent(db, runtime, webhooks):
    add(runtime, "budgeted", group="project-1")
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        set_quota(session, group_label="project-1", model="gemini-2.5-pro", rpd=10)
    pool = KeyPool(runtime)
    for _ in range(8):
        pool.record(pool.acquire("gemini-2.5-pro"), "success", 5)
    pool.release_expired()  # the sweep's schedule (every 30 s), run now: 8 of 10 is quiet
    pool.record(pool.acquire("gemini-2.5-pro"), "success", 5)
    pool.release_expired()  # 9 of 10
    webhooks.wait_for(1, kind="quota.near_limit")
    settle()

    [event] = webhooks.events("quota.near_limit")
    assert event["data"]["group"] == "project-1" and event["data"]["model"] == "gemini-2.5-pro"
    assert event["data"]["limit_name"] == "rpd"
    assert (event["data"]["used"], event["data"]["limit"]) == (9, 10)


def test_a_single_key_cooling_inside_a_busy_tier_is_not_news(db, runtime, webhooks,
                                                             monkeypatch):
    monkeypatch.setenv("GEMINI_KEYS_MIN_USABLE_KEYS", "1")
    runtime = build_runtime()
    busy, _ = add(runtime, "busy", priority=5)
    add(runtime, "spare", priority=5)
    with session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        apply_cooldown(session, busy, until=datetime.now(UTC) + timedelta(seconds=30),
                       group_label=None, whole_group=False)
    settle()
    assert webhooks.received == []


def doomed_changes(session, key_id) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    assert auto_disable(session, key_id, reason="invalid (test)")
    assert apply_cooldown(session, key_id, until=until, group_label="g", whole_group=True,
                          scope="day")


@pytest.mark.parametrize("where", ["transaction", "savepoint"])
def test_a_change_that_rolls_back_sends_nothing(db, runtime, webhooks, where):
    key_id, _ = add(runtime, "doomed", priority=9, group="g")
    add(runtime, "mate", priority=9, group="g")

    if where == "transaction":
        with pytest.raises(RuntimeError), \
                session_scope(Actor.service("pool"), engine=runtime.engine) as session:
            doomed_changes(session, key_id)
            raise RuntimeError("rolled back")
    else:  # the savepoint rolls back, the transaction around it commits
        with session_scope(Actor.service("pool"), engine=runtime.engine) as session, \
                contextlib.suppress(RuntimeError), session.begin_nested():
            doomed_changes(session, key_id)
            raise RuntimeError("savepoint rolled back")
    settle()
    assert webhooks.received == []
    assert key_row(db, key_id)["is_active"] is True and not key_row(db, key_id)["cooldown_until"]

    with session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        assert auto_disable(session, key_id, reason="invalid (test)")
    webhooks.wait_for(1, kind="key.auto_disabled")  # the same change, committed, is told


def test_a_released_savepoint_waits_for_the_outer_commit(db, runtime, webhooks):
    key_id, _ = add(runtime, "k", priority=9, group="g")
    with pytest.raises(RuntimeError), \
            session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        with session.begin_nested():
            doomed_changes(session, key_id)
        raise RuntimeError("the outer transaction rolls back after the savepoint")
    settle()
    assert webhooks.received == []

    with session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        with session.begin_nested():
            doomed_changes(session, key_id)
        assert webhooks.received == []  # released, not committed: nothing yet
    settle()
    assert {e["event"] for e in webhooks.events()} == {
        "key.auto_disabled", "group.cooling_down", "pool.few_usable_keys"}


def test_master_key_rotation_through_the_cli_notifies_from_its_process(db, runtime,
                                                                      webhooks):
    plaintexts = [add(runtime, f"k-{kind}", kind=kind)[1] for kind in KINDS]
    new_b64 = generate_master_key_b64()
    result = subprocess.run([sys.executable, "-m", "lib.cli", "rotate-master-key"],
                            cwd=REPO_ROOT, env={**os.environ, "GEMINI_KEYS_NEW_MASTER_KEY":
                                                new_b64},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    [got] = webhooks.wait_for(1, kind="master_key.rotated")  # sent before the CLI exited
    payload = got.json()
    assert payload["data"] == {"rotated": 2, "skipped_deleted": 0, "old_version": 1,
                               "new_version": 2, "source": "cli"}
    assert "webhook master_key.rotated" in result.stderr and "s3cr3tpathpart" not in (
        result.stderr + result.stdout)
    new_key = base64.b64decode(new_b64)
    assert_no_leak(webhooks, secrets_of(db, plaintexts) + [new_b64, new_key.hex()])


def test_quota_near_limit_speaks_from_90_percent_once_per_period(db, runtime, webhooks):
    resets = datetime(2099, 1, 1, 8, 0, tzinfo=UTC)
    for used in (1349, 1350, 1400, 1500):
        quota_near_limit("proj-a", "gemini-2.0-flash", "RPD", used, 1500, resets)
    quota_near_limit("proj-a", "gemini-2.0-flash", "RPD", 1450, 1500,
                     resets + timedelta(days=1))  # the next day's period
    settle()

    events = webhooks.events("quota.near_limit")
    assert [(e["data"]["used"], e["data"]["resets_at"]) for e in events] == [
        (1350, "2099-01-01T08:00:00Z"), (1450, "2099-01-02T08:00:00Z")]


def test_quota_near_limit_with_a_session_waits_for_its_commit(db, runtime, webhooks):
    resets = datetime(2099, 1, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(RuntimeError), \
            session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        quota_near_limit("g", "m", "RPM", 9, 10, resets, session=session)
        raise RuntimeError("rolled back")
    with session_scope(Actor.service("pool"), engine=runtime.engine) as session:
        quota_near_limit("g", "m", "TPM", 95, 100, resets, session=session)
    settle()
    assert [e["data"]["limit_name"] for e in webhooks.events()] == ["TPM"]
