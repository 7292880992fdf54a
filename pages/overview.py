"""Overview: the admins' landing page. Today, the last 7 days, and what needs action."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.ui.overview import overview_page  # noqa: E402

st.title("Overview")
overview_page(ctx)
