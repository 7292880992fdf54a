"""Today's Gemini keys: authorization keys (AQ.…) and standard keys (AIza…), through every path
a key enters, listed masked with their type, picked by the pool and health-checked."""

from __future__ import annotations

import json
import secrets
import uuid
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from db.session import Actor, session_scope
from lib.cli import cli
from lib.crypto.sealed import seal, unseal
from lib.key_format import (
    ApiKeyText,
    InvalidKeyFormat,
    key_kind,
    looks_like_key,
    masked_hint,
    normalise_api_key,
)
from lib.keys.importing import import_keys
from lib.keys.reads import list_keys, resolve_key
from lib.keys.writes import add_key
from lib.pool import KeyPool
from lib.pool.health import check_keys
from lib.redact import redact, remember_secret
from lib.runtime import build_runtime
from tests.support.apptest import button, current_editor_key, page_test, shown
from tests.support.keys import KINDS, fake_key

BODY = "Ab8RxQz" + "x" * 23  # 30 characters after the dot: the shortest authorization key
GOOD_AUTHORIZATION = [
    "AQ." + BODY,
    "AQ.Ab8RN6Lq2-vE_sq0Yd8bKj3TNW_UN0pD2t9hJ4mPz7xWcRf1aLgk9oQ",  # 53 after the dot
    "AQ.Ab8R" + "a" * 20 + ".inner" + ".dots-and_more" * 3,  # inner dots, as seen in the wild
    "AQ." + "A" * 253,  # 256 in all: the longest accepted
]
BAD_AUTHORIZATION = [
    "AQ." + BODY[:-1],  # 29 after the dot
    "AQ." + "a" * 20 + "." + "b" * 9,  # 29 characters once the dot is left out
    "AQ." + BODY + ".",  # trailing dot
    "AQ.." + BODY,  # leading dot
    "AQ." + BODY[:10] + ".." + BODY[10:],  # two dots in a row
    "AQ." + BODY[:10] + "+/" + BODY[10:],  # standard base64, not base64url
    "AQ." + "A" * 254,  # 257 in all
    "aq." + BODY,  # wrong case
    "AQ:" + BODY,  # not a dot
]


@pytest.mark.parametrize("key", GOOD_AUTHORIZATION)
def test_authorization_keys_are_accepted(key):
    assert normalise_api_key(f"  {key}\n") == key
    assert key_kind(key) == "authorization"
    assert looks_like_key(f"my key is {key}, please keep it")


@pytest.mark.parametrize("bad", BAD_AUTHORIZATION)
def test_malformed_authorization_keys_are_refused_naming_both_formats(bad):
    with pytest.raises(InvalidKeyFormat) as info:
        normalise_api_key(bad)
    message = str(info.value)
    assert "'AQ.'" in message and "'AIza'" in message  # both accepted formats named
    # No 6-character window of the submitted text may appear in the message.
    assert not any(bad[i: i + 6] in message for i in range(3, len(bad) - 5))


def test_standard_keys_still_work():
    key = fake_key("standard")
    assert normalise_api_key(key) == key and key_kind(key) == "standard"


@pytest.mark.parametrize("kind", KINDS)
def test_masked_hint_shows_at_most_four_and_four(kind):
    key = normalise_api_key(fake_key(kind))
    hint = masked_hint(key)
    assert hint == f"{key[:4]}…{key[-4:]}"
    assert len(hint.replace("…", "")) == 8 and key[4:-4] not in hint


@pytest.mark.parametrize("kind", KINDS)
def test_redactor_catches_both_families(kind):
    key = fake_key(kind)
    for text in (f"calling with {key}", f"x-goog-api-key: {key}", f"key={key}&alt=sse",
                 f"{key[:-5]} (cut)", f"'{key}'", f"{key}."):
        assert key[:-5] not in redact(text), text
        assert "[REDACTED]" in redact(text)


def odd_shaped_secret() -> str:
    """Neither family (say a future 'XY.' prefix): only exact-match redaction can know it."""
    return f"XY.{secrets.token_hex(8)}-odd-shape-{secrets.token_hex(6)}"


def test_a_remembered_secret_is_redacted_by_exact_match():
    odd = odd_shaped_secret()
    assert odd in redact(f"found {odd} here")
    remember_secret(odd)
    assert redact(f"found {odd} here, and {odd}.") == "found [REDACTED] here, and [REDACTED]."


def test_unseal_remembers_every_key_it_decrypts(db):
    rt = build_runtime(apply_migrations=False)
    odd = odd_shaped_secret()
    key_id = uuid.uuid4()
    sealed = seal(rt.master_key, key_id, ApiKeyText(odd))  # as if stored under older rules
    row = SimpleNamespace(id=key_id, name="legacy", **sealed.columns())
    assert odd in redact(odd)
    assert unseal(rt.master_key, row) == odd
    assert redact(f"calling with {odd}") == "calling with [REDACTED]"


