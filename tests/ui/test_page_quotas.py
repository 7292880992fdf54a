"""Budgets on the pages under AppTest: the Keys page's Quotas tab (set, clear, lift a mark,
bad input) and the Overview's section and 90 % alert."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.quotas.reads import quota_windows
from lib.quotas.writes import set_quota
from tests.support.apptest import button, page_test, shown
from tests.support.keys import key_audit_rows
from tests.support.stats_rows import insert_key

pytestmark = pytest.mark.one_server

GROUP = "proj-*a*"  # Markdown in a group label must show as typed


@pytest.fixture
def grouped(db) -> None:
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        insert_key(session, "a-1", group=GROUP)
        insert_key(session, "b-1", group="proj-b")


def limits(db) -> dict[tuple[str, str], tuple]:
    with db.engine.connect() as connection:
        return {(r.group_label, r.model): (r.rpm, r.tpm, r.rpd) for r in connection.execute(
            text("SELECT group_label, model, rpm, tpm, rpd FROM gemini_quota_limits"))}


def add_usage(db, group: str, model: str, *, day_requests: int, minute_tokens: int = 0):
    w = quota_windows()
    with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
        session.execute(text(
            "INSERT INTO gemini_quota_usage (project, model, window_kind, window_start,"
            " requests, tokens) VALUES (:g, :m, 'd', :day, :r, 0), (:g, :m, 'm', :minute, 0, :t)"),
            {"g": group, "m": model, "day": w.day_start, "minute": w.minute_start,
             "r": day_requests, "t": minute_tokens})


def usage_frame(at: AppTest):
    return next(d.value for d in at.dataframe if "requests today" in d.value.columns)


def keys_page(actor) -> AppTest:
    return page_test("keys", actor).run()


def test_admin_sets_a_limit_in_the_quotas_tab(db, grouped, admin_actor):
    at = keys_page(admin_actor)
    assert not at.exception
    assert at.selectbox(key="quotas_group").options == [GROUP, "proj-b"]
    at.selectbox(key="quotas_group").select(GROUP)
    at.text_input(key="quotas_model").input("gemini-2.5-flash")
    at.number_input(key="quotas_rpm").set_value(10)
    at.number_input(key="quotas_rpd").set_value(250)
    button(at, "Save limit").click().run()
    assert not at.exception
    assert shown(at.success[0].value) == (
        f"Quota of {GROUP} × gemini-2.5-flash set: rpm 10, tpm no limit, rpd 250.")
    assert limits(db) == {(GROUP, "gemini-2.5-flash"): (10, None, 250)}
    assert [r["action"] for r in key_audit_rows(db)] == ["quota_set"]
    frame = usage_frame(at)
    assert list(frame["group"]) == [GROUP] and list(frame["requests today"]) == ["0 of 250 (0%)"]
    assert r"proj\-\*a\*" in at.success[0].value  # escaped: no emphasis on the page


@pytest.mark.parametrize("model, message", [
    ("", "Name the model"),
    ("Gemini Flash", "model id"),
])
def test_bad_input_in_the_tab_explains_and_stores_nothing(db, grouped, admin_actor, model,
                                                          message):
    at = keys_page(admin_actor)
    at.text_input(key="quotas_model").input(model)
    at.number_input(key="quotas_rpd").set_value(5)
    button(at, "Save limit").click().run()
    assert "Not saved" in shown(at.error[0].value) and message in shown(at.error[0].value)
    assert limits(db) == {} and key_audit_rows(db) == []


def test_a_limit_needs_at_least_one_number(db, grouped, admin_actor):
    at = keys_page(admin_actor)
    at.text_input(key="quotas_model").input("gemini-2.5-pro")
    button(at, "Save limit").click().run()
    assert "at least one of rpm, tpm, rpd" in shown(at.error[0].value)
    assert limits(db) == {}


def test_the_tab_shows_todays_use_and_clears_a_limit(db, grouped, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-b", model="gemini-2.5-pro", tpm=1000, rpd=100)
        set_quota(session, group_label=GROUP, model="gemini-2.5-pro", rpd=0)
    add_usage(db, "proj-b", "gemini-2.5-pro", day_requests=95)
    at = keys_page(admin_actor)
    frame = usage_frame(at).set_index("group")
    assert frame.loc["proj-b", "requests today"] == "95 of 100 (95%)"
    assert frame.loc["proj-b", "fullest"] == pytest.approx(0.95)
    assert frame.loc[GROUP, "state"] == "no quota (rpd = 0)"
    at.selectbox(key="quotas_clear_choice").select("proj-b × gemini-2.5-pro")
    button(at, "Clear limit").click().run()
    assert "Cleared the quota of proj-b × gemini-2.5-pro" in shown(at.success[0].value)
    assert limits(db) == {(GROUP, "gemini-2.5-pro"): (None, None, 0)}


def test_admin_lifts_a_no_quota_mark(db, grouped, admin_actor):
    with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
        session.execute(text(
            "INSERT INTO gemini_model_cooldowns (project, model, no_quota, reason)"
            " VALUES ('proj-b', 'gemini-2.5-pro', true, '[click](http://evil.example) limit: 0')"))
    at = keys_page(admin_actor)
    marks = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(marks["state"]) == ["no quota"]
    assert at.selectbox(key="quotas_mark_choice").options == ["proj-b × gemini-2.5-pro"]
    button(at, "Clear mark").click().run()
    assert shown(at.success[0].value) == "Cleared the no-quota mark of proj-b × gemini-2.5-pro."
    with db.engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM gemini_model_cooldowns")) == 0
    assert [r["action"] for r in key_audit_rows(db)] == ["model_mark_cleared"]


def test_without_groups_the_tab_says_to_group_keys_first(db, admin_actor):
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        insert_key(session, "lone")
    at = keys_page(admin_actor)
    assert not at.exception
    assert any("give keys a group" in c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Save limit"]


# -- the Overview ------------------------------------------------------------------------------

def test_overview_shows_use_against_limits_and_the_next_reset(db, grouped, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-b", model="gemini-2.5-pro", rpd=100)
        set_quota(session, group_label="proj-b", model="gemini-2.5-flash", rpd=1000)
    add_usage(db, "proj-b", "gemini-2.5-pro", day_requests=92)
    add_usage(db, "proj-b", "gemini-2.5-flash", day_requests=10)
    at = page_test("overview", admin_actor).run()
    assert not at.exception
    frame = usage_frame(at).set_index("model")
    assert frame.loc["gemini-2.5-pro", "requests today"] == "92 of 100 (92%)"
    assert frame.loc["gemini-2.5-flash", "requests today"] == "10 of 1,000 (1%)"
    assert frame.loc["gemini-2.5-pro", "rpd resets"] == quota_windows().next_day
    assert any("next reset" in c.value and "UTC" in c.value for c in at.caption)
    [alert] = [w for w in at.warning if "Quotas at 90%" in shown(w.value)]
    assert "proj-b × gemini-2.5-pro: 92 of 100 requests per day (92%)" in shown(alert.value)
    assert "gemini-2.5-flash" not in shown(alert.value)
    assert alert.icon == ":material/speed:"


def test_overview_alert_is_an_error_once_a_limit_is_reached(db, grouped, admin_actor):
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-b", model="gemini-2.5-pro", rpd=100)
    add_usage(db, "proj-b", "gemini-2.5-pro", day_requests=100)
    at = page_test("overview", admin_actor).run()
    [alert] = [e for e in at.error if "Quotas at 90%" in shown(e.value)]
    assert "holds back keys" in shown(alert.value) and "(100%)" in shown(alert.value)


def test_overview_without_quotas_says_how_to_set_them(db, grouped, admin_actor):
    at = page_test("overview", admin_actor).run()
    assert any("No quotas set" in c.value for c in at.caption)
    assert not [w for w in at.warning if "Quotas at" in w.value]
