"""The sign-in page, with "Create the first admin" while no admin exists.

The setup code is printed to the server's console (the log), never to the page:
lib/ui/startup.py issues one when the server starts; this page issues a new one (printed
the same way) when the last has expired or been used. The form asks for the code, an email
and the password twice (lib/users/setup_code.py: single use, expiry, throttle, audit), then
signs the new admin in. The CLI path (`create-user --admin`) stays, and ends the code too.
"""

from __future__ import annotations

import logging

import streamlit as st

from db.session import Actor, session_scope
from lib.errors import GeminiKeysError
from lib.runtime import Runtime
from lib.ui.runtime import get_runtime
from lib.ui.signin import render_sign_in, sign_in_with
from lib.ui.text import inert
from lib.users.accounts import Account
from lib.users.setup_code import create_first_admin, ensure_setup_code, setup_possible

log = logging.getLogger("gemini_keys.ui")

CODE_KEY, EMAIL_KEY = "gk_setup_code", "gk_setup_email"
PASSWORD_KEY, AGAIN_KEY, ERROR_KEY = "gk_setup_password", "gk_setup_again", "gk_setup_error"
FIRST_RUN_HELP = (
    "**No admin exists yet.** When it started, the server printed a one-time **setup code** "
    "to its console (the terminal running `streamlit run app.py`, or its log). Enter it "
    "below with your email and a password to create the first admin.\n\n"
    "Or create the admin on the server:\n\n"
    "```\npython -m lib.cli create-user --email you@example.com --admin --password-stdin\n```")


def announce_setup_code(runtime: Runtime, *, force: bool = False) -> bool:
    """While no admin exists, make sure a setup code is live and print a new one to the
    server's console (`force`: always a new one, at server start). Whether one is printed."""
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        issued = ensure_setup_code(session, minutes=runtime.settings.setup_code_minutes,
                                   force=force)
    if issued is None:
        return False
    # The console is the one place the code goes (never the page, never the database).
    log.warning("No admin exists yet. Setup code for \"Create the first admin\" on the sign-in "
                "page: %s (valid until %s UTC, once).", issued.code,
                issued.expires_at.strftime("%Y-%m-%d %H:%M"))
    return True


def _submit_first_admin() -> None:
    """Form callback: create the admin, then sign them in as the sign-in form would."""
    state = st.session_state
    code, email = state.get(CODE_KEY, ""), state.get(EMAIL_KEY, "")
    password, again = state.get(PASSWORD_KEY, ""), state.get(AGAIN_KEY, "")
    state[PASSWORD_KEY] = state[AGAIN_KEY] = state[CODE_KEY] = ""  # never kept
    state.pop(ERROR_KEY, None)
    try:
        runtime = get_runtime()
        with session_scope(Actor.service("app"), engine=runtime.engine) as session:
            outcome = create_first_admin(session, code=code, email=email, password=password,
                                         password_again=again,
                                         bcrypt_rounds=runtime.settings.bcrypt_rounds)
    except GeminiKeysError as error:
        outcome = str(error)
    except Exception:
        log.exception("creating the first admin failed unexpectedly")
        outcome = "Creating the admin is not possible right now; try again later."
    if isinstance(outcome, Account):
        log.info("first admin %s created through the setup code", outcome.email)
        sign_in_with(outcome.email, password)
    else:
        state[ERROR_KEY] = outcome


def render_first_admin_form() -> None:
    with st.form("gk_first_admin"):
        st.subheader("Create the first admin")
        st.text_input("Setup code", key=CODE_KEY, autocomplete="off",
                      help="Printed to the server's console; it works once.")
        st.text_input("Admin email", key=EMAIL_KEY, autocomplete="username")
        st.text_input("New password", type="password", key=PASSWORD_KEY,
                      autocomplete="new-password", help="At least 12 characters.")
        st.text_input("New password again", type="password", key=AGAIN_KEY,
                      autocomplete="new-password")
        st.form_submit_button("Create the first admin", on_click=_submit_first_admin)
    error = st.session_state.get(ERROR_KEY)
    if error:
        st.error(inert(error), icon=":material/error:")


def render_sign_in_page() -> None:
    """The page anonymous visitors see: the title, the sign-in form, and before any admin
    exists the first-admin form (and a new setup code on the console if the last one
    expired or was used)."""
    st.title("Gemini Key Manager")
    runtime = get_runtime()
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        first_run = setup_possible(session)
    if first_run:
        announce_setup_code(runtime)
        st.info(FIRST_RUN_HELP, icon=":material/key:")
        render_first_admin_form()
    render_sign_in()
