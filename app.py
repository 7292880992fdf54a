"""The entry point: `streamlit run app.py`.

st.App serves the dashboard (dashboard.py) with what only the HTTP layer can add
(lib/ui/asgi.py): the HttpOnly sign-in cookie, downloads only for a live session, security
headers. Its lifespan (lib/ui/startup.py) does the slow start-up work (embedded PostgreSQL,
migrations, master key, imports) as soon as the server starts, not on the first page view,
and prints the one-time setup code while no admin exists.
"""

import streamlit as st

from lib.ui.asgi import MIDDLEWARE, ROUTES
from lib.ui.startup import lifespan

app = st.App("dashboard.py", routes=ROUTES, middleware=MIDDLEWARE, lifespan=lifespan)
