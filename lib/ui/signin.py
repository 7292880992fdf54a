"""Sign-in, sign-out, the session check on every run, and the no-access page.

Our form checks the password through lib.users.signin (throttled per account and client,
counted, audited) and starts a session row (lib.users.sessions). The browser session keeps
the session id; every run checks that the row is still live, so sign-out, a password reset,
revoke-admin and "sign out everywhere" take effect on the next click. The cookie (a signed
token naming the session, HttpOnly, set through lib/ui/cookie.py) signs a new browser
session back in only when the websocket's Origin is the app's own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from db.session import Actor, session_scope
from lib.errors import GeminiKeysError
from lib.runtime import Runtime
from lib.ui.cookie import order_cookie, order_cookie_cleared, send_pending_order
from lib.ui.identity import (
    SESSION_USER,
    forget_user,
    remember_user,
    session_id_of_this_browser,
    signed_in_actor,
)
from lib.ui.runtime import get_cookie_settings, get_runtime
from lib.ui.text import inert, md
from lib.users.sessions import (
    end_session,
    issue_token,
    live_session,
    session_for_token,
    session_lifetime,
    start_session,
)
from lib.users.signin import sign_in

log = logging.getLogger("gemini_keys.ui")

EMAIL_KEY, PASSWORD_KEY, ERROR_KEY = "gk_sign_in_email", "gk_sign_in_password", "gk_sign_in_error"
REFUSED_COOKIE = "gk_refused_cookie"  # digest of a cookie found dead here (cleared once)
LOCAL_CLIENT = "localhost"  # Streamlit reports no address for loopback connections
# Sign-ins in flight or not yet applied to their session, by session id: a lock held while the
# password is checked, and the outcome, (user id, email, session id, token) or an error.
_sign_in_locks: dict[str, threading.Lock] = {}
_outcomes: dict[str, tuple[uuid.UUID, str, str, str] | str] = {}
_outcomes_lock = threading.Lock()


def current_actor(runtime: Runtime) -> Actor | None:
    """Who is signed in; app.py calls this once per run, before building the navigation.

    A signed-in browser session is checked against its session row; a new one is signed in
    from a valid cookie of a live session, if the websocket came from our own origin. Also
    renders a pending cookie change.
    """
    _apply_outcome()
    actor = _checked_session(runtime) if st.session_state.get(SESSION_USER) else (
        _restored_from_cookie(runtime))
    send_pending_order()
    return actor


def _service(runtime: Runtime):
    return session_scope(Actor.service("app"), engine=runtime.engine)


def _text(value: object) -> str | None:
    """A cookie, header or address of st.context when it is text (AppTest's are mocks)."""
    return value if isinstance(value, str) else None


def _checked_session(runtime: Runtime) -> Actor | None:
    user = st.session_state[SESSION_USER]
    with _service(runtime) as session:
        live = live_session(session, user.get("session"))
    if live is None or str(live.user_id) != user.get("id"):
        forget_user()
        order_cookie_cleared(get_cookie_settings(runtime))
        return None
    return Actor.user(live.user_id, live.email)


def _restored_from_cookie(runtime: Runtime) -> Actor | None:
    cookie = get_cookie_settings(runtime)
    token = _text(st.context.cookies.get(cookie.name))
    if not token or not cookie.remembered:
        return None
    headers = st.context.headers
    if not cookie.origin_allowed(_text(headers.get("Origin")), _text(headers.get("Host"))):
        # Another origin (a page on another port of this host, say) opened this websocket;
        # the browser sent our cookie along, but it signs nothing in here.
        return None
    with _service(runtime) as session:
        found = session_for_token(session, cookie.key, token)
    if found is None or not found[0].remember:
        _clear_dead_cookie(runtime, token)
        return None
    claims, live = found
    remember_user(live.user_id, live.email, claims.session_id)
    return Actor.user(live.user_id, live.email)


def _clear_dead_cookie(runtime: Runtime, token: str) -> None:
    """Ask the browser once per browser session to drop a cookie that signs nothing in
    (expired, revoked, malformed, signed with another key)."""
    digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    if st.session_state.get(REFUSED_COOKIE) != digest:
        st.session_state[REFUSED_COOKIE] = digest
        order_cookie_cleared(get_cookie_settings(runtime))


def client_address(runtime: Runtime) -> str:
    """The client's address for the sign-in throttle: the connection's peer, or the last
    address in the configured proxy header (GEMINI_KEYS_CLIENT_ADDRESS_HEADER)."""
    header = runtime.settings.client_address_header
    if header:
        forwarded = (_text(st.context.headers.get(header)) or "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return _text(st.context.ip_address) or LOCAL_CLIENT


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _check_password(runtime: Runtime, email: str, password: str, client: str
                    ) -> tuple[uuid.UUID, str, str, str] | str:
    """(user id, email, session id, token) of a new session, or the message to show."""
    cookie = get_cookie_settings(runtime)
    if cookie.login_sleep_seconds:
        time.sleep(cookie.login_sleep_seconds)
    with _service(runtime) as session:
        result = sign_in(session, email, password, bcrypt_rounds=runtime.settings.bcrypt_rounds,
                         client_address=client)
        if not result.ok:
            return result.message
        session_id, expires_at = start_session(
            session, result.user_id, lifetime=session_lifetime(cookie.expiry_days),
            client_address=client)
    token = issue_token(cookie.key, user_id=result.user_id, session_id=session_id,
                        expires_at=expires_at, remember=cookie.remembered)
    return result.user_id, result.email, session_id, token


def _submit_sign_in() -> None:
    """Form callback: runs before the next script run, so that run already has the user."""
    email = st.session_state.get(EMAIL_KEY, "")
    password = st.session_state.get(PASSWORD_KEY, "")
    st.session_state[PASSWORD_KEY] = ""  # never kept in the session
    sign_in_with(email, password)


def sign_in_with(email: str, password: str) -> None:
    """Check the password and sign this browser session in (or keep the message to show).

    With fastReruns, a rerun request arriving during the slow password check stops this run
    and starts another at once, in another thread; this callback is then interrupted at its
    next session_state access. So the outcome is parked in plain Python under a per-session
    lock, and whichever run gets the lock next applies it (current_actor waits for it).
    """
    session_id = _session_id()
    with _outcomes_lock:
        lock = _sign_in_locks.setdefault(session_id, threading.Lock())
    with lock:
        try:
            runtime = get_runtime()
            outcome = _check_password(runtime, email, password, client_address(runtime))
        except GeminiKeysError as error:
            outcome = str(error)
        except Exception:
            log.exception("sign-in failed unexpectedly")
            outcome = "Signing in is not possible right now; try again later."
        with _outcomes_lock:
            _outcomes[session_id] = outcome
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
        user_id, email, signed_in_session, token = outcome
        st.session_state.pop(ERROR_KEY, None)
        remember_user(user_id, email, signed_in_session)
        cookie = get_cookie_settings(get_runtime())
        max_age = int(session_lifetime(cookie.expiry_days).total_seconds())
        order_cookie(cookie, token, max_age if cookie.remembered else None)
    with _outcomes_lock:  # only once applied: an interruption above leaves it for the next run
        _outcomes.pop(session_id, None)
        if not lock.locked():
            _sign_in_locks.pop(session_id, None)


def sign_out() -> None:
    """End this browser's session (a copy of its cookie dies with it), forget the user here
    and clear the cookie (also a button callback)."""
    runtime = get_runtime()
    signed_in_session = session_id_of_this_browser()
    try:
        with _service(runtime) as session:
            end_session(session, signed_in_session)
    except Exception:  # noqa: BLE001 - signed out here anyway; the row expires on its own
        log.exception("could not end the session row at sign-out")
    forget_user()
    cookie = get_cookie_settings(runtime)
    token = _text(st.context.cookies.get(cookie.name))
    if token:  # the connection's cookie is this session's: no second clear for it later
        st.session_state[REFUSED_COOKIE] = hashlib.sha256(
            token.encode("utf-8", "replace")).hexdigest()
    order_cookie_cleared(cookie)


def render_sign_in() -> None:
    """The sign-in form (lib/ui/first_admin.py adds "Create the first admin" before any
    admin exists)."""
    with st.form("gk_sign_in"):
        st.subheader("Sign in")
        st.text_input("Email", key=EMAIL_KEY, autocomplete="username")
        st.text_input("Password", type="password", key=PASSWORD_KEY,
                      autocomplete="current-password")
        st.form_submit_button("Sign in", type="primary", on_click=_submit_sign_in)
    error = st.session_state.get(ERROR_KEY)  # shown until the next attempt (reruns keep it)
    if error:
        st.error(inert(error))


def sign_out_button(key: str) -> None:
    st.button("Sign out", key=key, on_click=sign_out)


def render_no_access() -> None:
    actor = signed_in_actor()
    st.title("No access")
    who = md(" as **{}**", actor.email) if actor and actor.email else ""
    st.markdown(md("You are signed in{}, but this account is not an admin of the Gemini Key "
                   "Manager. Ask one of its admins to grant you access, then reload this page.",
                   who))
    sign_out_button("gk_sign_out_no_access")
