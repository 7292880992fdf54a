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

SESSION_USER = "gk_user"  # {"id": "<uuid>", "email": "..."} once signed in
# streamlit-authenticator's session keys; "logout" = True makes it ignore the cookie.
AUTH_STATE = ("name", "authentication_status", "username", "email", "roles")


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
    """The signed-in user of this browser session, or None."""
    user = st.session_state.get(SESSION_USER)
    if not user:
        return None
    return Actor.user(uuid.UUID(user["id"]), user["email"])


def remember_user(user_id: uuid.UUID, email: str) -> None:
    """Sign this browser session in: our record and streamlit-authenticator's, together."""
    st.session_state[SESSION_USER] = {"id": str(user_id), "email": email}
    st.session_state.update(name=email, username=email, email=email, roles=None,
                            authentication_status=True, logout=None)


def forget_user() -> None:
    """Sign this browser session out (the cookie is the caller's business)."""
    # Order matters if Streamlit interrupts this: the user is forgotten last, so a partial
    # sign-out leaves them signed in (and they click again), never half signed in.
    st.session_state["logout"] = True
    for key in AUTH_STATE:
        st.session_state[key] = None
    st.session_state.pop(SESSION_USER, None)


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
