"""Analytics: daily outcomes, latency and success rate; per-key comparison; drill-down; CSV."""

from lib.ui.guard import require_admin

ctx = require_admin()

from dataclasses import replace  # noqa: E402

import streamlit as st  # noqa: E402

from lib import charts, stats  # noqa: E402
from lib.ui.analytics import analytics_filter, chart, csv_download, kpi_tiles  # noqa: E402

TOP_N = (10, 20, 50)
SORTS = {"failures": "Most failures", "rate_limit_share": "Highest 429 share",
         "failure_rate": "Highest failure rate", "requests": "Most requests",
         "latency": "Slowest"}
HEATMAP = {"requests": "Requests", "failures": "Failures", "rate_limited": "429s",
           "failure_rate": "Failure rate"}

st.title("Analytics")
with ctx.session() as session:
    key_options = stats.key_options(session)
    groups = stats.group_labels(session)
flt = analytics_filter(key_options, groups)
if flt is None:
    st.stop()

with ctx.session() as session:
    top = stats.summary(session, flt)
current, previous, days = top.current, top.previous, top.days

st.caption(f"{flt.start} to {flt.end} (UTC days). Average latency is weighted by requests.")
kpi_tiles(current, previous, flt.days)
if not current.requests:
    st.info("No requests recorded for these keys in this period. Widen the period or clear the "
            "filters. New install? `python -m lib.cli seed-demo --keys 12 --days 90` adds "
            "clearly labelled demo data.", icon=":material/insights:")
    st.stop()

st.subheader("Requests per day")
chart(charts.outcomes_figure(days), "an_outcomes")
left, right = st.columns(2)
with left:
    st.subheader("Average latency")
    chart(charts.latency_figure(days), "an_latency")
with right:
    st.subheader("Success rate")
    chart(charts.success_rate_figure(days), "an_success")

st.subheader("Keys compared")
c_sort, c_top, c_metric = st.columns(3)
sort = c_sort.selectbox("Sort by", list(SORTS), format_func=SORTS.__getitem__, key="an_sort")
top_n = c_top.selectbox("Top", TOP_N, index=1, key="an_top",
                        help="The table and the heatmap show this many keys.")
metric = c_metric.selectbox("Heatmap shows", list(HEATMAP), format_func=HEATMAP.__getitem__,
                            key="an_metric")
with ctx.session() as session:
    key_rows = stats.per_key_totals(session, flt, sort=sort, limit=top_n)
    total_keys = stats.count_keys(session, flt)
    matrix = stats.key_day_matrix(session, flt, [r.key_id for r in key_rows], metric)
st.caption(f"Top {len(key_rows)} of {total_keys:,} keys, {SORTS[sort].lower()}.")
st.dataframe(
    [{"Key": r.name, "Group": r.group_label or "", "Requests": r.requests,
      "Failures": r.failures, "Failure rate": r.failure_rate, "429s": r.rate_limited,
      "429 share": r.rate_limit_share, "Avg latency (ms)": r.avg_latency_ms,
      "Status": "deleted" if r.deleted else "archived" if r.archived
      else "active" if r.is_active else "inactive"} for r in key_rows],
    hide_index=True, key="an_keys_table",
    column_config={
        "Failure rate": st.column_config.NumberColumn(format="percent"),
        "429 share": st.column_config.NumberColumn(format="percent"),
        "Avg latency (ms)": st.column_config.NumberColumn(format="%.0f"),
    })
names = {r.key_id: r.name for r in key_rows}
chart(charts.key_heatmap_figure(matrix, names, metric_label=HEATMAP[metric]), "an_heatmap")

st.subheader("One key")
by_id = {o.key_id: o for o in key_options}
drill = st.selectbox("Drill down to", list(by_id), index=None, placeholder="Choose a key",
                     format_func=lambda k: by_id[k].name, key="an_drill")
if drill is not None:
    key_filter = replace(flt, key_ids=(drill,), group=None, include_archived=True)
    with ctx.session() as session:
        one = stats.summary(session, key_filter)
    kpi_tiles(one.current, one.previous, flt.days)
    chart(charts.outcomes_figure(one.days), "an_key_outcomes")
    chart(charts.latency_figure(one.days), "an_key_latency")

st.subheader("Export")
per = st.radio("Rows", ["key-day", "day"], horizontal=True, key="an_per",
               format_func={"key-day": "One per key per day", "day": "One per day"}.__getitem__)
csv_download(ctx, flt, per)
st.caption("Counts match the database exactly; the file holds names and ids, never keys. "
           "Large exports: `python -m lib.cli export-stats --from … --to … -o FILE`.")
