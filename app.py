"""Entry point: page config, sign-in, admin gate, and navigation built per role."""

from __future__ import annotations

import streamlit as st

from lib.logging_setup import configure_logging
from lib.ui.errors import friendly_errors
from lib.ui.identity import AdminContext, admin_for_this_run, is_admin_now
from lib.ui.runtime import get_runtime
from lib.ui.signin import current_actor, render_no_access, render_sign_in, sign_out_button
from lib.ui.text import md

st.set_page_config(page_title="Gemini Key Manager", page_icon="🔑", layout="wide")
configure_logging()

HOME = "overview"  # the default page's URL path (st.Page reports "" for a default page)
ADMIN_PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="🏠", url_path=HOME, default=True),
    st.Page("pages/keys.py", title="Keys", icon="🔑", url_path="keys"),
    st.Page("pages/analytics.py", title="Analytics", icon="📈", url_path="analytics"),
    st.Page("pages/audit.py", title="Audit log", icon="📜", url_path="audit"),
    st.Page("pages/admins.py", title="Admins", icon="👥", url_path="admins"),
    st.Page("pages/tokens.py", title="Access tokens", icon=":material/vpn_key:"),
]


def only(render, title: str, icon: str, url_path: str):
    """A navigation of one page that also answers every admin page's URL (hidden stand-ins
    rendering the same thing): no "page not found" on a deep link, and after signing in
    the same URL shows the page that was asked for."""
    paths = [page.url_path or HOME for page in ADMIN_PAGES]
    stand_ins = [st.Page(render, title=title, icon=icon, url_path=path) for path in paths]
    return st.navigation([st.Page(render, title=title, icon=icon, url_path=url_path,
                                  default=True), *stand_ins], position="hidden")


with friendly_errors("start-up"):
    runtime = get_runtime()
    actor = current_actor(runtime)
    admin = (AdminContext(actor, runtime)
             if actor is not None and is_admin_now(runtime, actor) else None)
# Anonymous: the sign-in page only. Signed in but not an admin: the no-access page only.
# Every page file also runs require_admin() itself (it reuses `admin`, checked once per run).
if actor is None:
    navigation = only(render_sign_in, "Sign in", "🔐", "sign-in")
elif admin:
    navigation = st.navigation(ADMIN_PAGES)
    with st.sidebar:
        st.caption(md("Signed in as {}", actor.email))
        sign_out_button("gk_sign_out")
else:
    navigation = only(render_no_access, "No access", "⛔", "no-access")
if runtime.dev_master_key:
    st.warning("Development master key in use (generated under .data/). "
               "Set GEMINI_KEYS_MASTER_KEY before storing real keys.", icon="⚠️")
with friendly_errors(navigation.title), admin_for_this_run(admin):
    navigation.run()
