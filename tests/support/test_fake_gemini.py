"""The fake Gemini itself: the pool, health and gateway tests rely on it behaving like Google."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from lib.pool.gemini_errors import classify_error
from lib.pool.health import check_key
from tests.support.fake_gemini import KINDS, FakeGemini
from tests.support.keys import fake_key


def _post(url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 - local fake, http only
        url, data=b'{"contents": [{"parts": [{"text": "hi"}]}]}', method="POST",
        headers={"x-goog-api-key": key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def test_fake_generate_content_and_sequenced_responses(fake):
    key = fake_key()
    fake.respond(key, "rate_limited_minute", "ok")
    url = fake.base_url + "/v1beta/models/gemini-2.0-flash:generateContent"
    status, body = _post(url, key)
    assert status == 429 and classify_error(status, body).quota_scope == "minute"
    for _ in range(2):  # the last kind sticks
        status, body = _post(url, key)
        assert status == 200
        assert body["candidates"][0]["content"]["parts"][0]["text"] == "OK"
    assert [r.method for r in fake.requests] == ["POST"] * 3


def test_fake_rejects_unknown_kind_and_route(fake):
    with pytest.raises(ValueError):
        fake.respond(fake_key(), "nonsense")
    status, body = _post(fake.base_url + "/v1beta/nope", fake_key())
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    assert "slow" in KINDS


def test_fake_wakes_a_slow_request_when_it_shuts_down():
    key = fake_key()
    with FakeGemini(slow_seconds=30) as fake:
        fake.respond(key, "slow")
        thread = threading.Thread(target=check_key, args=(key,),
                                  kwargs={"base_url": fake.base_url, "timeout": 0.2})
        thread.start()
        thread.join()
    # Closing woke the handler that was still sleeping: the server thread is gone.
    assert fake._closing.is_set() and not fake._thread.is_alive()
