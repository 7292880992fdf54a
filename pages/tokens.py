"""Access tokens: who may call the gateway. Every change is one audited transaction."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.ui.tokens import tokens_page  # noqa: E402

st.title("Access tokens")
st.caption("Services call the gateway (`python -m lib.cli serve-gateway`) with one of these "
           "tokens where their SDK takes an API key; the real keys stay here.")
tokens_page(ctx)
