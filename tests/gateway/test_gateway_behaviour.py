"""What the gateway does on its own: tokens, allow-lists, limits, failover, streaming without
buffering, client disconnects, its own Gemini-shaped errors, health and metrics."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from sqlalchemy import text

from db.session import Actor, session_scope
from lib.runtime import build_runtime
from lib.tokens import revoke_token
from tests.support.gateway import new_token, running_gateway, wait_until
from tests.support.pool import add, key_row

GENERATE = "/v1beta/models/gemini-2.0-flash:generateContent"
BODY = {"contents": [{"parts": [{"text": "hi"}]}]}


@pytest.fixture
def runtime(db):
    return build_runtime(apply_migrations=False)


@pytest.fixture
def gateway(runtime, fake):
    with running_gateway(fake.base_url) as url:
        yield url


def post(url: str, token: str | None, path: str = GENERATE, **kwargs):
    headers = {"x-goog-api-key": token} if token else {}
    kwargs.setdefault("json", BODY)
    return httpx.post(url + path, headers=headers, timeout=30, **kwargs)


def upstream_keys(fake) -> list[str]:
    return [r.headers.get("x-goog-api-key") for r in fake.requests]


def test_missing_wrong_and_revoked_tokens_get_401_and_nothing_goes_upstream(
        runtime, fake, gateway):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    token = new_token()
    for bad in (None, "gkat_" + "x" * 43, api_key, token[:-1]):
        answer = post(gateway, bad)
        assert answer.status_code == 401
        assert answer.json()["error"]["status"] == "UNAUTHENTICATED"
    assert fake.requests == []
    assert post(gateway, token).status_code == 200
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        revoke_token(session, "svc")
    assert post(gateway, token).status_code == 401  # the very next request
    assert len(fake.requests) == 1


@pytest.mark.parametrize("how", ["header", "query", "bearer"])
def test_the_token_is_taken_as_each_sdk_sends_it_and_never_forwarded(runtime, fake, gateway,
                                                                     how):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    token = new_token()
    headers, params = {}, {}
    if how == "header":
        headers["x-goog-api-key"] = token
    elif how == "query":
        params["key"] = token
    else:
        headers["authorization"] = f"Bearer {token}"
    answer = httpx.post(gateway + GENERATE, json=BODY, headers=headers, params=params,
                        timeout=30)
    assert answer.status_code == 200, answer.text
    [request] = fake.requests
    assert token not in request.path + repr(request.headers)
    assert "key=" not in request.path and "authorization" not in request.headers
    assert request.headers["x-goog-api-key"] == api_key


def test_a_model_outside_the_allow_list_is_refused_with_403(runtime, fake, gateway):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    token = new_token(models="gemini-2.0-flash")
    assert post(gateway, token).status_code == 200
    refused = post(gateway, token, "/v1beta/models/gemini-2.5-pro:generateContent")
    assert refused.status_code == 403 and refused.json()["error"]["status"] == (
        "PERMISSION_DENIED")
    openai = httpx.post(gateway + "/v1beta/openai/chat/completions",
                        headers={"authorization": f"Bearer {token}"}, timeout=30,
                        json={"model": "gemini-2.5-pro", "messages": []})
    assert openai.status_code == 403
    assert len(fake.requests) == 1


def test_a_body_over_the_limit_gets_413(runtime, fake):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    token = new_token()
    with running_gateway(fake.base_url, max_body_bytes=2048) as url:
        assert post(url, token).status_code == 200
        big = post(url, token, content=b"x" * 4096, json=None)
        assert big.status_code == 413
        chunked = httpx.post(url + GENERATE, headers={"x-goog-api-key": token}, timeout=30,
                             content=iter([b"x" * 1500, b"x" * 1500]))  # no Content-Length
        assert chunked.status_code == 413
    assert len(fake.requests) == 1


def test_a_per_day_429_fails_over_to_another_project(runtime, fake, gateway, db):
    first, first_key = add(runtime, "project-a", priority=5, group="a")
    _, second_key = add(runtime, "project-b", priority=1, group="b")
    fake.respond(first_key, "rate_limited_day")
    fake.respond(second_key, "ok")
    answer = post(gateway, new_token())
    assert answer.status_code == 200 and "candidates" in answer.json()
    assert upstream_keys(fake) == [first_key, second_key]
    with db.engine.connect() as connection:  # project a rests for that model only
        cooled = connection.execute(text(
            "SELECT project, model FROM gemini_model_cooldowns WHERE cooldown_until > now()"
            " AT TIME ZONE 'UTC'")).all()
    assert [tuple(row) for row in cooled] == [("a", "gemini-2.0-flash")]


def test_a_5xx_on_the_best_key_retries_on_the_next_one_not_the_same(runtime, fake, gateway):
    _, best = add(runtime, "best", priority=9)
    _, next_best = add(runtime, "next", priority=1)
    fake.respond(best, "server_error")  # a 5xx never cools a key: only exclude= moves on
    fake.respond(next_best, "ok")
    answer = post(gateway, new_token())
    assert answer.status_code == 200
    assert upstream_keys(fake) == [best, next_best]


def test_5xx_and_network_errors_fail_over_and_the_last_failure_is_a_502(runtime, fake):
    _, a = add(runtime, "a")
    _, b = add(runtime, "b")
    _, c = add(runtime, "c")
    fake.respond(a, "server_error")
    fake.respond(b, "overloaded")
    fake.respond(c, "server_error")
    token = new_token()
    with running_gateway(fake.base_url, max_attempts=3) as url:
        answer = post(url, token)
        assert answer.status_code == 502 and answer.json()["error"]["code"] == 502
        assert sorted(upstream_keys(fake)) == sorted([a, b, c])  # three keys, one each
    with running_gateway("http://127.0.0.1:9", max_attempts=2) as url:  # nothing listens
        assert post(url, token).status_code == 502


def test_request_errors_go_back_as_they_are_without_retry_or_blame(runtime, fake, gateway,
                                                                   db):
    key_id, api_key = add(runtime, "k", priority=2)
    _, other = add(runtime, "other", priority=1)
    fake.respond(api_key, "ok")
    fake.respond(other, "ok")
    answer = post(gateway, new_token(), "/v1beta/models/missing-model:generateContent")
    assert answer.status_code == 404 and answer.json()["error"]["status"] == "NOT_FOUND"
    assert upstream_keys(fake) == [api_key]
    def recorded() -> int:
        with db.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM gemini_key_usage_stats")
                                      ).scalar()
    assert wait_until(lambda: recorded() == 1)
    row = key_row(db, key_id)
    assert row["consecutive_failures"] == 0 and row["is_active"] is True


def test_no_usable_key_gets_429_with_retry_after(runtime, fake, gateway):
    token = new_token()
    answer = post(gateway, token)
    assert answer.status_code == 429
    assert answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert int(answer.headers["retry-after"]) >= 1
    _, a = add(runtime, "only")
    fake.respond(a, "rate_limited_minute")
    again = post(gateway, token)
    assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1


def test_the_first_streamed_chunk_arrives_before_the_upstream_has_finished(runtime, fake,
                                                                            gateway):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    fake.stream_gate = threading.Event()  # the fake holds every chunk after the first
    token = new_token()
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    with httpx.stream("POST", gateway + path, json=BODY, headers={"x-goog-api-key": token},
                      timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["candidates"][0]["content"]["parts"][0]["text"] == (
            "chunk0 ")
        assert fake.streams_finished == 0  # the upstream is still held at its second chunk
        fake.stream_gate.set()
        rest = [line for line in lines if line.startswith("data:")]
    assert len(rest) == 2 and "usageMetadata" in rest[-1]
    assert wait_until(lambda: fake.streams_finished == 1)


def test_a_client_that_goes_away_cancels_the_upstream_stream(runtime, fake, gateway):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    fake.stream_gate = threading.Event()  # never set: the upstream would wait
    token = new_token()
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    with httpx.stream("POST", gateway + path, json=BODY, headers={"x-goog-api-key": token},
                      timeout=30) as response:
        next(response.iter_raw())
    # The fake notices its client (the gateway) hung up while it was still waiting.
    assert wait_until(lambda: fake.streams_cut == 1, timeout=8)
    assert fake.streams_finished == 0


def test_healthz_needs_no_token_and_metrics_hold_no_secret(runtime, fake, gateway):
    _, api_key = add(runtime, "k")
    fake.respond(api_key, "ok")
    token = new_token()
    assert httpx.get(gateway + "/healthz").json() == {"status": "ok"}
    post(gateway, token)
    post(gateway, None)
    listed = httpx.get(gateway + "/v1beta/models", headers={"x-goog-api-key": token})
    assert listed.status_code == 200 and listed.json()["models"]
    one = httpx.get(gateway + "/v1/models/gemini-2.0-flash", params={"key": token})
    assert one.json()["name"] == "models/gemini-2.0-flash"
    metrics = httpx.get(gateway + "/metrics").text
    assert 'gateway_requests_total{route="generateContent",code="200"} 1' in metrics
    assert 'gateway_errors_total{kind="unauthenticated"} 1' in metrics
    assert 'gateway_upstream_attempts_total{outcome="ok"} 3' in metrics
    assert 'gateway_requests_total{route="models",code="200"} 2' in metrics
    assert "gateway_request_duration_seconds_bucket" in metrics
    assert "gateway_keys_usable 1" in metrics
    assert token not in metrics and api_key not in metrics and fake.requests
