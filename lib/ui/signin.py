"""Sign-in, sign-out and the no-access page.

Our form checks the password through lib.signin (throttled, recorded, audited);
streamlit-authenticator signs, sets, reads and deletes the remember-me cookie. A cookie write
is a browser-side component, so it is re-rendered on every run until the browser reports it
done: a rerun right after signing in or out cannot drop it.
"""

from __future__ import annotations

import logging
import threading
import uuid

import streamlit as st
import streamlit_authenticator as stauth
from streamlit.runtime.scriptrunner import get_script_run_ctx

from db.session import Actor, session_scope
from lib.errors import GeminiKeysError
from lib.runtime import Runtime
from lib.ui.identity import forget_user, remember_user, signed_in_actor
from lib.ui.runtime import get_cookie_settings, get_runtime
from lib.users.accounts import admin_exists, find_user, sign_in_credentials
from lib.users.signin import sign_in

log = logging.getLogger("gemini_keys.ui")

COOKIE_OP = "gk_cookie_op"  # "set" | "delete" until the browser confirms (the component's key)
EMAIL_KEY, PASSWORD_KEY, ERROR_KEY = "gk_sign_in_email", "gk_sign_in_password", "gk_sign_in_error"
# Sign-ins in flight or not yet applied to their session, by session id: a lock held while the
# password is checked, and the outcome, (user id, email) or an error message.
_sign_in_locks: dict[str, threading.Lock] = {}
_outcomes: dict[str, tuple[uuid.UUID, str] | str] = {}
_outcomes_lock = threading.Lock()
FIRST_RUN_HELP = (
    "**No admin exists yet.** Create the first one on the server, then sign in here:\n\n"
    "```\npython -m lib.cli create-user --email you@example.com --admin --password-stdin\n```\n"
    "The command reads the password from stdin (a hidden prompt on a terminal).")


def _authenticator(runtime: Runtime, credentials: dict[str, dict[str, str]]
                   ) -> stauth.Authenticate:
    cookie = get_cookie_settings(runtime)
    return stauth.Authenticate({"usernames": credentials}, cookie.name, cookie.key,
                               cookie.expiry_days, auto_hash=False,
                               login_sleep_time=cookie.login_sleep_seconds)


def current_actor(runtime: Runtime) -> Actor | None:
    """Who is signed in; app.py calls this once per run, before building the navigation.

    Also finishes a pending cookie write, and signs a new browser session in from a valid
    cookie (the authenticator checks its signature and expiry; the user must still exist).
    """
    _apply_outcome()
    actor = signed_in_actor()
    restore = actor is None and not st.session_state.get("logout")
    credentials: dict[str, dict[str, str]] = {}
    if restore:
        with session_scope(Actor.service("app"), engine=runtime.engine) as session:
            credentials = sign_in_credentials(session)
    authenticator = _authenticator(runtime, credentials)
    _sync_cookie(authenticator)
    if not restore:
        return actor
    try:
        authenticator.login(location="unrendered")
    except stauth.LoginError:  # a validly signed cookie for a user who no longer exists
        sign_out()
        return None
    email = st.session_state.get("username")
    if not (st.session_state.get("authentication_status") and email):
        return None
    with session_scope(Actor.service("app"), engine=runtime.engine) as session:
        user = find_user(session, email)
    if user is None:
        sign_out()
        return None
    remember_user(user.id, email)
    return Actor.user(user.id, email)


def _sync_cookie(authenticator: stauth.Authenticate) -> None:
    op = st.session_state.get(COOKIE_OP)
    if op not in ("set", "delete"):
        return
    if st.session_state.get(op) is True:  # the cookie component reported back: done
        del st.session_state[COOKIE_OP]
    elif op == "set":
        authenticator.cookie_controller.set_cookie()
    else:
        authenticator.cookie_controller.delete_cookie()


def _complete_sign_in(user_id: uuid.UUID, email: str) -> None:
    remember_user(user_id, email)
    if get_cookie_settings(get_runtime()).expiry_days > 0:
        st.session_state[COOKIE_OP] = "set"


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _submit_sign_in() -> None:
    """Form callback: runs before the next script run, so that run already has the user.

    With fastReruns, a rerun request arriving during the slow password check stops this run
    and starts another at once, in another thread; this callback is then interrupted at its
    next session_state access. So the outcome is parked in plain Python under a per-session
    lock, and whichever run gets the lock next applies it (current_actor waits for it).
    """
    email = st.session_state.get(EMAIL_KEY, "")
    password = st.session_state.get(PASSWORD_KEY, "")
    session_id = _session_id()
    with _outcomes_lock:
        lock = _sign_in_locks.setdefault(session_id, threading.Lock())
    with lock:
        try:
            runtime = get_runtime()
            with session_scope(Actor.service("app"), engine=runtime.engine) as session:
                result = sign_in(session, email, password,
                                 bcrypt_rounds=runtime.settings.bcrypt_rounds)
            outcome = (result.user_id, result.email) if result.ok else result.message
        except GeminiKeysError as error:
            outcome = str(error)
        except Exception:
            log.exception("sign-in failed unexpectedly")
            outcome = "Signing in is not possible right now; try again later."
        with _outcomes_lock:
            _outcomes[session_id] = outcome
    st.session_state[PASSWORD_KEY] = ""  # never kept in the session
    _apply_outcome()


def _apply_outcome() -> None:
    """Wait for a sign-in in flight in this session, then apply its outcome (idempotent)."""
    session_id = _session_id()
    with _outcomes_lock:
        lock = _sign_in_locks.get(session_id)
    if lock is None:
        return
    with lock, _outcomes_lock:
        outcome = _outcomes.get(session_id)
    if isinstance(outcome, str):
        st.session_state[ERROR_KEY] = outcome
    elif outcome is not None:
        st.session_state.pop(ERROR_KEY, None)
        _complete_sign_in(*outcome)
    with _outcomes_lock:  # only once applied: an interruption above leaves it for the next run
        _outcomes.pop(session_id, None)
        if not lock.locked():
            _sign_in_locks.pop(session_id, None)


def sign_out() -> None:
    """Forget the user in this session and delete the cookie (also a button callback)."""
    st.session_state[COOKIE_OP] = "delete"
    forget_user()


def render_sign_in() -> None:
    st.title("Gemini Key Manager")
    with session_scope(Actor.service("app"), engine=get_runtime().engine) as session:
        has_admin = admin_exists(session)
    if not has_admin:
        st.info(FIRST_RUN_HELP)
    with st.form("gk_sign_in"):
        st.subheader("Sign in")
        st.text_input("Email", key=EMAIL_KEY, autocomplete="username")
        st.text_input("Password", type="password", key=PASSWORD_KEY,
                      autocomplete="current-password")
        st.form_submit_button("Sign in", type="primary", on_click=_submit_sign_in)
    error = st.session_state.get(ERROR_KEY)  # shown until the next attempt (reruns keep it)
    if error:
        st.error(error)


def sign_out_button(key: str) -> None:
    st.button("Sign out", key=key, on_click=sign_out)


def render_no_access() -> None:
    actor = signed_in_actor()
    st.title("No access")
    who = f" as **{actor.email}**" if actor and actor.email else ""
    st.write(f"You are signed in{who}, but this account is not an admin of the Gemini Key "
             "Manager. Ask one of its admins to grant you access, then reload this page.")
    sign_out_button("gk_sign_out_no_access")
