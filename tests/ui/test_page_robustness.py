"""Bad input on the pages gets one clear message and the page goes on: NUL characters in the
search boxes and the sign-in email, uploads that are too big or not UTF-8."""

from __future__ import annotations

import tomllib

import pytest

from db.engine import REPO_ROOT
from lib.keys.importing import IMPORT_MAX_BYTES
from lib.runtime import build_runtime
from tests.support.apptest import page_test, shown
from tests.support.keys import dump_tables, fake_key
from tests.support.pool import add

pytestmark = pytest.mark.one_server
NUL_MESSAGE = "contains a NUL character"


def test_nul_in_the_keys_search_is_refused_and_the_table_stays(db, admin_actor):
    # Before: psycopg2's ValueError became "Something went wrong" and the page stopped.
    add(build_runtime(), "visible-key")
    at = page_test("keys", admin_actor).run()
    at.text_input(key="keys_search").input("visible\x00").run()
    assert not at.exception
    assert NUL_MESSAGE in shown(at.error[0].value)
    assert "Something went wrong" not in str([e.value for e in at.error])
    [table] = [d for d in at.dataframe if "select" in d.value.columns]
    assert list(table.value["name"]) == ["visible-key"]  # searched without the bad text


def test_nul_in_the_audit_search_is_refused(db, admin_actor):
    at = page_test("audit", admin_actor).run()
    at.text_input(key="audit_search").input("a\x00b").run()
    assert not at.exception
    assert [NUL_MESSAGE in shown(e.value) for e in at.error] == [True]


def test_nul_in_the_sign_in_email_is_an_invalid_address(db, admin_actor):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../../dashboard.py", default_timeout=60).run()
    at.text_input(key="gk_sign_in_email").input("admin\x00@example.com")
    at.text_input(key="gk_sign_in_password").input("correct horse battery staple")
    at.button(key="FormSubmitter:gk_sign_in-Sign in").click().run()
    assert [shown(e.value) for e in at.error] == [
        "Enter a valid email address, like ada@example.com."]


def add_many(at, filename: str, content: bytes):
    at.get("file_uploader")[0].upload(filename, content, "text/plain")
    return at.button(key="FormSubmitter:keys_add_many-Preview").click().run()


@pytest.mark.parametrize(("content", "message"), [
    (b"main," + fake_key().encode() + b"\n\xff\xfe\n", "not UTF-8 text (line 2 is not)"),
    (b"#" * (IMPORT_MAX_BYTES + 1), "larger than"),
], ids=["not-utf8", "too-big"])
def test_a_bad_upload_in_add_many_gets_one_message_and_stores_nothing(db, admin_actor, content,
                                                                      message):
    # Before: invalid bytes were silently replaced, and any size Streamlit took was read.
    at = page_test("keys", admin_actor).run()
    before = dump_tables(db)
    at = add_many(at, "keys.txt", content)
    assert not at.exception
    assert [message in shown(e.value) for e in at.error] == [True]
    assert dump_tables(db) == before


def test_uploads_are_capped_well_below_streamlits_default(db, admin_actor):
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == IMPORT_MAX_BYTES  # Streamlit: 200
    at = page_test("keys", admin_actor).run()
    assert at.get("file_uploader")[0].proto.max_upload_size_mb == 1
