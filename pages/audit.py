"""Audit page (built in its own issue)."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

st.title("Audit")
st.info("This page is being built.")
