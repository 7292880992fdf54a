"""Audit log queries: filters, keyset pages that lose and repeat nothing, counts, directory."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.audit.queries import (
    AuditFilter,
    Change,
    action_counts,
    day_range,
    describe_details,
    fetch_page,
    key_directory,
    resolve_keys,
    resolve_users,
    summary,
    user_directory,
)
from lib.errors import InvalidInput, NotFound
from tests.support.audit_rows import BASE_TIME, insert_rows, make_rows, seed
from tests.support.databases import make_user


def all_rows(db) -> list[dict]:
    """Every audit row, newest first, read as the owner (the reference the queries must match)."""
    with db.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, key_id, action, user_id, created_at, details FROM gemini_key_audit_log"
            " ORDER BY created_at DESC, id DESC")).mappings().all()
    return [dict(r) for r in rows]


def matches(row: dict, flt: AuditFilter, *, with_actions: bool = True) -> bool:
    import json

    return ((flt.since is None or row["created_at"] >= flt.since)
            and (flt.until is None or row["created_at"] < flt.until)
            and (not with_actions or not flt.actions or row["action"] in flt.actions)
            and (not flt.key_ids or row["key_id"] in flt.key_ids)
            and (not flt.user_ids or row["user_id"] in flt.user_ids)
            and flt.search.strip().lower() in json.dumps(row["details"]).lower())


def walk_older(session, flt, page_size, between=None) -> list[uuid.UUID]:
    seen, page = [], fetch_page(session, flt, page_size=page_size)
    while True:
        seen.extend(e.id for e in page.entries)
        if not page.has_older:
            return seen
        if between:
            between()
        page = fetch_page(session, flt, page_size=page_size, older_than=page.oldest)


@pytest.fixture
def seeded(db, admin_actor):
    other = make_user(db, "other@example.com", admin=True)
    return seed(db, admin_actor, 120, other_user_id=other.user_id)


def filters(seeded) -> list[AuditFilter]:
    return [
        AuditFilter(),
        AuditFilter(since=BASE_TIME - dt.timedelta(minutes=20)),
        AuditFilter(until=BASE_TIME - dt.timedelta(minutes=10)),
        AuditFilter(*day_range(BASE_TIME.date(), BASE_TIME.date())),
        AuditFilter(actions=("key_checked",)),
        AuditFilter(actions=("key_added", "admin_granted")),
        AuditFilter(key_ids=(seeded.key_ids[1],)),
        AuditFilter(key_ids=(seeded.deleted_key_id,)),
        AuditFilter(user_ids=(seeded.user_ids[1],)),
        AuditFilter(search="100%_sure"),  # LIKE wildcards are taken literally
        AuditFilter(search="NOTE 1"),  # case-insensitive
        AuditFilter(search="no such text"),
        AuditFilter(since=BASE_TIME - dt.timedelta(minutes=30), actions=("key_renamed",),
                    key_ids=(seeded.key_ids[0], seeded.key_ids[2]),
                    user_ids=(seeded.user_ids[0],), search="note"),
    ]


def test_every_filter_pages_exactly_the_matching_rows_newest_first(db, seeded, admin_actor):
    reference = all_rows(db)
    for flt in filters(seeded):
        expected = [r["id"] for r in reference if matches(r, flt)]
        with session_scope(admin_actor, engine=db.engine) as session:
            for page_size in (7, 200):
                assert walk_older(session, flt, page_size) == expected, (flt, page_size)
    assert any(r["details"].get("note") == "100%_sure" for r in reference)


def test_paging_loses_and_repeats_nothing_while_new_rows_arrive(db, seeded, admin_actor):
    before = [r["id"] for r in all_rows(db)]
    arrivals = iter(range(1000))

    def new_rows_arrive():
        # Written "now", in their own transactions, between two page loads.
        with session_scope(admin_actor, engine=db.engine) as session:
            for _ in range(3):
                session.execute(text("INSERT INTO gemini_key_audit_log (action, details) "
                                     "VALUES ('key_checked', jsonb_build_object('n', :n))"),
                                {"n": next(arrivals)})

    with session_scope(admin_actor, engine=db.engine) as session:
        seen = walk_older(session, AuditFilter(), 9, between=new_rows_arrive)
    assert seen == before
    assert len(all_rows(db)) > len(before)


def test_rows_sharing_a_timestamp_are_split_across_pages_without_loss(db, admin_actor):
    rows = make_rows(50, [None], [admin_actor.user_id], same_time_every=50)
    insert_rows(db, rows)
    with session_scope(admin_actor, engine=db.engine) as session:
        seen = walk_older(session, AuditFilter(actions=("key_added", "key_renamed",
                                                        "key_checked", "key_cooldown",
                                                        "admin_granted")), 4)
    assert sorted(seen) == sorted(r["id"] for r in rows)
    assert len(set(seen)) == 50


def test_newer_goes_back_through_the_same_pages(db, seeded, admin_actor):
    flt = AuditFilter(until=BASE_TIME + dt.timedelta(minutes=1))
    with session_scope(admin_actor, engine=db.engine) as session:
        pages = [fetch_page(session, flt, page_size=10)]
        while pages[-1].has_older:
            pages.append(fetch_page(session, flt, page_size=10, older_than=pages[-1].oldest))
        assert not pages[0].has_newer and all(p.has_newer for p in pages[1:])
        assert len(pages) == 12 and not pages[-1].has_older
        back = pages[-1]
        for expected in reversed(pages[:-1]):
            back = fetch_page(session, flt, page_size=10, newer_than=back.newest)
            assert [e.id for e in back.entries] == [e.id for e in expected.entries]


def test_newer_from_near_the_top_returns_the_full_newest_page(db, seeded, admin_actor):
    with session_scope(admin_actor, engine=db.engine) as session:
        top = fetch_page(session, AuditFilter(), page_size=10)
        second = fetch_page(session, AuditFilter(), page_size=10,
                            older_than=top.entries[2].cursor)
        back = fetch_page(session, AuditFilter(), page_size=10, newer_than=second.newest)
    assert [e.id for e in back.entries] == [e.id for e in top.entries]
    assert not back.has_newer


def test_entries_show_key_names_deleted_keys_and_actor_emails(db, seeded, admin_actor):
    with session_scope(admin_actor, engine=db.engine) as session:
        entries = fetch_page(session, AuditFilter(key_ids=(seeded.deleted_key_id,)),
                             page_size=200).entries
        by_user = fetch_page(session, AuditFilter(user_ids=(seeded.user_ids[1],)),
                             page_size=1).entries
        by_pool = fetch_page(session, AuditFilter(search='"pool"'), page_size=1).entries
    assert entries and {e.key_label for e in entries} == {"gone-key (deleted)"}
    assert by_user[0].actor == "other@example.com"
    assert by_pool[0].user_id is None and by_pool[0].actor == "pool"


def test_action_counts_cover_the_range_and_ignore_the_action_filter(db, seeded, admin_actor):
    flt = AuditFilter(since=BASE_TIME - dt.timedelta(minutes=15), actions=("key_added",))
    expected = Counter(r["action"] for r in all_rows(db) if matches(r, flt, with_actions=False))
    with session_scope(admin_actor, engine=db.engine) as session:
        counts = action_counts(session, flt)
    assert counts == dict(expected) and len(counts) == 6  # 5 seeded verbs + user_created
    assert list(counts.values()) == sorted(counts.values(), reverse=True)


def test_non_admin_sees_no_entries_counts_or_users(db, seeded, member_actor):
    with session_scope(member_actor, engine=db.engine) as session:
        assert fetch_page(session, AuditFilter()).entries == []
        assert action_counts(session, AuditFilter()) == {}
        assert user_directory(session) == {}
        assert key_directory(session) == []


@pytest.mark.parametrize("actor_kind", ["admin", "service"])
def test_user_directory_lists_every_user_for_admins_and_the_service(db, seeded, admin_actor,
                                                                    actor_kind):
    actor = admin_actor if actor_kind == "admin" else Actor.service("cli")
    with session_scope(actor, engine=db.engine) as session:
        emails = set(user_directory(session).values())
        keys = key_directory(session)
    assert emails == {"admin@example.com", "other@example.com"}
    assert ("gone-key", True) in {(name, deleted) for _, name, deleted in keys}


def test_resolve_keys_and_users_by_name_id_and_email(db, seeded, admin_actor):
    with session_scope(admin_actor, engine=db.engine) as session:
        assert resolve_keys(session, ["SEED-KEY-1"]) == (seeded.key_ids[1],)
        assert resolve_keys(session, [str(seeded.deleted_key_id), "gone-key"]) == (
            seeded.deleted_key_id,)
        assert resolve_users(session, [" Other@Example.com "]) == (seeded.user_ids[1],)
        with pytest.raises(NotFound, match="No key named 'nope'"):
            resolve_keys(session, ["nope"])
        with pytest.raises(NotFound, match="No user"):
            resolve_users(session, ["nobody@example.com"])


@pytest.mark.parametrize("kwargs, message", [
    ({"since": BASE_TIME, "until": BASE_TIME}, "must be before"),
    ({"since": BASE_TIME, "until": BASE_TIME - dt.timedelta(seconds=1)}, "must be before"),
    ({"search": "x" * 201}, "limited to 200"),
])
def test_bad_filters_are_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        AuditFilter(**kwargs)


def test_time_zone_aware_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive UTC"):
        AuditFilter(since=dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("page_size", [0, -1, 501])
def test_bad_page_sizes_are_refused(db, admin_actor, page_size):
    with session_scope(admin_actor, engine=db.engine) as session, \
            pytest.raises(InvalidInput, match="Page size"):
        fetch_page(session, AuditFilter(), page_size=page_size)


def test_day_range_includes_the_last_day():
    assert day_range(dt.date(2026, 1, 1), dt.date(2026, 1, 31)) == (
        dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1))
    assert day_range(None, None) == (None, None)


@pytest.mark.parametrize("details, expected", [
    ({"before": {"name": "a", "priority": 1}, "after": {"name": "b"}},
     [Change("name", "a", "b"), Change("priority", 1, None)]),
    ({"name": {"before": "a", "after": "b"}, "source": "app"},
     [Change("name", "a", "b"), Change("source", None, "app", True)]),
    ({"changes": {"is_active": {"before": True, "after": False}}},
     [Change("is_active", True, False)]),
    ({"before": 1, "after": 2}, [Change("value", 1, 2)]),
    ({"reason": "429"}, [Change("reason", None, "429", True)]),
    ({}, []),
])
def test_describe_details_reads_before_and_after(details, expected):
    assert describe_details(details) == expected


@pytest.mark.parametrize("details, expected", [
    ({"name": "k", "before": {"priority": 1}, "after": {"priority": 5}, "source": "app",
      "actor_email": "a@example.com"}, "priority: 1 → 5; name: k"),
    ({"reason": None, "group": {"before": None, "after": "p1"}}, "reason: —; group: — → p1"),
    ({"error": "x" * 100}, "error: " + "x" * 39 + "…"),
    ({"is_admin": True, "before": {"is_active": False}, "after": {"is_active": True}},
     "is_active: false → true; is_admin: true"),
])
def test_summary_is_one_readable_line_without_context_fields(details, expected):
    assert summary(details) == expected
