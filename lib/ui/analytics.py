"""Widgets shared by the Analytics and Overview pages: date range, filters, KPI tiles, charts,
and the CSV download."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Sequence
from dataclasses import replace

import plotly.graph_objects as go
import streamlit as st

from lib.analytics import charts, stats
from lib.analytics.export import ExportPer, stats_csv, stats_file_name
from lib.analytics.stats import KeyOption, StatsFilter, Tokens, Totals, model_label
from lib.clock import utc_today
from lib.errors import InvalidInput
from lib.streaming import write_chunks
from lib.ui.identity import AdminContext
from lib.ui.text import inert, md, plotly_text

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


def analytics_filter(options: Sequence[KeyOption], groups: Sequence[str],
                     models: Sequence[str] = ()) -> StatsFilter | None:
    """The page's filter row; None (after showing why) when the range is invalid."""
    start, end = date_range_picker()
    names = {str(o.key_id): o.name + (" (retired)" if o.retired else "") for o in options}
    col_keys, col_group, col_model, col_archived = st.columns(
        [3, 2, 2, 2], vertical_alignment="bottom")
    picked = col_keys.multiselect("Keys", list(names), format_func=names.__getitem__,
                                  placeholder="All keys", key="an_keys")
    group = col_group.selectbox("Group", groups, index=None, placeholder="All groups",
                                key="an_group")
    model = col_model.selectbox("Model", list(models), index=None, placeholder="All models",
                                format_func=model_label, key="an_model",
                                help="Only this model's calls (per-model stats, which carry "
                                     "the tokens).")
    include_archived = col_archived.toggle("Include archived", value=True, key="an_archived",
                                           help="Archived and deleted keys' past traffic.")
    try:
        return StatsFilter(start, end, key_ids=tuple(uuid.UUID(k) for k in picked),
                           group=group, include_archived=include_archived, model=model)
    except InvalidInput as error:
        st.error(inert(error))
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


def comparison_note(flt: StatsFilter) -> str:
    """What every KPI's change is measured against (one line above the tiles, full width,
    instead of a caption under each tile that narrow tiles cut off)."""
    prev = flt.previous()
    days = f"{flt.days} day{'s' if flt.days != 1 else ''}"
    return f"Changes against the previous {days} ({prev.start} to {prev.end})"


def kpi_tiles(current: Totals, previous: Totals, tokens: Tokens | None = None,
              previous_tokens: Tokens | None = None) -> None:
    """Two rows of four tiles: requests, success rate, failures, 429s; latency and tokens
    (prompt, output, total). Deltas against the previous period (see comparison_note)."""
    first, second = st.columns(4), st.columns(4)
    first[0].metric("Requests", _count(current.requests),
                    change(current.requests, previous.requests),
                    help=md("{}", _exact(current.requests, "Calls recorded in the period.")))
    first[1].metric("Success rate", _pct(current.success_rate),
                    change(current.success_rate, previous.success_rate, percent_points=True))
    first[2].metric("Failures", _count(current.failures),
                    change(current.failures, previous.failures), delta_color="inverse")
    first[3].metric("Rate-limited (429)", _count(current.rate_limited),
                    change(current.rate_limited, previous.rate_limited),
                    delta_color="inverse")
    second[0].metric("Avg latency", _ms(current.avg_latency_ms),
                     change(current.avg_latency_ms, previous.avg_latency_ms),
                     delta_color="inverse", help="Weighted by request count.")
    if tokens is None:
        return
    before = previous_tokens or Tokens()
    second[1].metric("Prompt tokens", _count(tokens.prompt), change(tokens.prompt, before.prompt),
                     delta_color="off", help=md("{}", _exact(tokens.prompt, "Input tokens "
                                                    "(promptTokenCount), cached ones included "
                                                    f"({tokens.cached:,} cached).")))
    second[2].metric("Output tokens", _count(tokens.output), change(tokens.output, before.output),
                     delta_color="off", help=md("{}", _exact(tokens.output, "Generated tokens "
                                                    "(candidatesTokenCount); thinking tokens "
                                                    f"apart ({tokens.thoughts:,}).")))
    second[3].metric("Total tokens", _count(tokens.total), change(tokens.total, before.total),
                     delta_color="off", help=md("{}", _exact(
                         tokens.total,
                         "totalTokenCount as Gemini reports it: prompt, output and thinking.")))


