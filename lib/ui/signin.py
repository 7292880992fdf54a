"""The sign-in and no-access pages (replaced by streamlit-authenticator in the auth issue)."""

from __future__ import annotations

import streamlit as st

from db.session import Actor, session_scope
from lib.ui.guard import SESSION_USER
from lib.ui.runtime import get_runtime
from lib.users import find_user, password_matches


def render_sign_in() -> None:
    st.title("Gemini Key Manager")
    with st.form("sign_in"):
        email = st.text_input("Email")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        with session_scope(Actor.service("app"), engine=get_runtime().engine) as session:
            user = find_user(session, email.strip())
            ok = user is not None and password_matches(password, user.encrypted_password)
            if ok:
                st.session_state[SESSION_USER] = {"id": str(user.id), "email": user.email}
        if ok:
            st.rerun()
        st.error("Email or password is incorrect.")


def render_no_access() -> None:
    st.title("No access")
    st.write("You are signed in, but you are not an admin. Ask an admin to grant you access.")
    if st.button("Sign out"):
        st.session_state.pop(SESSION_USER, None)
        st.rerun()
