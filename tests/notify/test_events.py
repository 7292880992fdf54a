"""The event vocabulary and the wire formats: what a receiver gets, and what it never gets."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from lib.errors import ConfigurationError
from lib.notify import events
from lib.settings import WEBHOOK_EVENTS, Settings
from tests.support.keys import KINDS, fake_key

UNTIL = dt.datetime(2026, 12, 3, 8, 0)


def every_event(reason: str = "invalid (400 API_KEY_INVALID)") -> list[events.Event]:
    return [
        events.key_auto_disabled(name="main", hint="AIza…k3Q9", group="proj-a", reason=reason,
                                 trigger="pool"),
        events.group_cooling_down(group="proj-a", keys=3, until=UNTIL, scope="day",
                                  caused_by="main"),
        events.tier_cooling_down(priority=9, keys=2, back_at=UNTIL),
        events.few_usable_keys(usable=1, minimum=2, live=4),
        events.quota_near_limit(group="proj-a", model="gemini-2.0-flash", limit_name="RPD",
                                used=1350, limit=1500, resets_at=UNTIL),
        events.master_key_rotated(rotated=4, skipped_deleted=1, old_version=1, new_version=2,
                                  source="cli"),
    ]


def test_every_event_kind_has_a_builder():
    assert [e.kind for e in every_event()] == list(WEBHOOK_EVENTS)


def test_generic_payload_carries_kind_id_time_and_data():
    event = every_event()[0]
    payload = json.loads(events.body_of(event, "generic"))
    assert payload["event"] == "key.auto_disabled" and payload["id"] == event.id
    assert payload["occurred_at"].endswith("Z") and payload["severity"] == "error"
    assert payload["data"] == {"key_name": "main", "key_hint": "AIza…k3Q9", "group": "proj-a",
                               "reason": "invalid (400 API_KEY_INVALID)", "trigger": "pool"}
    assert "“main” (AIza…k3Q9, group proj-a)" in payload["summary"]


def test_slack_payload_has_text_and_blocks_and_cannot_mention_anyone():
    event = events.key_auto_disabled(name="<!channel> & <https://evil|click>", hint=None,
                                     group=None, reason="denied", trigger="health check")
    payload = json.loads(events.body_of(event, "slack"))
    assert set(payload) == {"text", "blocks"}
    rendered = json.dumps(payload)
    assert "<!channel>" not in rendered and "<https://evil" not in rendered
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in payload["text"]
    assert payload["blocks"][0]["text"]["type"] == "mrkdwn"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("format", ["generic", "slack"])
def test_a_key_in_any_text_is_redacted_from_the_payload(kind, format):
    key = fake_key(kind)
    leaked = every_event(reason=f"Gemini said: key {key} is bad")
    body = b"".join(events.body_of(e, format) for e in leaked).decode()
    assert key not in body and "[REDACTED]" in body
    for event in leaked:
        json.loads(events.body_of(event, format))  # still valid JSON after redaction


def test_signature_verifies_and_any_change_breaks_it():
    body = events.body_of(every_event()[0], "generic")
    header = events.signature("s" * 20, "1764643200", body)
    assert header.startswith("v1=") and len(header) == 3 + 64
    assert events.verify_signature("s" * 20, "1764643200", body, header)
    assert not events.verify_signature("s" * 20, "1764643201", body, header)
    assert not events.verify_signature("t" * 20, "1764643200", body, header)
    assert not events.verify_signature("s" * 20, "1764643200", body + b" ", header)


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/…"),
    ("http://127.0.0.1:8080/hook?token=abc", "http://127.0.0.1:8080/…"),
    ("https://example.com", "https://example.com"),
])
def test_redacted_url_keeps_the_host_only(url, shown):
    assert events.redacted_url(url) == shown


def test_quota_events_dedupe_until_the_quota_resets():
    event = every_event()[4]
    assert event.dedupe_until == UNTIL
    assert "RPD" in event.dedupe_key and "90%" in event.summary


# -- settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x",
                                 "javascript:alert(1)", "hooks.slack.com/services/X",
                                 "https://user:pw@example.com/hook"])
def test_non_http_urls_and_urls_with_passwords_are_refused(url):
    with pytest.raises(ConfigurationError, match="GEMINI_KEYS_WEBHOOK_URLS") as raised:
        Settings.load({"GEMINI_KEYS_WEBHOOK_URLS": f"https://ok.example.com/a {url}"})
    assert "/etc/passwd" not in str(raised.value) and "pw@" not in str(raised.value)


def test_webhook_settings_parse_lists_and_hide_secrets():
    settings = Settings.load({
        "GEMINI_KEYS_WEBHOOK_URLS": "https://a.example.com/x, https://hooks.slack.com/T/B/C",
        "GEMINI_KEYS_WEBHOOK_EVENTS": "master_key.rotated,key.auto_disabled",
        "GEMINI_KEYS_WEBHOOK_FORMAT": "Slack",
        "GEMINI_KEYS_WEBHOOK_SECRET": "x" * 16})
    assert settings.webhook_urls == ("https://a.example.com/x", "https://hooks.slack.com/T/B/C")
    assert settings.webhook_events == ("key.auto_disabled", "master_key.rotated")
    assert settings.webhook_format == "slack"
    assert "hooks.slack.com" not in repr(settings) and "x" * 16 not in repr(settings)


@pytest.mark.parametrize("env, message", [
    ({"GEMINI_KEYS_WEBHOOK_EVENTS": "key.deleted"}, "unknown: 'key.deleted'"),
    ({"GEMINI_KEYS_WEBHOOK_FORMAT": "teams"}, "generic, slack"),
    ({"GEMINI_KEYS_WEBHOOK_SECRET": "short"}, "at least 16"),
    ({"GEMINI_KEYS_WEBHOOK_MAX_ATTEMPTS": "0"}, "between 1 and 10"),
    ({"GEMINI_KEYS_WEBHOOK_QUEUE_SIZE": "0"}, "between 1 and 10000"),
])
def test_bad_webhook_settings_are_refused(env, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(env)
