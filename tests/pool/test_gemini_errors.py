import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest

from lib.pool.gemini_errors import (
    GeminiError,
    classify_error,
    classify_exception,
    cooldown_until,
)
from lib.pool.health import check_key
from tests.support.fake_gemini import FakeGemini, error_body
from tests.support.keys import fake_key

LA = ZoneInfo("America/Los_Angeles")




@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- classify_error -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "fake_kind, kind, reason, scope, retry, disables, counts",
    [
        ("invalid", "invalid", "API_KEY_INVALID", None, None, True, True),
        ("permission_denied", "permission_denied", "CONSUMER_SUSPENDED", None, None, True, True),
        ("leaked", "permission_denied", "leaked", None, None, True, True),
        ("service_blocked", "permission_denied", "API_KEY_SERVICE_BLOCKED", None, None, True, True),
        ("rate_limited_minute", "rate_limited", "RESOURCE_EXHAUSTED", "minute", 37, False, False),
        ("rate_limited_day", "rate_limited", "RESOURCE_EXHAUSTED", "day", 5, False, False),
        ("rate_limited_no_details", "rate_limited", "RESOURCE_EXHAUSTED", None, None, False, False),
        ("server_error", "server_error", "INTERNAL", None, None, False, False),
        ("overloaded", "server_error", "UNAVAILABLE", None, None, False, False),
    ],
)
def test_classify_error_google_bodies(fake_kind, kind, reason, scope, retry, disables, counts):
    status, body = error_body(fake_kind, fake_key())
    err = classify_error(status, json.dumps(body))
    assert (err.kind, err.status, err.reason, err.quota_scope) == (kind, status, reason, scope)
    assert err.retry_after == (None if retry is None else timedelta(seconds=retry))
    assert (err.disables_key, err.counts_as_key_failure) == (disables, counts)
    assert err.message


@pytest.mark.parametrize("as_type", [str, bytes, dict])
def test_classify_error_accepts_str_bytes_and_dict(as_type):
    status, body = error_body("rate_limited_day")
    raw = json.dumps(body)
    converted = {str: raw, bytes: raw.encode(), dict: body}[as_type]
    assert classify_error(status, converted).quota_scope == "day"


def test_classify_error_per_day_wins_over_short_retry_delay():
    err = classify_error(429, error_body("rate_limited_day")[1])
    assert err.retry_after == timedelta(seconds=5)
    assert err.quota_scope == "day"


def test_classify_error_list_wrapped_body():
    status, body = error_body("invalid")
    err = classify_error(status, json.dumps([body]))
    assert err.kind == "invalid" and err.reason == "API_KEY_INVALID" and err.disables_key


@pytest.mark.parametrize(
    "status, body, kind",
    [
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "server_error"),
        (429, "Too Many Requests", "rate_limited"),
        (400, "{not json", "unknown"),
        (500, b"\xff\xfe garbage", "server_error"),
        (429, "", "rate_limited"),
        (429, None, "rate_limited"),
        (429, [], "rate_limited"),
        (429, {"error": None}, "rate_limited"),
        (429, {"error": {"details": "not a list"}}, "rate_limited"),
        (429, {"error": {"details": [None, {"@type": "x.QuotaFailure", "violations": None}]}},
         "rate_limited"),
    ],
)
def test_classify_error_malformed_bodies(status, body, kind):
    err = classify_error(status, body)
    assert err.kind == kind and err.status == status
    assert err.quota_scope is None and err.retry_after is None
    assert not err.disables_key and not err.counts_as_key_failure


def test_classify_error_non_json_body_kept_as_short_message():
    err = classify_error(502, "<html>\n  <title>502   Bad Gateway</title>\n" + "x" * 1000)
    assert err.message.startswith("<html> <title>502 Bad Gateway</title>")
    assert len(err.message) <= 300


def test_classify_error_request_invalid_argument_does_not_disable_key():
    body = {"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": "* GenerateContentRequest.contents: contents is not specified",
    }}
    err = classify_error(400, body)
    assert err.kind == "unknown" and err.reason == "INVALID_ARGUMENT"
    assert not err.disables_key and not err.counts_as_key_failure


def test_classify_error_location_not_supported_is_not_the_keys_fault():
    body = {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                      "message": "User location is not supported for the API use."}}
    err = classify_error(400, body)
    assert err.kind == "unknown" and not err.disables_key and not err.counts_as_key_failure


def test_classify_error_invalid_key_without_details_recognised_by_message():
    body = {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                      "message": "API key not valid. Please pass a valid API key."}}
    assert classify_error(400, body).kind == "invalid"


