"""The Audit page under AppTest: guard, newest first, filters, keyset paging, details, export."""

from __future__ import annotations

import datetime as dt

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.apptest import page_test, shown
from tests.support.audit_rows import BASE_TIME, seed

pytestmark = pytest.mark.one_server
SEED_DAY = (BASE_TIME.date(), BASE_TIME.date())


def open_page(actor=None) -> AppTest:
    return page_test("audit", actor).run()


def table(at):
    return at.dataframe[0].value


@pytest.fixture
def seeded(db, admin_actor):
    return seed(db, admin_actor, 60)


@pytest.fixture
def page(seeded, admin_actor) -> AppTest:
    """The page as an admin, dates set to the seeded day, 25 per page."""
    at = open_page(admin_actor)
    at.date_input(key="audit_days").set_value(SEED_DAY)
    at.selectbox(key="audit_page_size").set_value(25)
    return at.run()


def test_anonymous_and_non_admin_see_no_entries(db, seeded, member_actor):
    for at in (open_page(), open_page(member_actor)):
        assert not at.exception
        assert not at.dataframe and not at.get("plotly_chart")
        assert not at.get("download_button")
        assert "Audit log" not in [t.value for t in at.title]  # stopped at the guard


def test_default_view_shows_the_last_30_days_newest_first(db, seeded, admin_actor):
    at = open_page(admin_actor)
    assert not at.exception
    rows = table(at)
    # Only the user_created row of today's admin is in the last 30 days; the seed is older.
    assert list(rows["action"]) == ["user_created"]
    assert list(rows["actor"]) == ["cli"]  # created by the CLI service, no user behind it
    assert at.metric[0].value == "1"


def test_seeded_day_pages_older_and_newer_without_loss(page, seeded):
    expected = [r["id"] for r in seeded.rows]
    first = table(page)
    assert list(first["time (UTC)"])[0] == BASE_TIME.strftime("%Y-%m-%d %H:%M:%S")
    assert page.metric[0].value == "60"
    assert page.button(key="audit_newer").disabled
    seen = []
    for _ in range(3):
        seen.append(table(page))
        if page.button(key="audit_older").disabled:
            break
        page.button(key="audit_older").click().run()
    assert [len(t) for t in seen] == [25, 25, 10]
    times = [t for frame in seen for t in frame["time (UTC)"]]
    assert times == sorted(times, reverse=True) and len(times) == len(expected)
    page.button(key="audit_newer").click().run()
    assert table(page).equals(seen[1])
    page.button(key="audit_newest").click().run()
    assert table(page).equals(seen[0])


@pytest.mark.parametrize("widget, value, expected_count", [
    ("audit_actions", ["key_renamed"], 12),
    ("audit_search", "100%_sure", 9),
])
def test_filters_narrow_the_table_and_the_total(page, widget, value, expected_count):
    if widget == "audit_actions":
        page.multiselect(key=widget).set_value(value)
    else:
        page.text_input(key=widget).input(value)
    page.run()
    assert not page.exception
    assert page.metric[0].value == str(expected_count)
    assert len(table(page)) == expected_count


def test_key_and_actor_filters_include_deleted_keys(page, seeded):
    page.selectbox(key="audit_key").set_value(seeded.deleted_key_id).run()
    frame = table(page)
    assert set(frame["key"]) == {"gone-key (deleted)"} and len(frame) == 15
    page.selectbox(key="audit_actor").set_value(seeded.user_ids[0]).run()
    assert set(table(page)["actor"]) == {"admin@example.com"}


def test_paging_resets_to_newest_when_a_filter_changes(page):
    page.button(key="audit_older").click().run()
    assert not page.button(key="audit_newer").disabled
    page.multiselect(key="audit_actions").set_value(["key_checked"]).run()
    assert page.button(key="audit_newer").disabled
    assert len(table(page)) == 12


def test_entry_details_show_before_and_after(page, seeded):
    page.selectbox(key="audit_entry").set_value(1).run()
    details = page.table[0].value
    row = seeded.rows[1]
    assert list(details.columns) == ["field", "before", "after"]
    priority = details[details["field"] == "priority"].iloc[0]
    assert (priority["before"], priority["after"]) == ("", str(row["details"]["after"]
                                                               ["priority"]))
    assert str(row["id"]) in shown(page.caption[-2].value)


def test_counts_chart_and_exports_are_offered(page):
    assert page.get("plotly_chart")
    labels = [b.proto.label for b in page.get("download_button")]
    assert labels == ["Download CSV", "Download JSON lines"]


def test_empty_range_says_so(db, admin_actor):
    at = open_page(admin_actor)
    at.date_input(key="audit_days").set_value((dt.date(2020, 1, 1), dt.date(2020, 1, 2))).run()
    assert not at.exception and not at.dataframe
    assert "No audit entries match" in shown(at.info[0].value)
