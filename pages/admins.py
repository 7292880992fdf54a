"""Admins: the users, their admin rights and passwords. Every change is one audited transaction."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.ui.admins import admins_page  # noqa: E402

st.title("Admins")
st.caption("Only admins can sign in to this app. Changes here are written to the audit log.")
admins_page(ctx)
