"""Analytics page under AppTest: KPIs from the database, charts, filters, empty state, guard."""

from __future__ import annotations

import datetime as dt

import pytest
from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.clock import utc_today
from tests.support.apptest import page_test
from tests.support.stats_rows import insert_key, insert_stat

pytestmark = pytest.mark.one_server


def page_as(actor: Actor | None) -> AppTest:
    return page_test("analytics", actor).run()


@pytest.fixture
def traffic(db):
    """Two keys; the last 30 days and the 30 before them have known sums."""
    today = utc_today()
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        a = insert_key(s, "alpha", group="team-a")
        b = insert_key(s, "bravo", group="team-b")
        insert_stat(s, a, today, ok=90, fail=6, rl=4, latency=100.0)          # 100 requests
        insert_stat(s, b, today - dt.timedelta(days=3), ok=300, latency=400.0)  # 300 requests
        insert_stat(s, a, today - dt.timedelta(days=40), ok=150, fail=50)     # previous period
    return {"alpha": a, "bravo": b}


def metric(at: AppTest, label: str):
    return next(m for m in at.metric if m.label == label)


def test_admin_sees_kpis_with_change_against_previous_period(traffic, admin_actor):
    at = page_as(admin_actor)
    assert not at.exception
    assert metric(at, "Requests").value == "400"
    assert metric(at, "Requests").delta == "+100.0%"          # 400 vs 200
    assert metric(at, "Failures").value == "6"
    assert metric(at, "Rate-limited (429)").value == "4"
    assert metric(at, "Success rate").value == "97.5%"        # 390 / 400
    assert metric(at, "Success rate").delta == "+22.5 pp"     # vs 75.0%
    # (100 × 100 + 300 × 400) / 400 = 325, not the mean of means (250)
    assert metric(at, "Avg latency").value == "325 ms"


def test_admin_sees_the_charts_and_the_key_table(traffic, admin_actor):
    at = page_as(admin_actor)
    # outcomes, latency, success rate, heatmap
    assert len(at.get("plotly_chart")) == 4
    table = at.dataframe[0].value
    assert list(table["Key"]) == ["alpha", "bravo"]  # sorted by failures
    assert list(table["Requests"]) == [100, 300]


def test_group_filter_narrows_the_kpis(traffic, admin_actor):
    at = page_as(admin_actor)
    at.selectbox(key="an_group").select("team-b").run()
    assert metric(at, "Requests").value == "300"
    assert metric(at, "Failures").value == "0"


def test_drill_down_shows_one_key(traffic, admin_actor):
    at = page_as(admin_actor)
    at.selectbox(key="an_drill").select(traffic["alpha"]).run()
    requests = [m.value for m in at.metric if m.label == "Requests"]
    assert requests == ["400", "100"]  # the whole filter, then the one key
    assert len(at.get("plotly_chart")) == 6


def test_seven_day_preset_drops_older_traffic(traffic, admin_actor):
    at = page_as(admin_actor)
    at.radio(key="an_range").set_value("7 days").run()
    assert metric(at, "Requests").value == "400"
    at.radio(key="an_range").set_value("Custom").run()
    today = utc_today()
    at.date_input(key="an_range_custom").set_value((today, today)).run()
    assert metric(at, "Requests").value == "100"


def test_empty_state_without_traffic(db, admin_actor):
    at = page_as(admin_actor)
    assert not at.exception
    assert any("No requests recorded" in i.value for i in at.info)
    assert len(at.get("plotly_chart")) == 0
