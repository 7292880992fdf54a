"""The Overview page: today, the last 7 days, what needs attention, the last 14 days."""

from __future__ import annotations

import streamlit as st

from lib.analytics import alerts, charts, stats
from lib.clock import utc_now
from lib.quotas.reads import quota_usage_today
from lib.ui.analytics import chart
from lib.ui.identity import AdminContext
from lib.ui.quotas import quota_overview
from lib.ui.text import md, md_join

ICONS = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}


def overview_page(ctx: AdminContext) -> None:
    settings = alerts.AlertSettings(min_usable_keys=ctx.runtime.settings.min_usable_keys)
    now = utc_now()
    today = now.date()
    with ctx.session() as session:
        today_totals, week_totals = alerts.overview_totals(session, today)
        counts = alerts.key_counts(session, now)
        quotas = quota_usage_today(session, now=now)
        found = alerts.overview_alerts(session, now=now, settings=settings, counts=counts,
                                       quotas=quotas)
        last_14 = stats.daily_totals(session, stats.StatsFilter.last_days(14, today=today))

    st.caption(md("Today is {} (UTC). Stats days are UTC days.", today))
    tiles = st.columns(4)
    tiles[0].metric("Requests today", f"{today_totals.requests:,}")
    tiles[1].metric("Failures today", f"{today_totals.failures:,}")
    tiles[2].metric("429s today", f"{today_totals.rate_limited:,}")
    tiles[3].metric("Usable keys", f"{counts.usable} of {counts.live}",
                    help="Active, not archived, not cooling down.")
    week = st.columns(4)
    week[0].metric("Requests, last 7 days", f"{week_totals.requests:,}")
    week[1].metric("Success rate, last 7 days",
                   "—" if week_totals.success_rate is None else f"{week_totals.success_rate:.1%}")
    week[2].metric("429s, last 7 days", f"{week_totals.rate_limited:,}")
    week[3].metric("Avg latency, last 7 days",
                   "—" if week_totals.avg_latency_ms is None
                   else f"{week_totals.avg_latency_ms:,.0f} ms", help="Weighted by requests.")

    st.subheader("Needs attention")
    if not found:
        st.success("Nothing needs attention.", icon=":material/check_circle:")
    for alert in found:
        getattr(st, alert.severity)(
            md_join([md("**{}**", alert.title), *(md("- {}", item) for item in alert.items)]),
            icon=alert.icon or ICONS[alert.severity])

    quota_overview(quotas)

    st.subheader("Last 14 days")
    if any(d.requests for d in last_14):
        chart(charts.outcomes_figure(last_14), "ov_outcomes")
    else:
        st.info("No requests recorded in the last 14 days. New install? "
                "`python -m lib.cli seed-demo --keys 12 --days 90` adds labelled demo data.")
    st.caption("Trends, per-key comparison and CSV export: see Analytics.")
