"""The notifier against a real local receiver: signed POSTs, Slack's format, retries and
their bound, the queue's bound, and dedupe in one process and across processes."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.session import Actor, session_scope
from lib.logging_setup import configure_logging
from lib.notify import delivery, events
from lib.notify.events import SIGNATURE_HEADER, TIMESTAMP_HEADER
from lib.settings import Settings
from tests.support.databases import REPO_ROOT
from tests.support.webhook_receiver import SECRET


def disabled(name: str = "main") -> events.Event:
    return events.key_auto_disabled(name=name, hint="AIza…k3Q9", group="proj-a",
                                    reason="invalid (400 API_KEY_INVALID)", trigger="pool")


def test_generic_post_is_signed_and_verifies(receiver, make_notifier):
    notifier = make_notifier()
    event = disabled()

    assert notifier.submit(event)
    [got] = receiver.wait_for(1)

    assert got.path == "/hooks/T000/B000/s3cr3tpathpart"
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["x-gemini-keys-event"] == "key.auto_disabled"
    timestamp = got.headers[TIMESTAMP_HEADER.lower()]
    assert events.verify_signature(SECRET, timestamp, got.body,
                                   got.headers[SIGNATURE_HEADER.lower()])
    assert not events.verify_signature("another-secret-0123456", timestamp, got.body,
                                       got.headers[SIGNATURE_HEADER.lower()])
    assert got.json()["id"] == event.id and got.json()["data"]["key_name"] == "main"


def test_without_a_secret_nothing_is_signed(receiver, make_notifier):
    make_notifier(secret="").submit(disabled())
    [got] = receiver.wait_for(1)
    assert SIGNATURE_HEADER.lower() not in got.headers


def test_slack_format_is_what_an_incoming_webhook_takes(receiver, make_notifier):
    make_notifier(format="slack").submit(events.few_usable_keys(usable=1, minimum=2, live=3))
    [got] = receiver.wait_for(1)
    payload = got.json()
    assert payload["text"].startswith("Too few usable keys: Only 1 usable key(s) left")
    assert payload["blocks"][0]["type"] == "section"


def test_retries_on_500_then_succeeds(receiver, make_notifier):
    receiver.answer(500, 503, 200)
    notifier = make_notifier(max_attempts=4)

    notifier.submit(disabled())
    notifier.flush(20)

    assert [d.status for d in receiver.received] == [500, 503, 200]
    assert len({d.body for d in receiver.received}) == 1  # the same event each time
    assert notifier.counts["sent"] == 1 and notifier.counts["retried"] == 2


def test_retries_stop_at_max_attempts_and_are_logged(receiver, make_notifier, caplog):
    receiver.answer(500)
    notifier = make_notifier(max_attempts=3)

    with caplog.at_level(logging.INFO, logger="gemini_keys.notify"):
        notifier.submit(disabled())
        assert notifier.flush(20)

    assert [d.status for d in receiver.received] == [500, 500, 500]
    assert notifier.counts["failed"] == 1 and notifier.counts["sent"] == 0
    assert "failed: HTTP 500 after 3 attempt(s)" in caplog.text
    assert "s3cr3tpathpart" not in caplog.text  # the URL's secret part never reaches a log
    assert "http://127.0.0.1" in caplog.text


def test_a_4xx_answer_is_not_retried(receiver, make_notifier):
    receiver.answer(404)
    notifier = make_notifier(max_attempts=5)
    notifier.submit(disabled())
    notifier.flush(20)
    assert [d.status for d in receiver.received] == [404]


def test_an_unreachable_receiver_is_a_logged_failure(make_notifier, caplog):
    notifier = make_notifier(urls=("http://127.0.0.1:9/hook/secretpart",), max_attempts=2)
    with caplog.at_level(logging.INFO, logger="gemini_keys.notify"):
        notifier.submit(disabled())
        notifier.flush(20)
    assert notifier.counts["failed"] == 1
    assert "after 2 attempt(s)" in caplog.text and "secretpart" not in caplog.text


def test_a_full_queue_drops_counts_and_logs(receiver, make_notifier, caplog):
    receiver.hold()
    notifier = make_notifier(queue_size=2)
    notifier.submit(disabled("first"))
    receiver.wait_arrived(1)  # the worker is now busy with "first"

    with caplog.at_level(logging.WARNING, logger="gemini_keys.notify"):
        accepted = [notifier.submit(disabled(name)) for name in ("a", "b", "c", "d")]

    assert accepted == [True, True, False, False]
    assert notifier.counts["dropped"] == 2
    assert "webhook queue full (2): dropped key.auto_disabled" in caplog.text
    receiver.release()
    receiver.wait_for(3)
    notifier.flush(20)
    assert sorted(e["data"]["key_name"] for e in receiver.events()) == ["a", "b", "first"]


def test_the_same_event_is_sent_once_per_window(receiver, make_notifier):
    notifier = make_notifier(dedupe_seconds=900)

    assert notifier.submit(disabled("main"))
    assert not notifier.submit(disabled("main"))
    assert notifier.submit(disabled("other"))  # another key is another subject
    notifier.flush(20)

    assert [e["data"]["key_name"] for e in receiver.events()] == ["main", "other"]
    assert notifier.counts["duplicate"] == 1


def test_no_window_means_no_dedupe(receiver, make_notifier):
    notifier = make_notifier(dedupe_seconds=0)
    assert notifier.submit(disabled()) and notifier.submit(disabled())
    notifier.flush(20)
    assert len(receiver.events()) == 2


def test_events_that_are_not_chosen_are_not_sent(receiver, make_notifier):
    notifier = make_notifier(events=frozenset({"master_key.rotated"}))
    assert not notifier.submit(disabled())
    notifier.flush(20)
    assert receiver.received == []


# -- across processes: the claim row -----------------------------------------------------

def claims(db) -> list[dict]:
    with db.engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(text(
            "SELECT dedupe_key, event_id::text AS event_id FROM gemini_notification_claims"))]


def test_two_processes_that_see_the_same_event_send_it_once(db, receiver, make_notifier):
    first, second = make_notifier(db.app_engine), make_notifier(db.app_engine)

    first.submit(disabled("main"))
    first.flush(20)
    second.submit(disabled("main"))  # new in ITS process, but claimed in the database
    second.flush(20)

    assert len(receiver.events()) == 1
    assert second.counts["claimed_elsewhere"] == 1
    [claim] = claims(db)
    assert claim["dedupe_key"] == "key.auto_disabled:main"
    assert claim["event_id"] == receiver.events()[0]["id"]


def test_an_expired_claim_is_taken_again(db, receiver, make_notifier):
    make_notifier(db.app_engine).submit(disabled())
    receiver.wait_for(1)
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE gemini_notification_claims "
                                "SET expires_at = now() AT TIME ZONE 'UTC' - interval '1 s'"))

    later = make_notifier(db.app_engine)
    later.submit(disabled())
    later.flush(20)

    assert len(receiver.events()) == 2


def test_a_failed_send_releases_its_claim(db, receiver, make_notifier):
    receiver.answer(500)
    notifier = make_notifier(db.app_engine, max_attempts=2)
    notifier.submit(disabled())
    notifier.flush(20)
    assert claims(db) == []  # another process (or a later occurrence) may try again


@pytest.mark.parametrize("actor", ["anon", "authenticated"])
def test_only_the_service_identity_touches_the_claims(db, admin_actor, actor):
    who = Actor.anonymous() if actor == "anon" else admin_actor
    with pytest.raises(DBAPIError, match="permission denied"), \
            session_scope(who, engine=db.app_engine) as session:
        session.execute(text("SELECT count(*) FROM gemini_notification_claims"))


def test_the_readme_s_verification_code_accepts_our_signature(receiver, make_notifier):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Verifying the signature", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own README's snippet
    make_notifier().submit(disabled())
    [got] = receiver.wait_for(1)
    headers = {"X-Gemini-Keys-Timestamp": got.headers["x-gemini-keys-timestamp"],
               "X-Gemini-Keys-Signature": got.headers["x-gemini-keys-signature"]}

    assert namespace["verify"](SECRET, headers, got.body)
    assert not namespace["verify"](SECRET, headers, got.body.replace(b"main", b"mane"))
    assert not namespace["verify"]("wrong-secret-0123456789", headers, got.body)


def test_configured_urls_and_the_secret_are_redacted_from_every_log(receiver, caplog):
    slack = "https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/Xy7sEcReTtOkEn1234abcd"
    settings = Settings.load({"GEMINI_KEYS_WEBHOOK_URLS": f"{receiver.url} {slack}",
                              "GEMINI_KEYS_WEBHOOK_SECRET": SECRET})
    configure_logging(settings.log_level)  # as every process does at start-up (lib.runtime)
    with caplog.at_level(logging.INFO, logger="gemini_keys"):
        assert delivery.configure(settings, None) is not None
        logging.getLogger("gemini_keys.test").warning("oops: %s and %s", slack, SECRET)
        delivery.shutdown(timeout=5)
    assert "Xy7sEcReTtOkEn1234abcd" not in caplog.text and SECRET not in caplog.text
    assert "s3cr3tpathpart" not in caplog.text
    assert "https://hooks.slack.com/…" in caplog.text  # "webhooks on: …" names the hosts
