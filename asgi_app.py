"""Serve app.py through st.App, with what only the HTTP layer can add (lib/ui/asgi.py): the
HttpOnly sign-in cookie that remembers a sign-in, downloads only for a live session, and
headers that stop other origins from framing the app.

    streamlit run asgi_app.py --server.address 127.0.0.1

(`streamlit run app.py` still works, without those: a reload then asks for the password.)
"""

import streamlit as st

from lib.ui.asgi import MIDDLEWARE, ROUTES

app = st.App("app.py", routes=ROUTES, middleware=MIDDLEWARE)
