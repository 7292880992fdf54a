"""The Admins page: users, their admin rights and passwords; every change one audited
transaction, its outcome shown once after the redraw."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session

from lib.clock import utc_now
from lib.errors import GeminiKeysError
from lib.ui.flash import remember_flash, show_flash
from lib.ui.identity import AdminContext
from lib.ui.text import inert
from lib.users.accounts import (
    UserSummary,
    create_user,
    list_users,
    reset_password,
    service_identity,
    set_admin,
    sign_out_everywhere,
)
from lib.users.signin import FailureSummary, recent_failures

PAGE = "admins"
SEEN = "admins_seen"  # {email: is_admin} as the table showed it in the previous run


def when(value: dt.datetime | None) -> str:
    """A time for the table: UTC to the minute, or "never"."""
    if value is None:
        return "never"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def apply(ctx: AdminContext, change: Callable[[Session], str]) -> None:
    """Run one change as the signed-in admin; show its error, or rerun with its message."""
    try:
        with ctx.session() as session:
            message = change(session)
    except GeminiKeysError as error:
        st.error(inert(error))
        return
    remember_flash(PAGE, message)
    st.rerun()


def passwords_match(password: str, repeat: str) -> bool:
    if password != repeat:
        st.error("The two passwords do not match; nothing was changed.")
        return False
    return True


def users_table(users: list[UserSummary]) -> None:
    st.dataframe(
        pd.DataFrame([{"Email": u.email, "Admin": u.is_admin, "Created": when(u.created_at),
                       "Last sign-in": when(u.last_sign_in_at)} for u in users],
                     columns=["Email", "Admin", "Created", "Last sign-in"]),
        hide_index=True, width="stretch")


def create_user_form(ctx: AdminContext) -> None:
    with st.form("gk_create_user", clear_on_submit=True):
        st.subheader("Create a user")
        email = st.text_input("Email", key="gk_new_user_email")
        password = st.text_input("Password", type="password", key="gk_new_user_password",
                                 help="At least 12 characters; not a well-known password.")
        repeat = st.text_input("Repeat the password", type="password",
                               key="gk_new_user_repeat")
        admin = st.checkbox("Admin (sees and changes everything)", key="gk_new_user_admin")
        if st.form_submit_button("Create user") and passwords_match(password, repeat):
            rounds = ctx.runtime.settings.bcrypt_rounds
            apply(ctx, lambda s: "Created {} {}.".format(
                "admin" if admin else "user",
                create_user(s, email=email, password=password, admin=admin,
                            bcrypt_rounds=rounds).email))


def admin_rights_form(ctx: AdminContext, emails: list[str], seen: dict[str, bool]) -> None:
    with st.form("gk_admin_rights"):
        st.subheader("Admin rights")
        target = st.selectbox("User", emails, key="gk_rights_user")
        grant = st.form_submit_button("Grant admin")
        revoke = st.form_submit_button("Revoke admin")
        if (grant or revoke) and target:
            def change_rights(s: Session) -> str:
                changed = set_admin(s, email=target, admin=grant,
                                    expected_admin=seen.get(target))
                if not changed:
                    return (f"{target} {'is already' if grant else 'was not'} an admin; "
                            "nothing changed.")
                if grant:
                    return f"{target} is now an admin."
                return f"{target} is no longer an admin; their sessions are ended."
            apply(ctx, change_rights)


def reset_password_form(ctx: AdminContext, emails: list[str], seen: dict[str, bool]) -> None:
    with st.form("gk_reset_password", clear_on_submit=True):
        st.subheader("Reset a password")
        user = st.selectbox("User", emails, key="gk_reset_user")
        password = st.text_input("New password", type="password", key="gk_reset_password")
        repeat = st.text_input("Repeat the new password", type="password",
                               key="gk_reset_repeat")
        if (st.form_submit_button("Reset password") and user
                and passwords_match(password, repeat)):
            def change_password(s: Session) -> str:
                changed = reset_password(s, email=user, password=password,
                                         bcrypt_rounds=ctx.runtime.settings.bcrypt_rounds,
                                         expected_admin=seen.get(user))
                return (f"New password set for {changed.email}; their sessions are ended and "
                        "the sign-in throttle on the account is lifted.")
            apply(ctx, change_password)


def sign_out_everywhere_form(ctx: AdminContext, emails: list[str],
                             seen: dict[str, bool]) -> None:
    with st.form("gk_sign_out_everywhere"):
        st.subheader("Sign out everywhere")
        st.caption("Ends every session of the user: all browsers, and any copy of their "
                   "sign-in cookie. Choosing yourself signs you out here too.")
        user = st.selectbox("User", emails, key="gk_sign_out_user")
        if st.form_submit_button("Sign this user out everywhere") and user:
            def end_sessions(s: Session) -> str:
                ended = sign_out_everywhere(s, email=user, expected_admin=seen.get(user))
                return f"Signed {user} out everywhere ({ended} session(s) ended)."
            apply(ctx, end_sessions)


FAILURES_SHOWN_FOR = dt.timedelta(days=1)


def failures_table(failures: list[FailureSummary]) -> None:
    """Failed and refused sign-ins, counted per account, client and 15-minute window."""
    st.subheader("Failed sign-ins, last 24 hours")
    if not failures:
        st.caption("None.")
        return
    st.dataframe(
        pd.DataFrame([{"Email": f.email, "Client": f.client, "Failures": f.failures,
                       "Refused (throttled)": f.refused, "First": when(f.first_at),
                       "Last": when(f.last_at)} for f in failures]),
        hide_index=True, width="stretch")


def admins_page(ctx: AdminContext) -> None:
    """The Admins page below its title."""
    show_flash(PAGE)
    with ctx.session() as session:
        users = list_users(session)
        with service_identity(session):
            failures = recent_failures(
                session, since=utc_now() - FAILURES_SHOWN_FOR)
    # What the admin saw is the previous run's table: each change is checked against it
    # (lib.concurrency), so nobody acts on a user whose admin right changed meanwhile.
    seen = st.session_state.get(SEEN) or {}
    st.session_state[SEEN] = {u.email: u.is_admin for u in users}
    users_table(users)
    emails = [u.email for u in users]
    create_column, rights_column = st.columns(2)
    with create_column:
        create_user_form(ctx)
    with rights_column:
        admin_rights_form(ctx, emails, seen)
    reset_column, sign_out_column = st.columns(2)
    with reset_column:
        reset_password_form(ctx, emails, seen)
    with sign_out_column:
        sign_out_everywhere_form(ctx, emails, seen)
    failures_table(failures)