COMPACT_FROM = 10_000_000


def _count(value: int) -> str:
    """A count for a tile: exact with thousands separators up to 10 million, then in
    millions (M) or billions (B) with three significant decimals so the tile never clips
    (the exact number is in the tile's help)."""
    if abs(value) < COMPACT_FROM:
        return f"{value:,}"
    if abs(value) < 10_000_000_000:
        return f"{value / 1e6:,.2f} M"
    return f"{value / 1e9:,.2f} B"


def _exact(value: int, text: str) -> str:
    """A tile's help: our `text`, and the exact count where the tile shows it compacted."""
    return text if abs(value) < COMPACT_FROM else f"{text} Exactly {value:,}."


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


TOP_N = (10, 20, 50)
SORTS = {"failures": "Most failures", "rate_limit_share": "Highest 429 share",
         "failure_rate": "Highest failure rate", "requests": "Most requests",
         "latency": "Slowest"}
PER_LABELS = {"key-day": "One per key per day", "day": "One per day",
              "key-model-day": "One per key, day and model (with tokens)"}
HEATMAP = {"requests": "Requests", "failures": "Failures", "rate_limited": "429s",
           "failure_rate": "Failure rate"}


def analytics_page(ctx: AdminContext) -> None:
    """The Analytics page below its title."""
    with ctx.session() as session:
        key_options = stats.key_options(session)
        groups = stats.group_labels(session)
        models = stats.models(session)
    flt = analytics_filter(key_options, groups, models)
    if flt is None:
        return

    with ctx.session() as session:
        top = stats.summary(session, flt)
        tokens = stats.token_summary(session, flt)
    current, previous, days = top.current, top.previous, top.days

    st.caption(md("{} to {} (UTC days). {}. Average latency is weighted by requests.",
                  flt.start, flt.end, comparison_note(flt)))
    kpi_tiles(current, previous, tokens.current, tokens.previous)
    if not current.requests:
        st.info("No requests recorded for these keys in this period. Widen the period or clear the "
                "filters. New install? `python -m lib.cli seed-demo --keys 12 --days 90` adds "
                "clearly labelled demo data.", icon=":material/insights:")
        return

    st.subheader("Requests per day")
    chart(charts.outcomes_figure(days), "an_outcomes")
    left, right = st.columns(2)
    with left:
        st.subheader("Average latency")
        chart(charts.latency_figure(days), "an_latency")
    with right:
        st.subheader("Success rate")
        chart(charts.success_rate_figure(days), "an_success")

    models_and_tokens(ctx, flt, tokens)

    st.subheader("Keys compared")
    c_sort, c_top, c_metric = st.columns(3)
    sort = c_sort.selectbox("Sort by", list(SORTS), format_func=SORTS.__getitem__, key="an_sort")
    top_n = c_top.selectbox("Top", TOP_N, index=1, key="an_top",
                            help="The table and the heatmap show this many keys.")
    metric = c_metric.selectbox("Heatmap shows", list(HEATMAP), format_func=HEATMAP.__getitem__,
                                key="an_metric")
    with ctx.session() as session:
        key_rows = stats.per_key_totals(session, flt, sort=sort, limit=top_n)
        total_keys = stats.count_filtered_keys(session, flt)
        matrix = stats.key_day_matrix(session, flt, [r.key_id for r in key_rows], metric)
    st.caption(md("Top {} of {} keys, {}.", len(key_rows), f"{total_keys:,}",
                  SORTS[sort].lower()))
    st.dataframe(
        [{"Key": r.name, "Group": r.group_label or "", "Requests": r.requests,
          "Failures": r.failures, "Failure rate": r.failure_rate, "429s": r.rate_limited,
          "429 share": r.rate_limit_share, "Avg latency (ms)": r.avg_latency_ms,
          "Status": r.status()} for r in key_rows],
        hide_index=True, key="an_keys_table",
        column_config={
            "Failure rate": st.column_config.NumberColumn(format="percent"),
            "429 share": st.column_config.NumberColumn(format="percent"),
            "Avg latency (ms)": st.column_config.NumberColumn(format="%.0f"),
        })
    names = {r.key_id: plotly_text(r.name) for r in key_rows}
    chart(charts.key_heatmap_figure(matrix, names, metric_label=HEATMAP[metric]), "an_heatmap")

    st.subheader("One key")
    by_id = {o.key_id: o for o in key_options}
    drill = st.selectbox("Drill down to", list(by_id), index=None, placeholder="Choose a key",
                         format_func=lambda k: by_id[k].name, key="an_drill")
    if drill is not None:
        key_filter = replace(flt, key_ids=(drill,), group=None, include_archived=True)
        with ctx.session() as session:
            one = stats.summary(session, key_filter)
            one_tokens = stats.token_summary(session, key_filter)
        kpi_tiles(one.current, one.previous, one_tokens.current, one_tokens.previous)
        chart(charts.outcomes_figure(one.days), "an_key_outcomes")
        chart(charts.latency_figure(one.days), "an_key_latency")

    st.subheader("Export")
    per = st.radio("Rows", list(PER_LABELS), horizontal=True, key="an_per",
                   format_func=PER_LABELS.__getitem__)
    csv_download(ctx, flt, per)
    st.caption("Counts match the database exactly; the file holds names and ids, never keys. "
               "Large exports: `python -m lib.cli export-stats --from … --to … -o FILE`.")


