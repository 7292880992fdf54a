"""Who is signed in, in one place: the session's user, the admin check, and the admin context
resolved once per script run (app.py resolves it; the page's guard reuses it)."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.session import Actor, session_scope
from lib.runtime import Runtime

# {"id": "<uuid>", "email": "...", "session": "<session id>"} once signed in; the session is
# checked against its row (lib.users.sessions) on every run.
SESSION_USER = "gk_user"
# Set once this browser session's user was found to be an admin; while the database is away
# (nothing can be checked) it decides whether the outage page names the cause.
KNOWN_ADMIN = "gk_known_admin"


@dataclass(frozen=True)
class AdminContext:
    """What a page needs: who acts, and the process runtime (engine, master key)."""

    actor: Actor
    runtime: Runtime

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction as the signed-in admin: RLS applies to everything the page reads."""
        with session_scope(self.actor, engine=self.runtime.engine) as session:
            yield session


# The admin context of the script run in progress, set by app.py around navigation.run().
_run_admin: contextvars.ContextVar[AdminContext | None] = contextvars.ContextVar(
    "gk_run_admin", default=None)


def signed_in_actor() -> Actor | None:
    """The user this browser session signed in as, or None (lib.ui.signin.current_actor also
    checks that their session is still live; use that to decide access)."""
    user = st.session_state.get(SESSION_USER)
    if not user:
        return None
    return Actor.user(uuid.UUID(user["id"]), user["email"])


def session_id_of_this_browser() -> str | None:
    """The session id this browser session signed in with (a secret: never shown)."""
    user = st.session_state.get(SESSION_USER)
    return user.get("session") if user else None


def remember_user(user_id: uuid.UUID, email: str, session_id: str) -> None:
    """Sign this browser session in as the user of a live session."""
    st.session_state[SESSION_USER] = {"id": str(user_id), "email": email, "session": session_id}


def forget_user() -> None:
    """Sign this browser session out (the session row and the cookie are the caller's)."""
    st.session_state.pop(SESSION_USER, None)
    st.session_state.pop(KNOWN_ADMIN, None)


def note_admin(is_admin: bool) -> None:
    """Remember what the last check said (dashboard.py, after is_admin_now)."""
    if is_admin:
        st.session_state[KNOWN_ADMIN] = True
    else:
        st.session_state.pop(KNOWN_ADMIN, None)


def was_admin() -> bool:
    """Whether this browser session is signed in and was an admin at the last check (for
    messages while nothing can be checked; never a reason to show data)."""
    return bool(st.session_state.get(SESSION_USER)) and bool(st.session_state.get(KNOWN_ADMIN))


def is_admin_now(runtime: Runtime, actor: Actor) -> bool:
    """Asked of the database, so a revoked admin loses access on the next click."""
    with session_scope(actor, engine=runtime.engine) as session:
        return bool(session.scalar(text("SELECT public.gemini_is_admin()")))


@contextmanager
def admin_for_this_run(context: AdminContext | None) -> Iterator[None]:
    """app.py: the admin context (or None) the pages of this run may reuse."""
    token = _run_admin.set(context)
    try:
        yield
    finally:
        _run_admin.reset(token)


def admin_of_this_run() -> AdminContext | None:
    """The admin context app.py resolved for the run in progress, if it ran."""
    return _run_admin.get()
