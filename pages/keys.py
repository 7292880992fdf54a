"""Keys: the masked table with filters and in-place edits, archive, add one, add many."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.ui.keys import keys_page  # noqa: E402

st.title("Keys")
st.caption("Keys are encrypted before they reach the database and are only ever shown "
           "masked (AQ.A…x7Zq, AIza…k3Q9). Higher priority is preferred by the pool.")
keys_page(ctx)
