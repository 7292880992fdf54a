"""Overview alerts: each fires when it should and stays quiet when it should."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.analytics.alerts import AlertSettings, key_counts, overview_alerts
from lib.audit.log import Action, write_audit
from tests.support.stats_rows import insert_key, insert_stat

NOW = dt.datetime(2026, 3, 10, 12, 0)
TODAY = NOW.date()
USED = dt.datetime(2026, 3, 1)


def alerts_for(db, actor, **settings):
    with session_scope(actor, engine=db.engine) as s:
        return {a.kind: a for a in overview_alerts(s, now=NOW, settings=AlertSettings(**settings))}


def seed(db, fn):
    with session_scope(Actor.service("pool"), engine=db.engine) as s:
        return fn(s)


def test_auto_disabled_key_alerts_until_it_is_reactivated(db, admin_actor):
    def setup(s):
        key = insert_key(s, "gone", active=False, last_used=USED)
        write_audit(s, action=Action.KEY_AUTO_DISABLED, key_id=key, details={"reason": "403"})
        return key
    key = seed(db, setup)
    # write_audit stamps now(); the alert window is relative to the real clock here
    with session_scope(admin_actor, engine=db.engine) as s:
        found = {a.kind: a for a in overview_alerts(s)}
    assert "gone" in found["key_auto_disabled"].items[0]
    seed(db, lambda s: s.execute(text("UPDATE gemini_api_keys SET is_active = true "
                                      "WHERE id = :k"), {"k": key}))
    with session_scope(admin_actor, engine=db.engine) as s:
        assert "key_auto_disabled" not in {a.kind for a in overview_alerts(s)}


def test_archived_recently_alerts_and_old_archives_do_not(db, admin_actor):
    def setup(s):
        for name, age in (("fresh", 1), ("old", 30)):
            key = insert_key(s, name, archived=True, last_used=USED)
            s.execute(text("INSERT INTO gemini_key_audit_log (key_id, action, created_at) "
                           "VALUES (:k, 'key_archived', :at)"),
                      {"k": key, "at": NOW - dt.timedelta(days=age)})
    seed(db, setup)
    items = alerts_for(db, admin_actor)["key_archived"].items
    assert len(items) == 1 and items[0].startswith("fresh")


@pytest.mark.parametrize("norm_fail, today_fail, today_ok, fires", [
    (1, 30, 70, True),     # 1% norm → 30% today
    (30, 35, 65, False),   # a key that always fails a lot is not a spike
    (1, 5, 5, False),      # too few requests today to judge
    (None, 25, 75, True),  # no history: above the minimum rate is enough
    (1, 10, 90, False),    # 10% is under the minimum rate (20%)
])
def test_failure_spike_is_relative_to_the_keys_own_norm(db, admin_actor, norm_fail, today_fail,
                                                       today_ok, fires):
    def setup(s):
        key = insert_key(s, "k", last_used=USED)
        if norm_fail is not None:
            for n in range(1, 8):
                insert_stat(s, key, TODAY - dt.timedelta(days=n), ok=100 - norm_fail,
                            fail=norm_fail)
        insert_stat(s, key, TODAY, ok=today_ok, fail=today_fail)
    seed(db, setup)
    assert ("failure_spike" in alerts_for(db, admin_actor)) is fires


def test_top_tier_alert_only_when_every_top_key_is_out(db, admin_actor):
    def setup(s):
        insert_key(s, "top-cooling", priority=5, cooldown_minutes=30, last_used=USED)
        top = insert_key(s, "top-ok", priority=5, last_used=USED)
        insert_key(s, "low", priority=1, last_used=USED)
        insert_key(s, "archived-higher", priority=9, archived=True, last_used=USED)
        return top
    top = seed(db, setup)
    assert "top_tier_unavailable" not in alerts_for(db, admin_actor)
    seed(db, lambda s: s.execute(text("UPDATE gemini_api_keys SET is_active = false "
                                      "WHERE id = :k"), {"k": top}))
    alert = alerts_for(db, admin_actor)["top_tier_unavailable"]
    assert "(5)" in alert.title and "1 cooling down, 1 inactive" in alert.items[0]


@pytest.mark.parametrize("minimum, fires", [(1, False), (2, False), (3, True)])
def test_too_few_usable_keys_uses_the_configured_minimum(db, admin_actor, minimum, fires):
    seed(db, lambda s: [insert_key(s, n, last_used=USED) for n in ("a", "b")]
         + [insert_key(s, "c", cooldown_minutes=5, last_used=USED)])
    assert ("few_usable_keys" in alerts_for(db, admin_actor, min_usable_keys=minimum)) is fires
    with session_scope(admin_actor, engine=db.engine) as s:
        counts = key_counts(s, NOW)
    assert (counts.live, counts.usable, counts.cooling_down) == (3, 2, 1)


def test_never_used_lists_only_active_keys_without_any_traffic(db, admin_actor):
    def setup(s):
        insert_key(s, "fresh")
        insert_key(s, "off", active=False)
        with_stats = insert_key(s, "counted")  # last_used unset, but traffic recorded
        insert_stat(s, with_stats, TODAY, ok=1)
    seed(db, setup)
    assert alerts_for(db, admin_actor)["never_used"].items == ["fresh"]


def test_non_admin_gets_no_alerts(db, member_actor):
    seed(db, lambda s: insert_key(s, "fresh"))
    assert alerts_for(db, member_actor, min_usable_keys=0) == {}
