"""require_admin(): the first line of every page. Stops the script unless an admin is here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import text
from sqlalchemy.orm import Session
from streamlit.errors import StreamlitAPIException

from db.session import Actor, session_scope
from lib.runtime import Runtime
from lib.ui.runtime import get_runtime

MAIN_SCRIPT = "app.py"
SESSION_USER = "gk_user"  # {"id": "<uuid>", "email": "..."} once signed in


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


def signed_in_actor() -> Actor | None:
    user = st.session_state.get(SESSION_USER)
    if not user:
        return None
    return Actor.user(uuid.UUID(user["id"]), user["email"])


def is_admin_now(runtime: Runtime, actor: Actor) -> bool:
    """Asked of the database on every run, so a revoked admin loses access on the next click."""
    with session_scope(actor, engine=runtime.engine) as session:
        return bool(session.scalar(text("SELECT public.gemini_is_admin()")))


def require_admin() -> AdminContext:
    """Return the admin context, or show the sign-in / no-access page and stop the script.

    Normally app.py's navigation never routes a non-admin to a page file. But on a freshly
    started server, Streamlit serves pages/<name>.py by URL (the old automatic routing) until
    some session has run app.py; then this guard is the only gate.
    """
    from lib.ui.signin import render_no_access, render_sign_in  # it imports this module

    actor = signed_in_actor()
    if actor is None:
        _switch_to_app()
        render_sign_in()
        st.stop()
    runtime = get_runtime()
    if not is_admin_now(runtime, actor):
        render_no_access()
        st.stop()
    return AdminContext(actor, runtime)


def _switch_to_app() -> None:
    """Under the old automatic routing, run app.py instead (it routes to the sign-in page and
    takes the server over to st.navigation). Elsewhere (AppTest of one page) do nothing."""
    with suppress(StreamlitAPIException):
        st.switch_page(MAIN_SCRIPT)
