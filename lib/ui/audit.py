"""The Audit log page: filters, keyset paging kept in the session, entry details, exports."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from lib.analytics.charts import action_counts_figure
from lib.audit.export import MIME_TYPES, write_export
from lib.audit.log import Action
from lib.audit.queries import (
    PAGE_SIZES,
    AuditFilter,
    AuditPage,
    action_counts,
    day_range,
    describe_details,
    fetch_page,
    key_directory,
    summary,
    user_directory,
)
from lib.errors import InvalidInput
from lib.ui.identity import AdminContext
from lib.ui.text import inert, md

NAV = "audit_nav"  # None (newest page) or ("older" | "newer", Cursor)
SHOWN_FILTER = "audit_shown_filter"


def go(direction: str | None, cursor: Any = None) -> None:
    """Button callback: show the newest page, or the page newer / older than `cursor`."""
    st.session_state[NAV] = (direction, cursor) if direction else None


def shown(value: Any) -> str:
    """A detail value as plain text for the table (JSON spelling for non-text values)."""
    return "" if value is None else json.dumps(value, ensure_ascii=False).strip('"')


def exporter(ctx: AdminContext, flt: AuditFilter, fmt: str) -> Callable[[], bytes]:
    """The download's data, built only when clicked, in Streamlit's worker thread, as this
    admin."""
    def build() -> bytes:
        out = io.BytesIO()
        with ctx.session() as session:
            write_export(session, flt, fmt, out)
        return out.getvalue()
    return build


def audit_filter(keys: dict, emails: dict) -> tuple[AuditFilter, int] | None:
    """The filter row: dates, actions, page size, key, actor, text; None (after saying why)
    when the choice is invalid."""
    today = dt.datetime.now(dt.UTC).date()
    with st.container(border=True):
        left, middle, right = st.columns([2, 3, 1])
        days = left.date_input("Dates (UTC)", value=(today - dt.timedelta(days=29), today),
                               key="audit_days")
        actions = middle.multiselect("Actions", [a.value for a in Action], key="audit_actions")
        page_size = right.selectbox("Per page", PAGE_SIZES, index=1, key="audit_page_size")
        left, middle, right = st.columns(3)
        key_id = left.selectbox("Key", [None, *keys], key="audit_key",
                                format_func=lambda k: "Any key" if k is None else keys[k])
        user_id = middle.selectbox("Actor", [None, *sorted(emails, key=emails.get)],
                                   key="audit_actor",
                                   format_func=lambda u: "Anyone" if u is None else emails[u])
        search = right.text_input("Text in details", key="audit_search", max_chars=200)
    days = tuple(days) if isinstance(days, tuple | list) else (days,)
    try:
        flt = AuditFilter(*day_range(days[0] if days else None, days[-1] if days else None),
                          actions=tuple(actions), key_ids=(key_id,) if key_id else (),
                          user_ids=(user_id,) if user_id else (), search=search.strip())
    except InvalidInput as error:
        st.error(inert(error))
        return None
    return flt, page_size


def current_page(ctx: AdminContext, flt: AuditFilter, page_size: int,
                 emails: dict) -> tuple[AuditPage, dict[str, int]]:
    """The page the paging buttons point at (a new filter starts again from the newest
    entry), and the counts per action."""
    if st.session_state.get(SHOWN_FILTER) != (flt, page_size):
        st.session_state[SHOWN_FILTER] = (flt, page_size)
        st.session_state[NAV] = None
    nav = st.session_state.get(NAV)
    with ctx.session() as session:
        page = fetch_page(session, flt, page_size=page_size, emails=emails,
                          **({f"{nav[0]}_than": nav[1]} if nav else {}))
        counts = action_counts(session, flt)
    return page, counts


def entries_table(page: AuditPage) -> None:
    """The page's entries, and the newest / newer / older buttons."""
    if not page.entries:
        st.info("No audit entries match these filters. Widen the dates or clear a filter.")
    else:
        st.dataframe(pd.DataFrame({
            "time (UTC)": [e.created_at.strftime("%Y-%m-%d %H:%M:%S") for e in page.entries],
            "action": [e.action for e in page.entries],
            "key": [e.key_label for e in page.entries],
            "actor": [e.actor for e in page.entries],
            "details": [summary(e.details) for e in page.entries],
        }), hide_index=True, width="stretch")
    newest, newer, older, _ = st.columns([1, 1, 1, 5])
    newest.button("Newest", key="audit_newest", disabled=not page.has_newer, on_click=go,
                  args=(None,), icon=":material/first_page:")
    newer.button("Newer", key="audit_newer", disabled=not page.has_newer, on_click=go,
                 args=("newer", page.newest), icon=":material/chevron_left:")
    older.button("Older", key="audit_older", disabled=not page.has_older, on_click=go,
                 args=("older", page.oldest), icon=":material/chevron_right:")


def entry_details(page: AuditPage) -> None:
    """One chosen entry: who did what to which key, and each field before → after."""
    st.subheader("Entry details")
    index = st.selectbox(
        "Entry", range(len(page.entries)), key="audit_entry",
        format_func=lambda i: (f"{page.entries[i].created_at:%Y-%m-%d %H:%M:%S} · "
                               f"{page.entries[i].action} · {page.entries[i].key_label}"))
    entry = page.entries[index or 0]
    st.markdown(md("**{}** by **{}**{} at {} UTC", entry.action, entry.actor or "unknown",
                   md(" on key **{}**", entry.key_label) if entry.key_id else "",
                   f"{entry.created_at:%Y-%m-%d %H:%M:%S}"))
    # st.table renders Markdown in its cells (st.dataframe would not).
    st.table(pd.DataFrame(
        [{"field": inert(c.field), "before": inert("" if c.context else shown(c.before)),
          "after": inert(shown(c.after))} for c in describe_details(entry.details)],
        columns=["field", "before", "after"]))
    st.caption(md("Entry {} · key id {} · user id {}", entry.id, entry.key_id or "—",
                  entry.user_id or "—"))


def exports(ctx: AdminContext, flt: AuditFilter, matching: int) -> None:
    st.subheader("Export")
    st.caption(md("The {} matching entries, newest first. The file is built when you click "
                  "(rows are streamed from the database); for very large exports use "
                  "`python -m lib.cli export-audit`.", f"{matching:,}"))
    csv_column, jsonl_column, _ = st.columns([1, 1, 4])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    for column, fmt, label in ((csv_column, "csv", "CSV"), (jsonl_column, "jsonl", "JSON lines")):
        column.download_button(f"Download {label}", data=exporter(ctx, flt, fmt),
                               mime=MIME_TYPES[fmt], file_name=f"gemini-audit-{stamp}.{fmt}",
                               key=f"audit_export_{fmt}", on_click="ignore",
                               disabled=matching == 0)


def audit_page(ctx: AdminContext) -> None:
    """The Audit log page below its title."""
    with ctx.session() as session:
        keys = {key_id: name + (" (deleted)" if deleted else "")
                for key_id, name, deleted in key_directory(session)}
        emails = user_directory(session)
    chosen = audit_filter(keys, emails)
    if chosen is None:
        return
    flt, page_size = chosen
    page, counts = current_page(ctx, flt, page_size, emails)
    matching = sum(n for action, n in counts.items() if not flt.actions or action in flt.actions)
    chart, totals = st.columns([3, 1])
    totals.metric("Matching entries", f"{matching:,}")
    if counts:
        chart.plotly_chart(action_counts_figure(counts), config={"displayModeBar": False})
    entries_table(page)
    if page.entries:
        entry_details(page)
    exports(ctx, flt, matching)
