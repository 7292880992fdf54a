"""A friendly message instead of a stack trace, on every page; and the page shown while the
database (or the start-up) is away.

    with friendly_errors():          # dashboard.py wraps navigation.run() in this
        navigation.run()

    @friendly_errors()               # or a page's own body, as a decorator
    def render() -> None: ...

Errors meant for the user (lib.errors.GeminiKeysError) show their own message; a deployment
problem (database unreachable, a privilege missing, a full disk: lib.operator_errors.describe,
the one translator) shows its one line, naming the cause and the setting to check, to a
signed-in admin, and only "temporarily unavailable" to anyone else; anything else shows
"Something went wrong" with a short reference id, and the traceback goes to the server log
(redacted by lib.logging_setup) under that id. All of them stop the script. Streamlit's own
control flow (st.stop, st.rerun, st.switch_page) derives from BaseException and passes through.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy import text

from lib.crypto.sealed import MasterKeyError
from lib.errors import ConfigurationError, GeminiKeysError
from lib.operator_errors import OperatorError, describe
from lib.redact import redact
from lib.ui.identity import admin_of_this_run, was_admin
from lib.ui.runtime import get_runtime
from lib.ui.text import inert, md

log = logging.getLogger("gemini_keys.ui")

GENERIC_MESSAGE = ("Something went wrong and this page could not be shown. Please try again; "
                   "if it keeps happening, give your administrator the reference {ref}.")
UNAVAILABLE = ("The Gemini Key Manager is temporarily unavailable. This page tries again by "
               "itself; if it stays like this, tell your administrator.")
RETRY_SECONDS = 3


def new_reference() -> str:
    """Short id that ties the message on screen to the server log line."""
    return secrets.token_hex(4)


def operator_problem(error: BaseException) -> str | None:
    """The operator's one line when `error` is a deployment problem (the database away, a
    privilege or the schema missing, a bad setting or master key), else None."""
    if isinstance(error, OperatorError | ConfigurationError | MasterKeyError):
        return redact(str(error))
    return describe(error)


def startup_problem(error: BaseException) -> str | None:
    """What stops the start-up or the identity check (dashboard.py): a deployment problem,
    or any error written to be shown (nothing of a page has run yet), else None."""
    problem = operator_problem(error)
    if problem is None and isinstance(error, GeminiKeysError):
        problem = redact(str(error))
    return problem


def outage_text(problem: str, *, admin: bool) -> str:
    """What the page says about a deployment problem: the cause for an admin, nothing of it
    for anyone else (a visitor must not learn the master key's or database's state)."""
    if not admin:
        return UNAVAILABLE
    return redact(f"The app cannot work right now: {problem}. This page tries again by "
                  "itself every few seconds.")


@contextmanager
def friendly_errors(where: str = "page") -> Iterator[None]:
    """Show errors as one st.error line (never a traceback) and stop the script."""
    try:
        yield
    except Exception as error:
        problem = operator_problem(error)
        if problem is not None:
            log.warning("%s on %s: %s", type(error).__name__, where, problem)
            st.error(inert(outage_text(problem, admin=admin_of_this_run() is not None)),
                     icon=":material/cloud_off:")
            retry_when_back()
            st.stop()
        if isinstance(error, GeminiKeysError):
            # These messages are written to be shown; redact anyway as a second line of defence.
            message = redact(str(error))
            log.warning("%s on %s: %s", type(error).__name__, where, message)
            st.error(inert(message))
            st.stop()
        ref = new_reference()
        log.exception("unhandled error on %s (reference %s)", where, ref)
        st.error(md(GENERIC_MESSAGE, ref=ref), icon=":material/warning:")
        st.stop()


def render_outage(problem: str) -> None:
    """The page's place while the database or the start-up is away (dashboard.py: every
    page of the navigation renders this, so the navigation stays)."""
    st.error(inert(outage_text(problem, admin=was_admin())), icon=":material/cloud_off:")
    retry_when_back()


def app_answers() -> bool:
    """Whether the start-up succeeds and the database answers now."""
    try:
        runtime = get_runtime()
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - still away
        return False
    return True


@st.fragment(run_every=RETRY_SECONDS)
def retry_when_back() -> None:
    """Every few seconds: once the database answers again, rerun the whole page (no manual
    reload). Also a button, for the impatient."""
    if st.session_state.get("gk_outage_seen") and app_answers():
        st.session_state.pop("gk_outage_seen", None)
        st.rerun(scope="app")
    st.session_state["gk_outage_seen"] = True
    if st.button("Try again", key="gk_outage_retry", icon=":material/refresh:"):
        st.rerun(scope="app")
