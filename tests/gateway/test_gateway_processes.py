"""Two `serve-gateway` processes share one database and nothing else: a token revoked
through one is refused by both, a key cooled down by one is skipped by the other, and both
count into the same per-token row."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
from sqlalchemy import text

from lib.gateway.app import DB_THREADS
from lib.runtime import build_runtime
from tests.support.databases import REPO_ROOT
from tests.support.gateway import gateway_process, new_token, wait_until
from tests.support.pool import add, key_row

GENERATE = "/v1beta/models/gemini-2.0-flash:generateContent"
BODY = {"contents": [{"parts": [{"text": "hi"}]}]}


def test_two_gateway_processes_share_one_database(db, fake):
    runtime = build_runtime(apply_migrations=False)
    limited, limited_key = add(runtime, "limited", priority=5)
    _, ok_key = add(runtime, "ok", priority=1)
    fake.respond(limited_key, "rate_limited_day_project")  # cools the key itself
    fake.respond(ok_key, "ok")
    token = new_token()
    headers = {"x-goog-api-key": token}
    with gateway_process(fake.base_url) as one, gateway_process(fake.base_url) as two:
        assert httpx.post(one + GENERATE, json=BODY, headers=headers, timeout=30
                          ).status_code == 200
        assert key_row(db, limited)["cooldown_until"] is not None
        before = len(fake.requests)
        assert httpx.post(two + GENERATE, json=BODY, headers=headers, timeout=30
                          ).status_code == 200
        # The second process skipped the key the first one cooled down.
        assert [r.headers["x-goog-api-key"] for r in fake.requests[before:]] == [ok_key]

        def counted():
            with db.engine.connect() as connection:
                return connection.execute(text(
                    "SELECT sum(request_count) FROM gemini_access_token_usage")).scalar()
        assert wait_until(lambda: counted() == 2)
        revoked = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "lib.cli", "revoke-access-token", "svc"],
            capture_output=True, text=True, check=False, cwd=REPO_ROOT)
        assert revoked.returncode == 0, revoked.stderr
        for url in (one, two):
            assert httpx.post(url + GENERATE, json=BODY, headers=headers, timeout=30
                              ).status_code == 401


def sessions_opened(db) -> int:
    """Connections ever opened to the test's database (PostgreSQL's own count)."""
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(connection.execute(text(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )).scalar())


def test_a_burst_of_requests_reuses_the_gateways_database_connections(db, fake):
    """64 requests at once: the gateway's database calls wait for one of the connections it
    keeps instead of each opening (and closing) its own, a PostgreSQL backend start each."""
    runtime = build_runtime(apply_migrations=False)
    for index in range(4):
        fake.respond(add(runtime, f"k{index}")[1], "ok")
    token = new_token()
    with gateway_process(fake.base_url) as url:
        started = sessions_opened(db)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                async def one() -> int:
                    response = await client.post(url + GENERATE, json=BODY,
                                                 headers={"x-goog-api-key": token})
                    return response.status_code
                statuses = []
                for _ in range(4):
                    statuses += await asyncio.gather(*(one() for _ in range(64)))
                return statuses
        assert asyncio.run(burst()) == [200] * 256
        assert wait_until(lambda: counted_requests(db) == 256)
        opened = sessions_opened(db) - started
    # At most the kept connections of the pool and of the token statements, once each.
    assert opened <= 2 * DB_THREADS, opened


def counted_requests(db) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT coalesce(sum(request_count), 0) FROM gemini_access_token_usage")).scalar())
