"""Widgets shared by the Analytics and Overview pages: date range, filters, KPI tiles, charts,
and the CSV download."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from lib.errors import InvalidInput
from lib.export import ExportPer, stats_csv, stats_file_name, write_chunks
from lib.stats import KeyOption, StatsFilter, Totals, utc_today
from lib.ui.guard import AdminContext

PRESETS = {"7 days": 7, "30 days": 30, "90 days": 90, "365 days": 365}
CUSTOM = "Custom"


def chart(fig: go.Figure, key: str) -> None:
    # theme="streamlit" adapts backgrounds and fonts to the light or dark theme.
    st.plotly_chart(fig, theme="streamlit", key=key, config={"displaylogo": False})


def date_range_picker(key: str = "an_range") -> tuple[dt.date, dt.date]:
    """Presets (default 30 days, ending today UTC) or a custom inclusive range."""
    today = utc_today()
    choice = st.radio("Period", [*PRESETS, CUSTOM], index=1, horizontal=True, key=key)
    if choice != CUSTOM:
        return today - dt.timedelta(days=PRESETS[choice] - 1), today
    picked = st.date_input("From – to (UTC days)", value=(today - dt.timedelta(days=29), today),
                           max_value=today, key=f"{key}_custom")
    if isinstance(picked, dt.date):
        return picked, picked
    if len(picked) == 1:  # the user has clicked the first day only, so far
        return picked[0], picked[0]
    return picked[0], picked[1]


def analytics_filter(options: Sequence[KeyOption], groups: Sequence[str]) -> StatsFilter | None:
    """The page's filter row; None (after showing why) when the range is invalid."""
    start, end = date_range_picker()
    names = {str(o.key_id): o.name + (" (retired)" if o.retired else "") for o in options}
    col_keys, col_group, col_archived = st.columns([3, 2, 1], vertical_alignment="bottom")
    picked = col_keys.multiselect("Keys", list(names), format_func=names.__getitem__,
                                  placeholder="All keys", key="an_keys")
    group = col_group.selectbox("Group", groups, index=None, placeholder="All groups",
                                key="an_group")
    include_archived = col_archived.toggle("Include archived", value=True, key="an_archived",
                                           help="Archived and deleted keys' past traffic.")
    try:
        return StatsFilter(start, end, key_ids=tuple(uuid.UUID(k) for k in picked),
                           group=group, include_archived=include_archived)
    except InvalidInput as error:
        st.error(str(error))
        return None


def change(now: float | None, before: float | None, *, percent_points: bool = False
           ) -> str | None:
    """Delta text against the previous period: '+12.5%', '-3.1 pp', 'new', or None."""
    if now is None or before is None:
        return None
    if percent_points:
        return f"{(now - before) * 100:+.1f} pp"
    if before == 0:
        return None if now == 0 else "new"
    return f"{(now - before) / before:+.1%}"


def kpi_tiles(current: Totals, previous: Totals, days: int) -> None:
    """Requests, success rate, failures, 429s, latency; deltas vs the previous `days` days."""
    note = f"vs the previous {days} day{'s' if days != 1 else ''}"
    tiles = st.columns(5)
    tiles[0].metric("Requests", f"{current.requests:,}",
                    change(current.requests, previous.requests), delta_description=note)
    tiles[1].metric("Success rate", _pct(current.success_rate),
                    change(current.success_rate, previous.success_rate, percent_points=True),
                    delta_description=note)
    tiles[2].metric("Failures", f"{current.failures:,}",
                    change(current.failures, previous.failures), delta_color="inverse",
                    delta_description=note)
    tiles[3].metric("Rate-limited (429)", f"{current.rate_limited:,}",
                    change(current.rate_limited, previous.rate_limited),
                    delta_color="inverse", delta_description=note)
    tiles[4].metric("Avg latency", _ms(current.avg_latency_ms),
                    change(current.avg_latency_ms, previous.avg_latency_ms),
                    delta_color="inverse", delta_description=note,
                    help="Weighted by request count.")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def csv_download(ctx: AdminContext, flt: StatsFilter, per: ExportPer) -> None:
    """A download button whose CSV is built only when clicked (Streamlit's deferred data).

    The rows stream from a server-side cursor into the file's bytes; Streamlit then keeps
    those bytes in memory to serve them. For very large exports the CLI streams to disk.
    """
    def build() -> io.BytesIO:
        out = io.BytesIO()
        with ctx.session() as session:
            write_chunks(stats_csv(session, flt, per), out)
        out.seek(0)
        return out

    st.download_button("Download CSV", data=build, file_name=stats_file_name(flt, per),
                       mime="text/csv", on_click="ignore", icon=":material/download:",
                       key="an_csv")
