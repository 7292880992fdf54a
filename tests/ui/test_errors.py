"""Pages show errors as one line (never a traceback), and Streamlit is configured so."""

from __future__ import annotations

import logging

from streamlit.testing.v1 import AppTest

from lib.logging_setup import configure_logging
from tests.support.apptest import shown
from tests.support.databases import REPO_ROOT
from tests.support.keys import fake_key


def test_streamlit_config_hides_errors_toolbar_and_usage_stats():
    import tomllib

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] in ("none", False)
    assert config["client"]["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False


# --- friendly page errors -----------------------------------------------------------------

def page_raising(kind: str, detail: str) -> None:
    import streamlit as st

    from lib.errors import InvalidInput
    from lib.ui.errors import friendly_errors

    with friendly_errors("test page"):
        st.title("before")
        if kind == "user":
            raise InvalidInput(f"that name is taken ({detail})")
        if kind == "stop":
            st.stop()
        raise RuntimeError(f"database exploded with {detail}")
    st.write("not reached")


def run_page(kind: str, detail: str) -> AppTest:
    at = AppTest.from_function(page_raising, args=(kind, detail))
    return at.run()


def test_unexpected_error_shows_reference_not_traceback(caplog):
    configure_logging()  # as app.py does first: every log record is redacted
    key = fake_key()
    caplog.set_level(logging.ERROR)
    at = run_page("bug", key)
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("Something went wrong")
    ref = error.value.split("reference ")[1].rstrip(".")
    assert key not in error.value and "database exploded" not in error.value
    assert [m.value for m in at.markdown] == [] and at.title[0].value == "before"
    # The server log has the redacted traceback under the same reference.
    assert f"reference {ref}" in caplog.text and "RuntimeError" in caplog.text
    assert key not in caplog.text


def test_user_error_shows_its_own_message_redacted():
    key = fake_key()
    at = run_page("user", key)
    assert not at.exception
    assert shown(at.error[0].value) == "that name is taken ([REDACTED])"


def test_st_stop_passes_through_untouched():
    at = run_page("stop", "")
    assert not at.exception and not at.error
    # The script stopped where st.stop() was called: what came before shows, what follows
    # ("not reached") does not, and friendly_errors added nothing of its own.
    assert [t.value for t in at.title] == ["before"]
    assert [m.value for m in at.markdown] == []
