"""Overview page under AppTest: today's and the week's totals, alerts, chart, guard."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from db.session import Actor, session_scope
from lib.audit.log import Action, write_audit
from lib.clock import utc_today
from tests.support.apptest import page_test, shown
from tests.support.stats_rows import insert_key, insert_stat

pytestmark = pytest.mark.one_server


def page_as(actor: Actor | None) -> AppTest:
    return page_test("overview", actor).run()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def all_alert_text(at: AppTest) -> str:
    return "\n".join(shown(e.value) for e in (*at.error, *at.warning, *at.info, *at.success))


@pytest.fixture
def fleet(db):
    today = utc_today()
    with session_scope(Actor.service("pool"), engine=db.engine) as s:
        busy = insert_key(s, "busy", priority=2, last_used=dt.datetime(2026, 1, 1))
        broken = insert_key(s, "broken", priority=2, active=False)
        insert_key(s, "spare", priority=1)  # never used
        insert_stat(s, busy, today, ok=40, fail=10, latency=200.0)
        insert_stat(s, busy, today - dt.timedelta(days=6), ok=50, latency=100.0)
        insert_stat(s, busy, today - dt.timedelta(days=7), ok=999)  # outside the 7 days
        write_audit(s, action=Action.KEY_AUTO_DISABLED, key_id=broken,
                    details={"reason": "403 PERMISSION_DENIED"})
    return today


def test_admin_sees_today_and_week_totals(fleet, admin_actor):
    at = page_as(admin_actor)
    assert not at.exception
    assert metric(at, "Requests today") == "50"
    assert metric(at, "Failures today") == "10"
    assert metric(at, "Requests, last 7 days") == "100"
    assert metric(at, "Success rate, last 7 days") == "90.0%"
    assert metric(at, "Avg latency, last 7 days") == "150 ms"  # (50×200 + 50×100) / 100
    assert metric(at, "Usable keys") == "2 of 3"
    assert len(at.get("plotly_chart")) == 1


def test_admin_sees_the_alerts_to_act_on(fleet, admin_actor, db):
    at = page_as(admin_actor)
    shown = all_alert_text(at)
    assert "disabled automatically" in shown and "broken" in shown
    assert "403 PERMISSION_DENIED" in shown
    assert "Failure rate today far above" in shown and "busy" in shown
    assert "never used" in shown and "spare" in shown
    assert "top priority tier" not in shown  # busy (priority 2) is still usable
    assert "usable key" not in shown


def test_alerts_when_top_tier_and_pool_run_dry(fleet, admin_actor, db):
    with session_scope(Actor.service("pool"), engine=db.engine) as s:
        s.execute(text("UPDATE gemini_api_keys SET cooldown_until = now() + interval '1 hour' "
                       "WHERE name = 'busy'"))
    shown = all_alert_text(page_as(admin_actor))
    assert "Every key of the top priority tier (2) is unavailable" in shown
    assert "Only 1 usable key (minimum 2)" in shown


def test_minimum_usable_keys_is_configurable(fleet, admin_actor, monkeypatch):
    monkeypatch.setenv("GEMINI_KEYS_MIN_USABLE_KEYS", "5")
    from lib.ui.runtime import _runtime

    _runtime.clear()  # the runtime (and its settings) is cached per server
    try:
        assert "Only 2 usable keys (minimum 5)" in all_alert_text(page_as(admin_actor))
    finally:
        _runtime.clear()


def test_quiet_fleet_says_nothing_needs_attention(db, admin_actor):
    with session_scope(Actor.service("cli"), engine=db.engine) as s:
        for name in ("one", "two"):
            key = insert_key(s, name, last_used=dt.datetime(2026, 1, 1))
            insert_stat(s, key, utc_today(), ok=10)
    at = page_as(admin_actor)
    assert [shown(e.value) for e in at.success] == ["Nothing needs attention."]
    assert not at.error and not at.warning
