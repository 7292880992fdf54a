"""What an AppTest run rendered, as text, for asserting that nothing leaks onto a page."""

from __future__ import annotations

import datetime as dt
import re

from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.runtime import engine_for
from lib.settings import REPO_ROOT, Settings
from lib.ui.identity import SESSION_USER
from lib.users.sessions import start_session


def rendered_text(at: AppTest, *, include_inputs: bool = False) -> str:
    """Every element's protobuf as text: titles, markdown, tables' Arrow bytes, charts' JSON.

    include_inputs adds the current values of text inputs and areas (what a user typed).
    """
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    # at.main and at.sidebar are the public roots, but toasts render into a third (the
    # event block) that only the private tree holds; a leak scan must see it too.
    walk(at._tree)
    if include_inputs:
        parts += [str(w.value) for w in at.text_input] + [str(w.value) for w in at.text_area]
    return "\n".join(parts)


def button(at: AppTest, label_start: str):
    """The first button whose label starts with `label_start`."""
    return next(b for b in at.button if b.label.startswith(label_start))


def current_editor_key(at: AppTest) -> str:
    """The widget key of the Keys table's editor in this run (it changes after each save)."""
    # AppTest's session_state has no .get()
    nonce = at.session_state["keys_nonce"] if "keys_nonce" in at.session_state else 0  # noqa: SIM401
    return f"keys_editor_{nonce}"


def start_test_session(actor, lifetime: dt.timedelta = dt.timedelta(hours=1)) -> str:
    """A live session row for `actor` in the database DATABASE_URL names; its id."""
    engine = engine_for(Settings.load())
    with session_scope(Actor.service("app"), engine=engine) as session:
        session_id, _ = start_session(session, actor.user_id, lifetime=lifetime)
    return session_id


def sign_in_as(at: AppTest, actor, session_id: str | None = None) -> AppTest:
    """Make `actor` the signed-in user of the AppTest's session, as the sign-in page would
    (with a live session row, or the given session id)."""
    at.session_state[SESSION_USER] = {"id": str(actor.user_id), "email": actor.email,
                                      "session": session_id or start_test_session(actor)}
    return at


def page_test(page: str, actor=None, *, timeout: float = 30) -> AppTest:
    """An AppTest of pages/<page>.py (not yet run), signed in as `actor` when given."""
    at = AppTest.from_file(str(REPO_ROOT / "pages" / f"{page}.py"), default_timeout=timeout)
    return sign_in_as(at, actor) if actor is not None else at


_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def shown(markdown: str) -> str:
    """What a Markdown body made by lib.ui.text reads as on the page: escapes and the
    invisible joiners removed (AppTest reports the Markdown source, not the rendering)."""
    return _ESCAPE.sub(r"\1", markdown).replace("\u2060", "")
