"""Plotly figures for the analytics pages (plain Python; the page passes them to Streamlit).

No template or background is set: the page renders with theme="streamlit", which picks light
or dark backgrounds and fonts. The series colours are mid-tones that read on both.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from lib.analytics.stats import DayRow, KeyTokens, ModelRow, TokenDay

SUCCESS = "#3FA66B"
FAILURE = "#D9534F"
RATE_LIMITED = "#E8A33D"
LATENCY = "#4C8DF6"
PROMPT = "#4C8DF6"
OUTPUT = "#9B6BD6"
THOUGHTS = "#2FB3B3"
HEIGHT = 300


def _layout(fig: go.Figure, *, y_title: str, **extra: Any) -> go.Figure:
    fig.update_layout(
        height=HEIGHT, margin=dict(l=10, r=10, t=30, b=10), hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        yaxis_title=y_title, xaxis_title=None, **extra)
    return fig


def outcomes_figure(days: Sequence[DayRow]) -> go.Figure:
    """Stacked daily bars: successes, failures, rate-limited (they add up to requests)."""
    x = [d.day for d in days]
    fig = go.Figure([
        go.Bar(x=x, y=[d.successes for d in days], name="Success", marker_color=SUCCESS),
        go.Bar(x=x, y=[d.failures for d in days], name="Failure", marker_color=FAILURE),
        go.Bar(x=x, y=[d.rate_limited for d in days], name="Rate-limited (429)",
               marker_color=RATE_LIMITED),
    ])
    return _layout(fig, y_title="Requests", barmode="stack")


def latency_figure(days: Sequence[DayRow]) -> go.Figure:
    """Daily average latency weighted by requests; quiet days are gaps (nothing to average)."""
    fig = go.Figure(go.Scatter(
        x=[d.day for d in days], y=[d.avg_latency_ms for d in days], mode="lines+markers",
        name="Avg latency", line=dict(color=LATENCY), connectgaps=False,
        hovertemplate="%{y:.0f} ms<extra></extra>"))
    return _layout(fig, y_title="ms (weighted by requests)", showlegend=False)


def success_rate_figure(days: Sequence[DayRow]) -> go.Figure:
    fig = go.Figure(go.Scatter(
        x=[d.day for d in days], y=[d.success_rate for d in days], mode="lines+markers",
        name="Success rate", line=dict(color=SUCCESS), connectgaps=False,
        hovertemplate="%{y:.1%}<extra></extra>"))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return _layout(fig, y_title="Success rate", showlegend=False)


def key_heatmap_figure(matrix: Sequence[tuple[uuid.UUID, dt.date, Any]],
                       names: Mapping[uuid.UUID, str], *, metric_label: str) -> go.Figure:
    """Keys (rows, in the given order) × days heatmap of one metric."""
    order: list[uuid.UUID] = []
    days: list[dt.date] = []
    values: dict[uuid.UUID, list[Any]] = {}
    for key_id, day, value in matrix:
        if key_id not in values:
            order.append(key_id)
            values[key_id] = []
        if len(order) == 1:
            days.append(day)
        values[key_id].append(value)
    fig = go.Figure(go.Heatmap(
        z=[values[k] for k in order], x=days, y=[names.get(k, str(k)) for k in order],
        colorscale="Viridis", colorbar=dict(title=metric_label), hoverongaps=False,
        hovertemplate="%{y}<br>%{x}: %{z}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(HEIGHT, 22 * len(order) + 80),
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def action_counts_figure(counts: Mapping[str, int]) -> go.Figure:
    """Horizontal bars: audit entries per action, most frequent on top."""
    fig = go.Figure(go.Bar(x=list(counts.values()), y=list(counts), orientation="h",
                           hovertemplate="%{y}: %{x}<extra></extra>"))
    fig.update_layout(height=60 + 22 * len(counts), margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      yaxis={"autorange": "reversed", "title": None},
                      xaxis={"title": "entries"})
    return fig


def model_breakdown_figure(rows: Sequence[ModelRow], labels: Sequence[str]) -> go.Figure:
    """Horizontal stacked bars per model (labels already Plotly-safe): its successes,
    failures and 429s, so each bar's length is the model's requests."""
    fig = go.Figure([
        go.Bar(y=list(labels), x=[r.successes for r in rows], name="Success",
               orientation="h", marker_color=SUCCESS),
        go.Bar(y=list(labels), x=[r.failures for r in rows], name="Failure",
               orientation="h", marker_color=FAILURE),
        go.Bar(y=list(labels), x=[r.rate_limited for r in rows], name="Rate-limited (429)",
               orientation="h", marker_color=RATE_LIMITED),
    ])
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(160, 60 + 40 * len(rows)), barmode="stack",
                      margin=dict(l=10, r=10, t=30, b=10), xaxis_title="Requests",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left",
                                  x=0))
    return fig


def tokens_figure(days: Sequence[TokenDay]) -> go.Figure:
    """Daily tokens, stacked: prompt (input) vs output, and thinking tokens on top."""
    x = [d.day for d in days]
    fig = go.Figure([
        go.Bar(x=x, y=[d.tokens.prompt for d in days], name="Prompt", marker_color=PROMPT),
        go.Bar(x=x, y=[d.tokens.output for d in days], name="Output", marker_color=OUTPUT),
        go.Bar(x=x, y=[d.tokens.thoughts for d in days], name="Thoughts",
               marker_color=THOUGHTS),
    ])
    return _layout(fig, y_title="Tokens", barmode="stack")


def key_tokens_figure(rows: Sequence[KeyTokens], names: Sequence[str]) -> go.Figure:
    """Horizontal stacked bars per key (names already Plotly-safe): prompt vs output."""
    fig = go.Figure([
        go.Bar(y=list(names), x=[r.tokens.prompt for r in rows], name="Prompt",
               orientation="h", marker_color=PROMPT),
        go.Bar(y=list(names), x=[r.tokens.output for r in rows], name="Output",
               orientation="h", marker_color=OUTPUT),
        go.Bar(y=list(names), x=[r.tokens.thoughts for r in rows], name="Thoughts",
               orientation="h", marker_color=THOUGHTS),
    ])
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=max(HEIGHT, 60 + 22 * len(rows)), barmode="stack",
                      margin=dict(l=10, r=10, t=30, b=10), xaxis_title="Tokens",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left",
                                  x=0))
    return fig
