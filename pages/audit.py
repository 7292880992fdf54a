"""Audit log: who did what to which key, and when. Newest first, filtered, paged, exported."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.ui.audit import audit_page  # noqa: E402

st.title("Audit log")
st.caption("Every change to a key or an admin, newest first. Times are UTC.")
audit_page(ctx)
