"""The dashboard script (app.py serves it through st.App): page config, sign-in, the admin
gate, and the navigation built per role. While the database is away, every page of the
navigation shows that (the navigation stays) and reruns by itself once it is back."""

from __future__ import annotations

import streamlit as st

from lib.logging_setup import configure_logging
from lib.ui.errors import friendly_errors, render_outage, startup_problem
from lib.ui.first_admin import render_sign_in_page
from lib.ui.identity import (
    AdminContext,
    admin_for_this_run,
    is_admin_now,
    note_admin,
    signed_in_actor,
    was_admin,
)
from lib.ui.runtime import get_runtime
from lib.ui.signin import current_actor, render_no_access, sign_out_button
from lib.ui.text import md

st.set_page_config(page_title="Gemini Key Manager", page_icon=":material/key:", layout="wide")
configure_logging()

HOME = "overview"  # the default page's URL path (st.Page reports "" for a default page)
ADMIN_PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", url_path=HOME,
            default=True),
    st.Page("pages/keys.py", title="Keys", icon=":material/key:", url_path="keys"),
    st.Page("pages/analytics.py", title="Analytics", icon=":material/monitoring:",
            url_path="analytics"),
    st.Page("pages/audit.py", title="Audit log", icon=":material/history:", url_path="audit"),
    st.Page("pages/admins.py", title="Admins", icon=":material/group:", url_path="admins"),
    st.Page("pages/tokens.py", title="Access tokens", icon=":material/vpn_key:",
            url_path="tokens"),
]


def only(render, title: str, icon: str, url_path: str):
    """A navigation of one page that also answers every admin page's URL (hidden stand-ins
    rendering the same thing): no "page not found" on a deep link, and after signing in
    the same URL shows the page that was asked for."""
    paths = [page.url_path or HOME for page in ADMIN_PAGES]
    stand_ins = [st.Page(render, title=title, icon=icon, url_path=path) for path in paths]
    return st.navigation([st.Page(render, title=title, icon=icon, url_path=url_path,
                                  default=True), *stand_ins], position="hidden")


def outage_navigation(problem: str):
    """While the database is away: an admin keeps the admin navigation (each page says the
    database is away); anyone else gets one page saying "temporarily unavailable"."""
    def render() -> None:
        render_outage(problem)

    if not was_admin():
        return only(render, "Unavailable", ":material/cloud_off:", "sign-in")
    pages = [st.Page(render, title=page.title, icon=page.icon, url_path=page.url_path or HOME,
                     default=not page.url_path) for page in ADMIN_PAGES]
    actor = signed_in_actor()
    if actor is not None:
        st.sidebar.caption(md("Signed in as {}", actor.email))
    return st.navigation(pages)


runtime = actor = admin = None
problem: str | None = None
with friendly_errors("start-up"):
    try:
        runtime = get_runtime()
        actor = current_actor(runtime)
        admin = (AdminContext(actor, runtime)
                 if actor is not None and is_admin_now(runtime, actor) else None)
        if actor is not None:
            note_admin(admin is not None)
    except Exception as error:
        problem = startup_problem(error)
        if problem is None:
            raise
# Anonymous: the sign-in page only. Signed in but not an admin: the no-access page only.
# Every page file also runs require_admin() itself (it reuses `admin`, checked once per run).
if problem is not None:
    navigation = outage_navigation(problem)
elif actor is None:
    navigation = only(render_sign_in_page, "Sign in", ":material/login:", "sign-in")
elif admin:
    navigation = st.navigation(ADMIN_PAGES)
    with st.sidebar:
        st.caption(md("Signed in as {}", actor.email))
        sign_out_button("gk_sign_out")
else:
    navigation = only(render_no_access, "No access", ":material/block:", "no-access")
if runtime is not None and runtime.dev_master_key:
    st.warning("Development master key in use (generated under .data/). "
               "Set GEMINI_KEYS_MASTER_KEY before storing real keys.", icon=":material/warning:")
with friendly_errors(navigation.title), admin_for_this_run(admin):
    navigation.run()