@pytest.mark.parametrize(
    "quota_ids, scope",
    [
        (["GenerateRequestsPerMinutePerProjectPerModel-FreeTier"], "minute"),
        (["GenerateContentInputTokensPerModelPerMinute-FreeTier"], "minute"),
        (["GenerateRequestsPerHourPerProjectPerModel"], "minute"),  # hour: short cooldown too
        (["GenerateRequestsPerDayPerProjectPerModel-FreeTier"], "day"),
        (["GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
          "GenerateRequestsPerDayPerProjectPerModel-FreeTier"], "day"),
        (["SomethingElse"], None),
    ],
)
def test_classify_error_quota_scope_from_quota_id(quota_ids, scope):
    body = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaId": q} for q in quota_ids]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "59s"},
    ]}}
    assert classify_error(429, body).quota_scope == scope


@pytest.mark.parametrize(
    "delay, expected",
    [("37s", timedelta(seconds=37)), ("1.5s", timedelta(seconds=1.5)), ("0s", timedelta(0)),
     ({"seconds": 3, "nanos": 500_000_000}, timedelta(seconds=3.5)),
     ("37", None), ("soon", None), ("-5s", None), ("nans", None), (None, None)],
)
def test_classify_error_retry_delay_parsing(delay, expected):
    body = {"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}
    assert classify_error(429, body).retry_after == expected


def test_classify_error_redacts_and_trims_message():
    key = fake_key()
    body = {"error": {"code": 403, "message": f"Consumer 'api_key:{key}' suspended. " + "y" * 500}}
    err = classify_error(403, body)
    assert key not in err.message and key[:24] not in err.message
    assert "[REDACTED]" in err.message and len(err.message) <= 300


def test_classify_error_ok_and_network():
    assert classify_error(200, b'{"models": []}').kind == "ok"
    err = classify_error(None, None)
    assert err.kind == "network_error" and not err.counts_as_key_failure


def test_classify_error_error_inside_200_body_wins():
    _, body = error_body("overloaded")
    assert classify_error(200, [body]).kind == "server_error"


def test_classify_error_401_counts_but_does_not_disable():
    err = classify_error(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "x"}})
    assert err.kind == "invalid" and err.counts_as_key_failure and not err.disables_key


def test_classify_exception_timeout_has_no_key():
    err = classify_exception(TimeoutError("timed out"))
    assert err.kind == "network_error" and "timed out" in err.message


def test_gemini_error_is_frozen():
    with pytest.raises(AttributeError):
        classify_error(None, None).kind = "ok"  # type: ignore[misc]


# --- cooldown_until -------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # 12:00 in Los Angeles (PST)


def test_cooldown_until_minute_uses_retry_delay():
    err = classify_error(*error_body("rate_limited_minute"))
    assert cooldown_until(err, now=NOW) == NOW + timedelta(seconds=37)


@pytest.mark.parametrize("fake_kind", ["rate_limited_no_details"])
def test_cooldown_until_without_details_uses_default(fake_kind):
    err = classify_error(*error_body(fake_kind))
    assert cooldown_until(err, now=NOW) == NOW + timedelta(seconds=60)
    got = cooldown_until(err, now=NOW, default_minute_cooldown=timedelta(minutes=5))
    assert got == NOW + timedelta(minutes=5)


def test_cooldown_until_minute_without_retry_delay_uses_default():
    err = GeminiError(kind="rate_limited", status=429, quota_scope="minute")
    assert cooldown_until(err, now=NOW, default_minute_cooldown=timedelta(seconds=90)) == (
        NOW + timedelta(seconds=90)
    )


@pytest.mark.parametrize(
    "now, expected",
    [
        # Plain PST day.
        (datetime(2026, 11, 25, 20, 0, tzinfo=UTC), datetime(2026, 11, 26, 8, 0, tzinfo=UTC)),
        # 19:00 PST on the 25th is already the 26th in UTC: still LA's next midnight.
        (datetime(2026, 11, 26, 3, 0, tzinfo=UTC), datetime(2026, 11, 26, 8, 0, tzinfo=UTC)),
        # Day before DST ends (Sun 1 Nov 2026): midnight of the 1st is still PDT (UTC-7).
        (datetime(2026, 10, 31, 18, 0, tzinfo=UTC), datetime(2026, 11, 1, 7, 0, tzinfo=UTC)),
        # Day DST ends: the next midnight is PST (UTC-8); that day has 25 hours.
        (datetime(2026, 11, 1, 12, 0, tzinfo=UTC), datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
        # Eve of DST start (Sun 8 Mar 2026), 23:30 PST -> midnight PST.
        (datetime(2026, 3, 8, 7, 30, tzinfo=UTC), datetime(2026, 3, 8, 8, 0, tzinfo=UTC)),
        # DST start day, 05:00 PDT -> next midnight is PDT (UTC-7).
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 7, 0, tzinfo=UTC)),
        # A caller in another time zone gets the same instant, in UTC.
        (datetime(2026, 11, 26, 5, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
         datetime(2026, 11, 26, 8, 0, tzinfo=UTC)),
    ],
)
def test_cooldown_until_day_is_next_midnight_los_angeles(now, expected):
    err = classify_error(*error_body("rate_limited_day"))
    got = cooldown_until(err, now=now)
    assert got == expected and got.tzinfo is UTC
    local = got.astimezone(LA)
    assert (local.hour, local.minute) == (0, 0) and local.date() > now.astimezone(LA).date()


