"""The gateway as its users meet it: the official google-genai and openai SDKs, base URL at
the gateway, against the local fake Gemini; the fake's request log shows what went upstream."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types
from openai import OpenAI

from lib.runtime import build_runtime
from tests.support.gateway import new_token, running_gateway, wait_until
from tests.support.pool import add


@pytest.fixture
def world(db, fake):
    runtime = build_runtime(apply_migrations=False)
    keys = [add(runtime, f"key-{i}") for i in range(2)]
    for _, api_key in keys:
        fake.respond(api_key, "ok")
    token = new_token()
    with running_gateway(fake.base_url) as url:
        yield url, token, keys


def assert_clean_upstream(fake, token: str, keys) -> None:
    """The client's token never reached Gemini; keys only ever travelled in headers."""
    plain = {api_key for _, api_key in keys}
    assert fake.requests
    for request in fake.requests:
        text = request.path + repr(request.headers) + request.body.decode("utf-8", "replace")
        assert token not in text
        assert not any(k in request.path for k in plain)
        assert "key=" not in request.path
        sent = request.headers.get("x-goog-api-key") or request.headers["authorization"][7:]
        assert sent in plain


def test_google_genai_sdk_through_the_gateway(world, fake, db):
    url, token, keys = world
    client = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=url))
    answer = client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert answer.text == "OK"
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash",
                                                        contents="hi"))
    assert "".join(c.text for c in chunks) == "chunk0 chunk1 chunk2 "
    assert chunks[-1].usage_metadata.total_token_count == 8
    assert client.models.count_tokens(model="gemini-2.0-flash", contents="hi").total_tokens == 3
    embedded = client.models.embed_content(model="text-embedding-004", contents="hi")
    assert embedded.embeddings[0].values == [0.1, 0.2, 0.3]
    assert_clean_upstream(fake, token, keys)
    assert any(":streamGenerateContent?alt=sse" in r.path for r in fake.requests)
    assert all(r.headers.get("x-goog-api-key") for r in fake.requests)


def test_openai_sdk_through_the_gateway(world, fake):
    url, token, keys = world
    client = OpenAI(api_key=token, base_url=url + "/v1beta/openai/")
    answer = client.chat.completions.create(
        model="gemini-2.0-flash", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "OK" and answer.usage.total_tokens == 8
    stream = client.chat.completions.create(
        model="gemini-2.0-flash", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    events = list(stream)
    assert "".join(e.choices[0].delta.content or "" for e in events if e.choices) == (
        "chunk0 chunk1 chunk2 ")
    assert events[-1].usage.total_tokens == 8
    embedded = client.embeddings.create(model="text-embedding-004", input="hi")
    assert embedded.data[0].embedding == [0.1, 0.2, 0.3]
    assert [m.id for m in client.models.list()] == ["models/gemini-2.0-flash"]
    assert_clean_upstream(fake, token, keys)
    assert all(r.headers["authorization"].startswith("Bearer ") for r in fake.requests)
    assert not any("x-goog-api-key" in r.headers for r in fake.requests)


def test_every_request_is_counted_for_its_token_with_its_tokens(world, fake, db):
    from sqlalchemy import text
    url, token, _ = world
    client = genai.Client(api_key=token, http_options=types.HttpOptions(base_url=url))
    client.models.generate_content(model="gemini-2.0-flash", contents="hi")
    list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"))

    def usage():
        with db.engine.connect() as connection:
            return connection.execute(text(
                "SELECT request_count, error_count, total_tokens, last_used_at "
                "FROM gemini_access_token_usage")).all()
    assert wait_until(lambda: usage() and usage()[0][0] == 2)
    [(requests, errors, tokens, last_used)] = usage()
    assert (requests, errors) == (2, 0)
    assert tokens == 2 + 8  # the plain answer's usageMetadata, then the stream's last chunk
    assert last_used is not None
