"""Analytics: daily outcomes, latency and success rate; per-key comparison; drill-down; CSV."""

from lib.ui.guard import require_admin

ctx = require_admin()

import streamlit as st  # noqa: E402

from lib.ui.analytics import analytics_page  # noqa: E402

st.title("Analytics")
analytics_page(ctx)
