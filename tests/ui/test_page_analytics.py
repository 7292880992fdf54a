"""Analytics page under AppTest: KPIs from the database, charts, filters, empty state, guard."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.analytics.export import stats_csv
from lib.analytics.stats import StatsFilter
from lib.clock import utc_today
from tests.support.apptest import page_test
from tests.support.stats_rows import insert_key, insert_stat, insert_usage

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


def table_with(at: AppTest, column: str):
    """The first table on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


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


@pytest.fixture
def model_traffic(db):
    """alpha: today flash 40 ok (4000 prompt / 800 output / 100 thoughts), pro 10 (2 fail)
    (9000 / 1500); bravo 3 days ago flash 50 ok (1000 / 300). 45 days ago (the previous
    period) alpha flash 20 ok (500 / 100)."""
    today = utc_today()
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        a = insert_key(s, "alpha", group="team-a")
        b = insert_key(s, "bravo", group="team-b")
        insert_usage(s, a, today, {"gemini-2.5-flash": (40, 0, 0, 200.0, 4000, 800, 100),
                                   "gemini-2.5-pro": (8, 2, 0, 900.0, 9000, 1500)})
        insert_usage(s, b, today - dt.timedelta(days=3),
                     {"gemini-2.5-flash": (50, 0, 0, 100.0, 1000, 300)})
        insert_usage(s, a, today - dt.timedelta(days=45),
                     {"gemini-2.5-flash": (20, 0, 0, 100.0, 500, 100)})
    return {"alpha": a, "bravo": b}


def test_tokens_in_the_kpis_and_the_model_and_token_charts(model_traffic, admin_actor):
    at = page_as(admin_actor)
    assert not at.exception
    assert metric(at, "Requests").value == "100"
    assert metric(at, "Prompt tokens").value == "14,000"
    assert metric(at, "Output tokens").value == "2,600"
    assert metric(at, "Total tokens").value == "16,700"        # prompt + output + thoughts
    assert metric(at, "Total tokens").delta == "+2683.3%"      # vs 600
    # outcomes, latency, success rate, models, tokens per day, tokens per key, heatmap
    assert len(at.get("plotly_chart")) == 7
    models = table_with(at, "Model")
    assert list(models["Model"]) == ["gemini-2.5-flash", "gemini-2.5-pro"]
    assert list(models["Requests"]) == [90, 10]
    assert list(models["Total tokens"]) == [6200, 10500]


def test_model_filter_narrows_every_number(model_traffic, admin_actor):
    at = page_as(admin_actor)
    at.selectbox(key="an_model").select("gemini-2.5-pro").run()
    assert not at.exception
    assert metric(at, "Requests").value == "10"
    assert metric(at, "Failures").value == "2"
    assert metric(at, "Prompt tokens").value == "9,000"
    assert list(table_with(at, "Model")["Model"]) == ["gemini-2.5-pro"]
    assert list(table_with(at, "Key")["Requests"]) == [10, 0]


def test_token_sums_agree_between_table_page_and_csv(model_traffic, db, admin_actor):
    at = page_as(admin_actor)
    shown = {label: int(metric(at, label).value.replace(",", ""))
             for label in ("Prompt tokens", "Output tokens", "Total tokens")}
    with db.engine.connect() as c:
        table = c.execute(text(
            "SELECT sum(prompt_tokens), sum(output_tokens), sum(total_tokens) "
            "FROM gemini_key_model_usage_stats WHERE date > :since"),
            {"since": utc_today() - dt.timedelta(days=30)}).one()
    with session_scope(admin_actor, engine=db.app_engine) as s:  # what the page's button serves
        rows = list(csv.DictReader(io.StringIO("".join(stats_csv(
            s, StatsFilter.last_days(30), "key-model-day")))))
    from_csv = [sum(int(r[c]) for r in rows)
                for c in ("prompt_tokens", "output_tokens", "total_tokens")]
    assert list(shown.values()) == list(table) == from_csv == [14000, 2600, 16700]


def test_without_per_model_rows_the_page_says_so(traffic, admin_actor):
    at = page_as(admin_actor)
    assert any("No per-model usage" in i.value for i in at.info)
    assert metric(at, "Total tokens").value == "0"
