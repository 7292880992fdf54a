"""Entry point: page config, sign-in, admin gate, and navigation built per role."""

from __future__ import annotations

import streamlit as st

from lib.logging_setup import configure_logging
from lib.ui.errors import friendly_errors
from lib.ui.guard import is_admin_now
from lib.ui.runtime import get_runtime
from lib.ui.signin import current_actor, render_no_access, render_sign_in, sign_out_button

st.set_page_config(page_title="Gemini Key Manager", page_icon="🔑", layout="wide")
configure_logging()

ADMIN_PAGES = [
    st.Page("pages/overview.py", title="Overview", icon="🏠", default=True),
    st.Page("pages/keys.py", title="Keys", icon="🔑"),
    st.Page("pages/analytics.py", title="Analytics", icon="📈"),
    st.Page("pages/audit.py", title="Audit log", icon="📜"),
    st.Page("pages/admins.py", title="Admins", icon="👥"),
]

with friendly_errors("start-up"):
    runtime = get_runtime()
    actor = current_actor(runtime)
    admin = actor is not None and is_admin_now(runtime, actor)
# Anonymous: the sign-in page only (any other URL falls back to it). Signed in but not an
# admin: the no-access page only. Every page file also runs require_admin() itself.
if actor is None:
    navigation = st.navigation([st.Page(render_sign_in, title="Sign in", icon="🔐",
                                        url_path="sign-in")])
elif admin:
    navigation = st.navigation(ADMIN_PAGES)
    with st.sidebar:
        st.caption(f"Signed in as {actor.email}")
        sign_out_button("gk_sign_out")
else:
    navigation = st.navigation([st.Page(render_no_access, title="No access", icon="⛔",
                                        url_path="no-access")])
if runtime.dev_master_key:
    st.warning("Development master key in use (generated under .data/). "
               "Set GEMINI_KEYS_MASTER_KEY before storing real keys.", icon="⚠️")
with friendly_errors(navigation.title):
    navigation.run()
