"""Health checks of stored keys (lib.health) and the check-keys / pool-status commands."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from db.session import Actor, session_scope
from lib.cli import cli
from lib.pool.health import check_stored_key
from lib.runtime import build_runtime
from tests.support.keys import audit_rows, dump_text
from tests.support.pool import add, corrupt, key_row, next_pacific_midnight, stats_rows


@pytest.fixture
def runtime(db):
    return build_runtime()




def check(runtime, key, base_url, actor=None, **kwargs):
    with session_scope(actor or Actor.service("cli"), engine=runtime.engine) as session:
        return check_stored_key(session, runtime.master_key, key, base_url=base_url, **kwargs)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_good_key_checks_ok_and_the_check_is_audited(db, runtime, fake, admin_actor):
    key_id, plain = add(runtime, "good")
    fake.respond(plain, "ok")

    result = check(runtime, "good", fake.base_url, actor=admin_actor)

    assert (result.ok, result.status, result.http_status, result.action) == (
        True, "ok", 200, None)
    assert fake.requests[-1].headers["x-goog-api-key"] == plain
    assert plain not in fake.requests[-1].path
    [audit] = audit_rows(db, "key_checked")
    assert audit["key_id"] == key_id and audit["user_id"] == admin_actor.user_id
    assert audit["details"]["status"] == "ok"
    assert key_row(db, key_id)["is_active"] is True
    assert stats_rows(db) == []  # a check is not usage


@pytest.mark.parametrize("kind", ["invalid", "permission_denied", "leaked"])
def test_a_check_that_finds_an_invalid_key_deactivates_it(db, runtime, fake, kind):
    key_id, plain = add(runtime, "bad")
    fake.respond(plain, kind)

    result = check(runtime, key_id, fake.base_url)

    assert not result.ok and result.action == "deactivated"
    assert key_row(db, key_id)["is_active"] is False
    [disabled] = audit_rows(db, "key_auto_disabled")
    assert disabled["details"]["trigger"] == "health_check"
    [checked] = audit_rows(db, "key_checked")
    assert checked["details"]["action"] == "deactivated"
    assert plain not in dump_text(db) and plain not in result.message


def test_a_rate_limited_check_cools_the_group_down(db, runtime, fake):
    key_id, plain = add(runtime, "a", group="p")
    mate, _ = add(runtime, "b", group="p")
    fake.respond(plain, "rate_limited_day_project")

    result = check(runtime, key_id, fake.base_url)

    assert result.status == "rate_limited" and "(2 keys)" in result.action
    assert key_row(db, mate)["cooldown_until"] == next_pacific_midnight()
    assert key_row(db, key_id)["is_active"] is True


@pytest.mark.parametrize("trouble", ["network", "slow", "server_error"])
def test_trouble_that_is_not_the_keys_changes_nothing(db, runtime, fake, trouble):
    key_id, plain = add(runtime, "k")
    url = closed_port_url() if trouble == "network" else fake.base_url
    fake.respond(plain, trouble if trouble != "network" else "ok")

    result = check(runtime, key_id, url, timeout=0.5)

    assert not result.ok and result.action is None
    assert result.status in ("network_error", "server_error")
    row = key_row(db, key_id)
    assert row["is_active"] is True and row["cooldown_until"] is None
    assert [a["details"]["status"] for a in audit_rows(db, "key_checked")] == [result.status]


def test_a_key_that_fails_to_decrypt_is_reported_and_deactivated(db, runtime, fake):
    broken, _ = add(runtime, "broken")
    donor, _ = add(runtime, "donor")
    corrupt(db, broken, donor)

    result = check(runtime, broken, fake.base_url)

    assert result.status == "decryption_failed" and result.action == "deactivated"
    assert fake.requests == []  # nothing was sent
    assert key_row(db, broken)["disabled_reason"] == "decryption failed"


# -- CLI ---------------------------------------------------------------------------------------

def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_check_keys_cli_checks_named_keys_and_exits_2_when_one_is_bad(db, runtime, fake,
                                                                    monkeypatch):
    _, good = add(runtime, "good")
    bad_id, bad = add(runtime, "bad")
    add(runtime, "unchecked")
    fake.respond(good, "ok")
    fake.respond(bad, "invalid")
    monkeypatch.setenv("GEMINI_API_BASE_URL", fake.base_url)

    result = run_cli("check-keys", "good", "bad")

    assert result.exit_code == 2
    assert "good" in result.output and "1 of 2 keys OK" in result.output
    assert "-> deactivated" in result.output
    assert good not in result.output and bad not in result.output
    assert key_row(db, bad_id)["is_active"] is False
    assert len(audit_rows(db, "key_checked")) == 2
    assert all(a["details"]["source"] == "cli" for a in audit_rows(db, "key_checked"))


def test_check_keys_cli_all_checks_every_unarchived_key(db, runtime, fake, monkeypatch):
    plains = [add(runtime, f"k{i}")[1] for i in range(3)]
    for plain in plains:
        fake.respond(plain, "ok")
    monkeypatch.setenv("GEMINI_API_BASE_URL", fake.base_url)

    result = run_cli("check-keys", "--all")

    assert result.exit_code == 0, result.output
    assert "3 of 3 keys OK" in result.output
    assert {r.headers["x-goog-api-key"] for r in fake.requests} == set(plains)


@pytest.mark.parametrize("args, message", [
    ((), "name the keys to check, or pass --all"),
    (("--all", "k"), "not both"),
    (("nosuch",), "No key named"),
])
def test_check_keys_cli_refuses_bad_arguments(db, runtime, args, message):
    add(runtime, "k")
    result = CliRunner().invoke(cli, ["check-keys", *args])
    assert result.exit_code == 1 and message in result.output
    assert audit_rows(db, "key_checked") == []


def test_pool_status_cli_shows_states(db, runtime):
    from lib.pool import KeyPool

    add(runtime, "ready-key", priority=5)
    pool = KeyPool(runtime)
    pool.record(pool.acquire(), "invalid", 12.5)

    result = run_cli("pool-status")

    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("ready-key"))
    assert "disabled" in line and "invalid" in line
