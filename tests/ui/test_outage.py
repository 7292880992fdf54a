"""The dashboard while the database cannot be reached (DATABASE_URL at a closed port): a
signed-in admin keeps the navigation and reads one line naming the cause and the setting;
a visitor reads only "temporarily unavailable"; neither sees a traceback. A wrong master key
is named to nobody who is not signed in. (The real stop/start of a server, and the recovery
without a reload, are in tests/e2e/test_e2e_shell.py.)"""

from __future__ import annotations

import base64
import os
import socket
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from lib.ui.identity import KNOWN_ADMIN, SESSION_USER
from tests.support.apptest import rendered_text, shown

TIMEOUT = 60


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


@pytest.fixture
def database_away(monkeypatch, tmp_path):
    port = closed_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://gemini_app@127.0.0.1:{port}/gemini")
    monkeypatch.setenv("GEMINI_KEYS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    return port


def dashboard(*, admin: bool) -> AppTest:
    at = AppTest.from_file("../../dashboard.py", default_timeout=TIMEOUT)
    if admin:
        at.session_state[SESSION_USER] = {"id": str(uuid.uuid4()), "email": "a@example.com",
                                          "session": "s"}
        at.session_state[KNOWN_ADMIN] = True
    return at.run()


def test_a_signed_in_admin_reads_the_cause_and_keeps_the_navigation(database_away):
    at = dashboard(admin=True)
    assert not at.exception
    [error] = at.error
    text = shown(error.value)
    assert f"127.0.0.1:{database_away}" in text and "connection refused" in text
    assert "check DATABASE_URL" in text and "tries again by itself" in text
    assert "Traceback" not in rendered_text(at)
    assert [b.label for b in at.button] == ["Try again"]
    assert "Signed in as a@example.com" in shown(at.sidebar.caption[0].value)


def test_a_visitor_reads_only_temporarily_unavailable(database_away):
    at = dashboard(admin=False)
    assert not at.exception
    [error] = at.error
    assert "temporarily unavailable" in error.value
    everything = rendered_text(at)
    for detail in ("DATABASE_URL", str(database_away), "refused", "PostgreSQL", "Traceback"):
        assert detail not in everything, detail


def test_a_wrong_master_key_is_named_to_admins_only(db, monkeypatch, tmp_path):
    from lib.runtime import build_runtime

    build_runtime()  # records the check value of the configured master key
    monkeypatch.setenv("GEMINI_KEYS_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    visitor = rendered_text(dashboard(admin=False))
    assert "temporarily unavailable" in visitor and "master key" not in visitor.lower()
    admin = dashboard(admin=True)
    assert "master key" in shown(admin.error[0].value).lower()