@pytest.fixture
def rt(db):
    return build_runtime(apply_migrations=False)


def test_both_families_enter_through_the_service_and_import_and_are_listed_with_their_type(
        rt):
    standard, authorization = fake_key("standard"), fake_key("authorization")
    pasted = fake_key("authorization")
    with session_scope(Actor.service("cli"), engine=rt.engine) as session:
        add_key(session, rt.master_key, name="old", api_key=standard)
        add_key(session, rt.master_key, name="new", api_key=authorization)
        import_keys(session, rt.master_key, f"pasted,{pasted}\n")
    with session_scope(Actor.service("cli"), engine=rt.engine) as session:
        rows = {r.name: r for r in list_keys(session)}
    assert {name: (r.kind, r.masked_hint) for name, r in rows.items()} == {
        "old": ("standard", f"AIza…{standard[-4:]}"),
        "new": ("authorization", f"AQ.{authorization[3]}…{authorization[-4:]}"),
        "pasted": ("authorization", f"AQ.{pasted[3]}…{pasted[-4:]}")}


def test_cli_add_key_import_keys_and_list_keys_take_both_families(rt, tmp_path):
    runner = CliRunner()
    authorization, standard = fake_key("authorization"), fake_key("standard")
    result = runner.invoke(cli, ["add-key", "--name", "cli-new"], input=authorization + "\n",
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"cli-old,{standard}\n{fake_key('authorization')}\n")
    result = runner.invoke(cli, ["import-keys", str(keyfile)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(cli, ["list-keys", "--format", "json"]).output)
    kinds = {row["name"]: row["kind"] for row in listed}
    assert kinds["cli-new"] == "authorization" and kinds["cli-old"] == "standard"
    assert sorted(kinds.values()) == ["authorization", "authorization", "standard"]
    table = runner.invoke(cli, ["list-keys"]).output
    assert "kind" in table.splitlines()[0] and "authorization" in table
    assert authorization not in table and standard not in table


@pytest.mark.one_server
def test_keys_page_adds_an_authorization_key_and_shows_its_type(db, admin_actor):
    key = fake_key("authorization")
    at = page_test("keys", admin_actor).run()
    generation = current_editor_key(at)[len("keys_editor_"):]
    at.text_input(key=f"keys_add_name_{generation}").input("from-ai-studio")
    at.text_input(key=f"keys_add_key_{generation}").input(key)
    button(at, "Add key").click().run()
    assert not at.exception and not at.error
    assert shown(at.success[0].value) == f"Added from-ai-studio (AQ.{key[3]}…{key[-4:]})."
    [table] = [d for d in at.dataframe if "select" in d.value.columns]
    assert list(table.value["type"]) == ["authorization"]
    assert list(table.value["key"]) == [f"AQ.{key[3]}…{key[-4:]}"]


@pytest.mark.one_server
def test_keys_page_add_many_previews_both_families(db, admin_actor):
    at = page_test("keys", admin_actor).run()
    [box] = [t for t in at.text_area if t.label == "Keys"]
    box.input(f"a,{fake_key('authorization')}\nb,{fake_key('standard')}\nc,AQ.tooshort\n")
    button(at, "Preview").click().run()
    [preview] = [d for d in at.dataframe if "result" in d.value.columns]
    results = list(preview.value["result"])
    assert results[:2] == ["will be added", "will be added"]
    assert results[2].startswith("refused: doesn't look like a Gemini API key")
    button(at, "Add the keys").click().run()
    assert shown(at.success[0].value) == "Added 2 key(s); skipped 1 refused line(s)."


def test_the_pool_hands_out_and_health_checks_both_families(rt, fake):
    keys = {kind: fake_key(kind) for kind in KINDS}
    with session_scope(Actor.service("cli"), engine=rt.engine) as session:
        ids = [add_key(session, rt.master_key, name=kind, api_key=key, priority=9).id
               for kind, key in keys.items()]
    for key in keys.values():
        fake.respond(key, "ok")
    pool = KeyPool(rt)
    try:
        handed_out = {pool.acquire().api_key for _ in range(2)}
    finally:
        pool.close()
    assert handed_out == set(keys.values())
    results = check_keys(ids, master=rt.master_key, actor=Actor.service("cli"),
                         engine=rt.engine, base_url=fake.base_url)
    assert [r.status for r in results] == ["ok", "ok"]
    sent = {r.headers["x-goog-api-key"] for r in fake.requests}
    assert sent == set(keys.values())  # in the header, as sent by the health check
    with session_scope(Actor.service("cli"), engine=rt.engine) as session:
        assert resolve_key(session, "authorization").is_active is True
