"""Admins: the users, their admin rights and passwords. Every change is one audited transaction."""

from lib.ui.guard import require_admin

ctx = require_admin()

import datetime as dt  # noqa: E402
from collections.abc import Callable  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from lib.errors import GeminiKeysError  # noqa: E402
from lib.users import create_user, list_users, reset_password, set_admin  # noqa: E402

FLASH = "gk_admins_flash"


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "never"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def apply(change: Callable[[Session], str]) -> None:
    """Run one change as the signed-in admin; show its error, or rerun with its message."""
    try:
        with ctx.session() as session:
            message = change(session)
    except GeminiKeysError as error:
        st.error(str(error))
        return
    st.session_state[FLASH] = message
    st.rerun()


def passwords_match(password: str, repeat: str) -> bool:
    if password != repeat:
        st.error("The two passwords do not match; nothing was changed.")
        return False
    return True


st.title("Admins")
st.caption("Only admins can sign in to this app. Changes here are written to the audit log.")
flash = st.session_state.pop(FLASH, None)
if flash:
    st.success(flash)

with ctx.session() as session:
    users = list_users(session)
st.dataframe(
    pd.DataFrame([{"Email": u.email, "Admin": u.is_admin, "Created": when(u.created_at),
                   "Last sign-in": when(u.last_sign_in_at)} for u in users],
                 columns=["Email", "Admin", "Created", "Last sign-in"]),
    hide_index=True, width="stretch")
emails = [u.email for u in users]

create_column, rights_column = st.columns(2)
with create_column, st.form("gk_create_user", clear_on_submit=True):
    st.subheader("Create a user")
    new_email = st.text_input("Email", key="gk_new_user_email")
    new_password = st.text_input("Password", type="password", key="gk_new_user_password",
                                 help="At least 12 characters; not a well-known password.")
    new_repeat = st.text_input("Repeat the password", type="password",
                               key="gk_new_user_repeat")
    new_admin = st.checkbox("Admin (sees and changes everything)", key="gk_new_user_admin")
    if st.form_submit_button("Create user") and passwords_match(new_password, new_repeat):
        apply(lambda s: "Created {} {}.".format(
            "admin" if new_admin else "user",
            create_user(s, email=new_email, password=new_password, admin=new_admin).email))

with rights_column, st.form("gk_admin_rights"):
    st.subheader("Admin rights")
    target = st.selectbox("User", emails, key="gk_rights_user")
    grant = st.form_submit_button("Grant admin")
    revoke = st.form_submit_button("Revoke admin")
    if (grant or revoke) and target:
        def change_rights(s: Session) -> str:
            changed = set_admin(s, email=target, admin=grant)
            if not changed:
                return f"{target} {'is already' if grant else 'was not'} an admin; nothing changed."
            return f"{target} {'is now an admin' if grant else 'is no longer an admin'}."
        apply(change_rights)

with st.form("gk_reset_password", clear_on_submit=True):
    st.subheader("Reset a password")
    reset_user = st.selectbox("User", emails, key="gk_reset_user")
    reset_new = st.text_input("New password", type="password", key="gk_reset_password")
    reset_repeat = st.text_input("Repeat the new password", type="password",
                                 key="gk_reset_repeat")
    if (st.form_submit_button("Reset password") and reset_user
            and passwords_match(reset_new, reset_repeat)):
        def change_password(s: Session) -> str:
            user = reset_password(s, email=reset_user, password=reset_new)
            return f"New password set for {user.email}; any sign-in lock on it is lifted."
        apply(change_password)
