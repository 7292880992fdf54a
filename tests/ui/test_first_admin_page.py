"""The sign-in page before any admin exists, under AppTest: "Create the first admin" with
the code printed to the log (never to the page) signs the new admin in; the form is gone
once an admin exists."""

from __future__ import annotations

import logging
import re

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui.identity import SESSION_USER
from tests.support.apptest import rendered_text, shown
from tests.support.databases import make_user

pytestmark = pytest.mark.one_server
PASSWORD = "first admin's long passphrase"
CODE = re.compile(r"sign-in page: ([A-Z0-9]{4}(?:-[A-Z0-9]{4}){3})")


def app() -> AppTest:
    return AppTest.from_file("../../dashboard.py", default_timeout=60).run()


def fill(at: AppTest, code: str, email: str, password: str, again: str) -> AppTest:
    at.text_input(key="gk_setup_code").input(code)
    at.text_input(key="gk_setup_email").input(email)
    at.text_input(key="gk_setup_password").input(password)
    at.text_input(key="gk_setup_again").input(again)
    return at.button(key="FormSubmitter:gk_first_admin-Create the first admin").click().run()


def test_the_first_admin_signs_up_with_the_code_from_the_log(db, caplog):
    caplog.set_level(logging.WARNING, logger="gemini_keys")
    at = app()
    assert "setup code" in at.info[0].value and "create-user" in at.info[0].value
    [code] = CODE.findall(caplog.text)  # printed once, to the log
    assert code not in rendered_text(at)

    at = fill(at, "AAAA-BBBB-CCCC-DDDD", "first@example.com", PASSWORD, PASSWORD)
    assert [shown(e.value) for e in at.error][0].startswith("That setup code is not valid")
    assert at.text_input(key="gk_setup_password").value == ""  # never kept
    assert SESSION_USER not in at.session_state

    at = fill(at, code, "first@example.com", PASSWORD, PASSWORD)
    assert not at.exception
    assert at.session_state[SESSION_USER]["email"] == "first@example.com"
    assert "Signed in as first@example.com" in shown(at.sidebar.caption[0].value)
    assert code not in rendered_text(at, include_inputs=True)


def test_no_setup_form_once_an_admin_exists(db, caplog):
    make_user(db, "admin@example.com", admin=True)
    caplog.set_level(logging.WARNING, logger="gemini_keys")
    at = app()
    assert not at.info and [t.label for t in at.text_input] == ["Email", "Password"]
    assert not CODE.findall(caplog.text)
