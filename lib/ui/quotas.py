"""Budgets on the pages: the Keys page's Quotas tab (limits with today's use, set and clear a
limit, clear the pool's no-quota marks and per-model cooldowns) and the Overview's section.

Group labels, model ids and Gemini's reasons are user text: they reach the page only in table
cells and select options (shown literally) or through lib.ui.text.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from lib.errors import GeminiKeysError
from lib.keys.reads import key_groups
from lib.quotas.reads import QuotaToday, QuotaUse, quota_usage_today
from lib.quotas.writes import clear_model_mark, clear_quota, set_quota
from lib.ui.flash import Kind
from lib.ui.identity import AdminContext
from lib.ui.text import inert, md

# The page's way to finish a change: remember the message, reset its widgets, rerun.
Done = Callable[[str, Kind], None]


def _against(used: int, limit: int | None, fraction: float | None) -> str:
    if limit is None:
        return f"{used:,}"
    if limit == 0:
        return f"{used:,} of 0 (no quota)"
    return f"{used:,} of {limit:,} ({fraction:.0%})"


def _state(use: QuotaUse) -> str:
    if use.no_quota:
        return "no quota (Gemini said limit: 0)"
    if use.cooldown_until:
        return f"cooling down until {use.cooldown_until:%H:%M} UTC"
    zero = [name for name, v in use.limits.as_dict().items() if v == 0]
    if zero:
        return f"no quota ({', '.join(zero)} = 0)"
    reached = [name for name, f in use.fractions.items() if f is not None and f >= 1]
    if reached:
        return f"limit reached: {', '.join(reached)}"
    return "ok"


def usage_frame(today: QuotaToday) -> pd.DataFrame:
    """One row per group × model with a limit: use against it now, and when it frees."""
    rows = today.rows
    return pd.DataFrame({
        "group": [r.group_label for r in rows],
        "model": [r.model for r in rows],
        "requests this minute": [_against(r.minute_requests, r.limits.rpm, r.fractions["rpm"])
                                 for r in rows],
        "tokens this minute": [_against(r.minute_tokens, r.limits.tpm, r.fractions["tpm"])
                               for r in rows],
        "requests today": [_against(r.day_requests, r.limits.rpd, r.fractions["rpd"])
                           for r in rows],
        "tokens today": [f"{r.day_tokens:,}" for r in rows],
        "fullest": [min(r.highest_fraction, 1.0) if r.highest_fraction is not None else None
                    for r in rows],
        "state": [_state(r) for r in rows],
        "rpd resets": [r.next_day for r in rows],
    })


COLUMNS = {
    "requests this minute": st.column_config.TextColumn(
        help="This UTC minute, against rpm (requests per minute)"),
    "tokens this minute": st.column_config.TextColumn(
        help="Input tokens this UTC minute, against tpm"),
    "requests today": st.column_config.TextColumn(
        help="This Pacific day (Gemini's day), against rpd (requests per day)"),
    "fullest": st.column_config.ProgressColumn(
        "fullest", help="The highest of the three uses, as a share of its limit",
        min_value=0.0, max_value=1.0, format="percent"),
    "rpd resets": st.column_config.DatetimeColumn(
        "rpd resets (UTC)", format="YYYY-MM-DD HH:mm",
        help="Next midnight Pacific; rpm and tpm reset every minute"),
}


def usage_table(today: QuotaToday, key: str) -> None:
    st.dataframe(usage_frame(today), hide_index=True, column_config=COLUMNS, key=key)


def _reset_caption(today: QuotaToday) -> None:
    w = today.windows
    left = w.next_day - w.now
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    st.caption(md("Today is the Pacific day (Gemini's per-day quotas reset at midnight "
                  "Pacific): next reset {} UTC, in {} h {} min. Per-minute use is this UTC "
                  "minute.", f"{w.next_day:%Y-%m-%d %H:%M}", hours, minutes))


# -- the Keys page's tab ---------------------------------------------------------------------

def quotas_tab(ctx: AdminContext, done: Done) -> None:
    """Limits per group × model with today's use; set, clear; lift the pool's marks."""
    with ctx.session() as session:
        today = quota_usage_today(session)
        groups = [g for g in key_groups(session) if g]
    st.caption("Gemini's quotas are per Google Cloud project × model: a group here. The pool "
               "never hands out a key of a group for a model once one of its limits is "
               "reached. Empty means no limit; 0 means no quota for that model.")
    if today.rows:
        _reset_caption(today)
        usage_table(today, "quotas_usage")
    else:
        st.info("No quotas set yet. Set one below, or with `python -m lib.cli set-quota "
                "--group G --model M --rpd N`.", icon=":material/speed:")
    with st.expander("Set a limit", expanded=True, icon=":material/tune:"):
        set_limit_form(ctx, groups, done)
    if today.rows:
        with st.expander("Clear a limit", icon=":material/delete:"):
            clear_limit_form(ctx, today, done)
    with st.expander(f"No-quota marks and model cooldowns ({len(today.marks)})",
                     expanded=bool(today.marks), icon=":material/block:"):
        marks_section(ctx, today, done)


def set_limit_form(ctx: AdminContext, groups: list[str], done: Done) -> None:
    if not groups:
        st.caption("Limits are set per group: give keys a group (their Google Cloud project) "
                   "first.")
        return
    with st.form("quotas_set", border=False):
        left, right = st.columns(2)
        group = left.selectbox("Group", groups, key="quotas_group")
        model = right.text_input("Model", placeholder="gemini-2.5-flash", max_chars=128,
                                 key="quotas_model")
        rpm_col, tpm_col, rpd_col = st.columns(3)
        rpm = rpm_col.number_input("rpm (requests per minute)", min_value=0, value=None,
                                   step=1, placeholder="no limit", key="quotas_rpm")
        tpm = tpm_col.number_input("tpm (input tokens per minute)", min_value=0, value=None,
                                   step=1000, placeholder="no limit", key="quotas_tpm")
        rpd = rpd_col.number_input("rpd (requests per Pacific day)", min_value=0, value=None,
                                   step=1, placeholder="no limit", key="quotas_rpd")
        st.caption("Saving replaces every limit of that group and model.")
        if not st.form_submit_button("Save limit", type="primary"):
            return
    try:
        with ctx.session() as session:
            change = set_quota(session, group_label=group, model=model, rpm=rpm, tpm=tpm,
                               rpd=rpd)
    except GeminiKeysError as error:
        st.error(inert(f"Not saved: {error}"))
        return
    done(change.message(), "success" if change.changed else "info")


def clear_limit_form(ctx: AdminContext, today: QuotaToday, done: Done) -> None:
    choices = {f"{r.group_label} × {r.model}": r for r in today.rows}
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    label = left.selectbox("Limit", list(choices), key="quotas_clear_choice")
    if not right.button("Clear limit", key="quotas_clear"):
        return
    row = choices[label]
    try:
        with ctx.session() as session:
            change = clear_quota(session, group_label=row.group_label, model=row.model)
    except GeminiKeysError as error:
        st.error(inert(f"Not cleared: {error}"))
        return
    done(change.message(), "success")


def marks_section(ctx: AdminContext, today: QuotaToday, done: Done) -> None:
    """The pool's per-model marks: no quota (Gemini said `limit: 0`) and cooldowns."""
    if not today.marks:
        st.caption("None: every group may serve every model (within its limits).")
        return
    st.dataframe(pd.DataFrame({
        "project": [m.label for m in today.marks],
        "model": [m.model for m in today.marks],
        "state": ["no quota" if m.no_quota else "cooling down" for m in today.marks],
        "until (UTC)": [m.cooldown_until for m in today.marks],
        "reason": [m.reason or "" for m in today.marks],
    }), hide_index=True, key="quotas_marks")
    choices = {f"{m.label} × {m.model}": m for m in today.marks}
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    label = left.selectbox("Mark", list(choices), key="quotas_mark_choice")
    if not right.button("Clear mark", key="quotas_mark_clear",
                        help="The group's keys may serve the model again at once"):
        return
    mark = choices[label]
    try:
        with ctx.session() as session:
            message = clear_model_mark(session, project=mark.project, model=mark.model)
    except GeminiKeysError as error:
        st.error(inert(f"Not cleared: {error}"))
        return
    done(message, "success")


# -- the Overview's section ------------------------------------------------------------------

def quota_overview(today: QuotaToday) -> None:
    """Per group × model: today's use against its limits and the next reset."""
    st.subheader("Quotas today")
    if not today.rows:
        st.caption("No quotas set. Set limits per group and model on the Keys page (Quotas "
                   "tab) or with `python -m lib.cli set-quota`.")
        return
    _reset_caption(today)
    usage_table(today, "ov_quotas")
    if today.marks:
        st.caption(md("{} no-quota mark(s) or model cooldown(s) in force: see Keys → "
                      "Quotas.", len(today.marks)))
