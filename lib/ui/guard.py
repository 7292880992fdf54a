"""require_admin(): the first line of every page. Stops the script unless an admin is here."""

from __future__ import annotations

from contextlib import suppress

import streamlit as st
from streamlit.errors import StreamlitAPIException

from lib.ui.first_admin import render_sign_in_page
from lib.ui.identity import AdminContext, admin_of_this_run, is_admin_now
from lib.ui.runtime import get_runtime
from lib.ui.signin import current_actor, render_no_access

MAIN_SCRIPT = "dashboard.py"


def require_admin() -> AdminContext:
    """Return the admin context, or show the sign-in / no-access page and stop the script.

    Through dashboard.py the admin was checked once for this run, and that answer is reused. But on
    a freshly started server, Streamlit serves pages/<name>.py by URL (the old automatic
    routing) until some session has run dashboard.py; then this guard is the only gate and asks
    the database itself (session row, then admin).
    """
    context = admin_of_this_run()
    if context is not None:
        return context
    runtime = get_runtime()
    actor = current_actor(runtime)  # the session row is checked here too
    if actor is None:
        _switch_to_app()
        render_sign_in_page()
        st.stop()
    if not is_admin_now(runtime, actor):
        render_no_access()
        st.stop()
    return AdminContext(actor, runtime)


def _switch_to_app() -> None:
    """Under the old automatic routing, run dashboard.py instead (it routes to the sign-in page and
    takes the server over to st.navigation). Elsewhere (AppTest of one page) do nothing."""
    with suppress(StreamlitAPIException):
        st.switch_page(MAIN_SCRIPT)