def models_and_tokens(ctx: AdminContext, flt: StatsFilter, tokens: stats.TokenSummary) -> None:
    """Per-model breakdown (chart and table) and token charts: per day, per key."""
    with ctx.session() as session:
        breakdown = stats.model_breakdown(session, flt)
    st.subheader("Models")
    if not breakdown:
        st.info("No per-model usage in this period: these calls were recorded before the "
                "key pool counted models and tokens.", icon=":material/info:")
        return
    labels = [plotly_text(r.label) for r in breakdown]
    requests = sum(r.requests for r in breakdown) or 1
    chart(charts.model_breakdown_figure(breakdown, labels), "an_models")
    st.dataframe(
        [{"Model": r.label, "Requests": r.requests, "Share": r.requests / requests,
          "Failures": r.failures, "Failure rate": r.failure_rate, "429s": r.rate_limited,
          "Avg latency (ms)": r.avg_latency_ms, "Prompt tokens": r.tokens.prompt,
          "Output tokens": r.tokens.output, "Thoughts tokens": r.tokens.thoughts,
          "Total tokens": r.tokens.total} for r in breakdown],
        hide_index=True, key="an_models_table",
        column_config={
            "Share": st.column_config.NumberColumn(format="percent"),
            "Failure rate": st.column_config.NumberColumn(format="percent"),
            "Avg latency (ms)": st.column_config.NumberColumn(format="%.0f"),
        })

    st.subheader("Tokens per day")
    chart(charts.tokens_figure(tokens.days), "an_tokens")
    with ctx.session() as session:
        by_key = stats.per_key_tokens(session, flt, limit=TOP_N[1])
    st.subheader("Tokens per key")
    st.caption(md("The {} keys that used the most tokens.", len(by_key)))
    chart(charts.key_tokens_figure(by_key, [plotly_text(r.name) for r in by_key]),
          "an_key_tokens")
