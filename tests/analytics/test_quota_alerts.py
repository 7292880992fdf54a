"""The Overview's quota alert: a group × model at 90 % of a limit warns, at 100 % it is an
error, below it stays quiet; non-admins get nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.analytics.alerts import QUOTA_NEAR_LIMIT, AlertSettings, overview_alerts
from lib.quotas.reads import quota_windows
from lib.quotas.writes import set_quota
from tests.support.stats_rows import insert_key

NOW = dt.datetime(2026, 3, 10, 20, 0, 30)  # 13:00:30 PDT (DST began on 8 March)


@pytest.fixture
def budget(db, admin_actor):
    with session_scope(Actor.service("system"), engine=db.engine) as session:
        insert_key(session, "a-1", group="proj-a", last_used=dt.datetime(2026, 3, 1))
    with session_scope(admin_actor, engine=db.app_engine) as session:
        set_quota(session, group_label="proj-a", model="gemini-2.5-pro", rpm=10, rpd=200)

    def use(*, minute: int, day: int) -> None:
        w = quota_windows(NOW)
        with session_scope(Actor.service("pool"), engine=db.app_engine) as session:
            session.execute(text("DELETE FROM gemini_quota_usage"))
            session.execute(text(
                "INSERT INTO gemini_quota_usage (project, model, window_kind, window_start,"
                " requests) VALUES ('proj-a', 'gemini-2.5-pro', 'm', :m, :mr),"
                " ('proj-a', 'gemini-2.5-pro', 'd', :d, :dr)"),
                {"m": w.minute_start, "mr": minute, "d": w.day_start, "dr": day})
    return use


def quota_alert(db, actor, **settings):
    with session_scope(actor, engine=db.app_engine) as session:
        found = overview_alerts(session, now=NOW, settings=AlertSettings(**settings))
    return next((a for a in found if a.kind == QUOTA_NEAR_LIMIT), None)


def test_quiet_below_90_percent(db, budget, admin_actor):
    budget(minute=8, day=179)
    assert quota_alert(db, admin_actor) is None


def test_warns_at_90_percent_with_the_reset_time(db, budget, admin_actor):
    budget(minute=9, day=100)
    alert = quota_alert(db, admin_actor)
    assert (alert.severity, alert.icon) == ("warning", ":material/speed:")
    assert alert.items == ["proj-a × gemini-2.5-pro: 9 of 10 requests per minute (90%), "
                           "resets 2026-03-10 20:01 UTC"]


def test_an_error_once_a_limit_is_reached(db, budget, admin_actor):
    budget(minute=1, day=200)
    alert = quota_alert(db, admin_actor)
    assert alert.severity == "error" and "holds back keys" in alert.title
    # midnight PDT is 07:00 UTC (it was 08:00 UTC before 8 March)
    assert alert.items[0].endswith("(100%), resets 2026-03-11 07:00 UTC")


def test_the_threshold_is_a_setting(db, budget, admin_actor):
    budget(minute=5, day=0)
    assert quota_alert(db, admin_actor) is None
    assert quota_alert(db, admin_actor, quota_near_fraction=0.5) is not None


def test_non_admins_get_no_quota_alert(db, budget, member_actor):
    budget(minute=10, day=200)
    assert quota_alert(db, member_actor) is None
