"""Two `serve-gateway` processes share one database and nothing else: a token revoked
through one is refused by both, a key cooled down by one is skipped by the other, and both
count into the same per-token row."""

from __future__ import annotations

import subprocess
import sys

import httpx
from sqlalchemy import text

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
