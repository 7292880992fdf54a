"""Leak scan: keys added through every path appear nowhere — tables, logs, CLI output, page."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

import lib.logging_setup as logging_setup
from db.session import session_scope
from lib.cli import cli
from lib.errors import InvalidInput
from lib.key_format import key_kind
from lib.keys.importing import import_keys
from lib.keys.writes import add_key
from lib.runtime import build_runtime
from tests.support.apptest import button, current_editor_key, rendered_text, sign_in_as
from tests.support.keys import KINDS, every_table_as_text, fake_key

pytestmark = pytest.mark.one_server


@pytest.fixture
def raw_logs(caplog, monkeypatch):
    """Every record at DEBUG (SQL statements and their parameters too), NOT redacted: the
    redaction in lib.logging_setup is a second line of defence; this proves the first one,
    that nothing logs a key in the first place."""
    monkeypatch.setattr(logging_setup, "redact_record", lambda record: record)
    monkeypatch.setattr(logging_setup.RedactingFilter, "filter", lambda self, record: True)
    monkeypatch.setenv("GEMINI_KEYS_LOG_LEVEL", "DEBUG")  # every runtime keeps DEBUG
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=logging_setup.LOGGER_NAME)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    return caplog


def log_text(caplog) -> str:
    parts = []
    for record in caplog.records:
        parts.append(f"{record.name} {record.getMessage()} {record.args!r}")
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def test_no_plaintext_anywhere_after_adding_keys_through_every_path(db, admin_actor, tmp_path,
                                                                   raw_logs):
    rt = build_runtime(apply_migrations=False)
    added: list[str] = []
    outputs: list[str] = []

    def new() -> str:
        added.append(fake_key(KINDS[len(added) % len(KINDS)]))  # both families, in turn
        return added[-1]

    # 1. the service, one key and a bulk import
    with session_scope(admin_actor, engine=rt.engine) as session:
        add_key(session, rt.master_key, name="service", api_key=new())
        import_keys(session, rt.master_key, f"bulk-1,{new()}\n{new()}\n")
    with pytest.raises(InvalidInput, match="already stored") as refused, \
            session_scope(admin_actor, engine=rt.engine) as session:  # a refused duplicate
        add_key(session, rt.master_key, name="dup", api_key=added[0])
    outputs.append(str(refused.value))

    # 2. the CLI: add-key, import-keys, the other commands, refusals
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> None:
        result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
        outputs.append(result.output)

    run("add-key", "--name", "cli", input=new() + "\n")
    run("add-key", "--name", "cli-dup", input=added[-1] + "\n")
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"file-1,{new()}\nfile-2,{new()}\nbad,{added[0]}\n")
    run("import-keys", str(keyfile))
    run("import-keys", str(keyfile), "--skip-refused")
    run("set-active", added[0], "false")  # the key itself given as the name
    for output_format in ("table", "csv", "json"):
        run("list-keys", "--all", "--format", output_format)

    # 3. the page: add one, add many, then the table
    at = AppTest.from_file("../../pages/keys.py", default_timeout=30)
    sign_in_as(at, admin_actor)
    at.run()
    at.text_input(key=f"keys_add_name_{current_editor_key(at)[12:]}").input("page-one")
    at.text_input(key=f"keys_add_key_{current_editor_key(at)[12:]}").input(new())
    button(at, "Add key").click().run()
    outputs.append(rendered_text(at, include_inputs=True))
    [box] = [t for t in at.text_area if t.label == "Keys"]
    paste = f"page-many-1,{new()}\n{new()}\nbad-line,AIzaShort\n"
    box.input(paste)
    button(at, "Preview").click().run()
    # Until "Add" the paste box holds what was pasted; everything else must not show it.
    shown = rendered_text(at, include_inputs=True)
    outputs.append(shown.replace(repr(paste)[1:-1], "").replace(paste, ""))
    button(at, "Add the keys").click().run()
    outputs.append(rendered_text(at, include_inputs=True))
    at.selectbox(key="keys_shown").set_value("All").run()
    outputs.append(rendered_text(at, include_inputs=True))
    assert not at.exception

    with db.engine.connect() as connection:
        stored = connection.scalar(text(
            "SELECT count(*) FROM gemini_api_keys WHERE deleted_at IS NULL"))
    assert stored == len(added) == 9, outputs
    assert {key_kind(k) for k in added} == {"standard", "authorization"}
    assert "page-one" in outputs[-1] and "file-2" in outputs[-1]  # the scans see real output

    places = {"tables": every_table_as_text(db), "logs": log_text(raw_logs),
              "outputs": "\n".join(outputs)}
    assert "SELECT" in places["logs"]  # SQL with parameters was captured
    for secret in added:
        for place, content in places.items():
            assert secret not in content, f"a key leaked into {place}"
            assert secret[4:20] not in content, f"part of a key leaked into {place}"
