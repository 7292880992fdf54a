"""The Access tokens page: create a gateway token (shown once), list tokens with their usage,
revoke one. Every change is one audited transaction."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from lib.errors import GeminiKeysError
from lib.tokens import MAX_EXPIRES_DAYS, TokenSummary, create_token, list_tokens, revoke_token
from lib.ui.flash import remember_flash, show_flash
from lib.ui.identity import AdminContext
from lib.ui.text import inert, md

PAGE = "tokens"
_NEW_TOKEN = "gk_new_access_token"  # noqa: S105 - (name, token), shown once then dropped
COLUMNS = ["Name", "Token", "State", "Models", "Expires (UTC)", "Last used (UTC)",
           "Requests", "Errors", "Tokens"]


def when(value: dt.datetime | None, empty: str = "never") -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else empty


def tokens_table(tokens: list[TokenSummary]) -> None:
    st.subheader("Tokens and their usage")
    if not tokens:
        st.caption("No access tokens yet.")
        return
    st.dataframe(pd.DataFrame([{
        "Name": t.name, "Token": t.prefix + "…", "State": t.state,
        "Models": ", ".join(t.models) if t.models else "all",
        "Expires (UTC)": when(t.expires_at), "Last used (UTC)": when(t.last_used_at),
        "Requests": t.requests, "Errors": t.errors, "Tokens": t.tokens} for t in tokens],
        columns=COLUMNS), hide_index=True, width="stretch")


def show_new_token() -> None:
    """The token just created, once: it is stored only as a hash."""
    created = st.session_state.pop(_NEW_TOKEN, None)
    if not created:
        return
    name, token = created
    st.success(md("Created access token **{}**. Copy it now: it is shown only this once.",
                  name))
    st.code(token, language=None)


def create_form(ctx: AdminContext) -> None:
    with st.form("gk_create_token", clear_on_submit=True):
        st.subheader("Create a token")
        name = st.text_input("Name", key="gk_token_name",
                             help="Who or what uses it, e.g. billing-service.")
        models = st.text_input("Models (optional)", key="gk_token_models",
                               placeholder="gemini-2.0-flash, gemini-2.5-pro",
                               help="Comma-separated; empty allows every model.")
        expires = st.number_input("Expires after (days, 0 = never)", min_value=0,
                                  max_value=MAX_EXPIRES_DAYS, value=0, step=1,
                                  key="gk_token_expires")
        if st.form_submit_button("Create token"):
            try:
                with ctx.session() as session:
                    summary, token = create_token(session, name=name, models=models or None,
                                                  expires_days=expires or None)
            except GeminiKeysError as error:
                st.error(inert(error))
                return
            st.session_state[_NEW_TOKEN] = (summary.name, token)
            st.rerun()


def revoke_form(ctx: AdminContext, live: list[TokenSummary]) -> None:
    with st.form("gk_revoke_token"):
        st.subheader("Revoke a token")
        st.caption("The gateway refuses it from its next request on.")
        labels = {f"{t.name} ({t.prefix}…)": t for t in live}
        choice = st.selectbox("Token", list(labels), key="gk_revoke_choice")
        if st.form_submit_button("Revoke token") and choice:
            try:
                with ctx.session() as session:
                    revoked = revoke_token(session, str(labels[choice].id))
            except GeminiKeysError as error:
                st.error(inert(error))
                return
            remember_flash(PAGE, f"Revoked access token {revoked.name}.")
            st.rerun()


def tokens_page(ctx: AdminContext) -> None:
    show_flash(PAGE)
    show_new_token()
    with ctx.session() as session:
        tokens = list_tokens(session)
    tokens_table(tokens)
    left, right = st.columns(2)
    with left:
        create_form(ctx)
    with right:
        live = [t for t in tokens if t.state == "active"]
        if live:
            revoke_form(ctx, live)