@pytest.mark.parametrize("fake_kind", ["invalid", "leaked", "server_error", "overloaded"])
def test_cooldown_until_none_for_other_kinds(fake_kind):
    assert cooldown_until(classify_error(*error_body(fake_kind)), now=NOW) is None


def test_cooldown_until_rejects_naive_now():
    err = classify_error(*error_body("rate_limited_minute"))
    with pytest.raises(ValueError):
        cooldown_until(err, now=datetime(2026, 11, 25, 12, 0))


# --- check_key against the fake -------------------------------------------------------------

@pytest.mark.parametrize(
    "fake_kind, status, http_status",
    [
        ("ok", "ok", 200),
        ("invalid", "invalid", 400),
        ("permission_denied", "permission_denied", 403),
        ("leaked", "permission_denied", 403),
        ("service_blocked", "permission_denied", 403),
        ("rate_limited_minute", "rate_limited", 429),
        ("rate_limited_day", "rate_limited", 429),
        ("rate_limited_no_details", "rate_limited", 429),
        ("server_error", "server_error", 500),
        ("overloaded", "server_error", 503),
    ],
)
def test_check_key_each_kind(fake, fake_kind, status, http_status):
    key = fake_key()
    fake.respond(key, fake_kind)
    result = check_key(key, base_url=fake.base_url, timeout=5)
    assert (result.status, result.http_status) == (status, http_status)
    assert key not in result.message and key not in repr(result)
    assert result.latency_ms > 0
    assert (result.error is None) == (status == "ok")


def test_check_key_day_quota_keeps_details(fake):
    key = fake_key()
    fake.respond(key, "rate_limited_day")
    err = check_key(key, base_url=fake.base_url).error
    assert err is not None and err.quota_scope == "day" and err.retry_after == timedelta(seconds=5)


def test_check_key_unknown_key_is_invalid(fake):
    result = check_key(fake_key(), base_url=fake.base_url)
    assert result.status == "invalid" and result.error and result.error.disables_key


def test_check_key_sends_key_only_in_header(fake):
    keys = [fake_key() for _ in range(3)]
    for key, kind in zip(keys, ["ok", "invalid", "permission_denied"], strict=True):
        fake.respond(key, kind)
        result = check_key(key, base_url=fake.base_url + "/")
        assert key not in result.message
    recorded = fake.requests
    assert [r.headers["x-goog-api-key"] for r in recorded] == keys
    for r in recorded:
        assert r.method == "GET" and r.path == "/v1beta/models?pageSize=1"
        assert not any(k in r.path for k in keys)
        assert "key=" not in r.path


def test_check_key_timeout_is_network_error(fake):
    key = fake_key()
    fake.respond(key, "slow")
    started = time.monotonic()
    result = check_key(key, base_url=fake.base_url, timeout=0.3)
    assert result.status == "network_error" and result.http_status is None
    assert "timed out" in result.message and key not in result.message
    assert time.monotonic() - started < 1.5


def test_check_key_slow_but_within_timeout_is_ok():
    key = fake_key()
    with FakeGemini(slow_seconds=0.1) as fake:
        fake.respond(key, "slow")
        assert check_key(key, base_url=fake.base_url, timeout=5).status == "ok"


def test_check_key_connection_refused_is_network_error(closed_port):
    key = fake_key()
    result = check_key(key, base_url=f"http://127.0.0.1:{closed_port}", timeout=2)
    assert result.status == "network_error" and result.error is not None
    assert not result.error.counts_as_key_failure
    assert "refused" in result.message.lower() and key not in result.message


@pytest.mark.parametrize("bad", ["", "AIza key with spaces", "AIzaABC\r\nX-Injected: 1", "AIzaé"])
def test_check_key_rejects_unsendable_key_without_request(fake, bad):
    result = check_key(bad, base_url=fake.base_url)
    assert result.status == "invalid" and result.http_status is None
    assert fake.requests == []
    assert bad not in result.message or bad == ""


def test_check_key_does_not_follow_redirects(fake):
    """urllib forwards custom headers on redirects, to any host: the key must not travel."""
    target = fake.base_url

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Redirect) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            key = fake_key()
            fake.respond(key, "ok")
            result = check_key(key, base_url=f"http://127.0.0.1:{server.server_address[1]}")
        finally:
            server.shutdown()
    assert result.status == "unknown" and result.http_status == 302
    assert fake.requests == []
