"""An admin's action in the browser reaches a webhook receiver: the Keys page's "Check" on a
key the fake Gemini rejects disables it, and the app's process posts the signed event."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from db.engine import REPO_ROOT, dispose_engines
from lib.notify.events import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.support.browser import sign_in, visible_text, wait_for_app
from tests.support.databases import SERVERS, create_database, drop_database
from tests.support.fake_gemini import FakeGemini
from tests.support.keys import fake_key
from tests.support.live_app import LiveApp, run_app
from tests.support.webhook_receiver import FAST, SECRET, WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]


@pytest.fixture
def hooked_app(tmp_path) -> Iterator[tuple[LiveApp, WebhookReceiver]]:
    """An app of its own whose webhooks go to a local receiver and whose health checks go
    to the fake Gemini (which rejects every key it does not know)."""
    if not SERVERS:
        pytest.skip("no PostgreSQL server for the browser tests")
    name = f"gk_e2e_hooks_{os.getpid()}"
    url = create_database(SERVERS[0], name)
    try:
        with WebhookReceiver() as receiver, FakeGemini() as fake, run_app(
                url, tmp_path / "data", extra_env={
                    "GEMINI_KEYS_WEBHOOK_URLS": receiver.url, **FAST,
                    "GEMINI_API_BASE_URL": fake.base_url}) as app:
            yield app, receiver
    finally:
        dispose_engines()
        drop_database(SERVERS[0], name)


def test_check_on_a_rejected_key_in_the_browser_reaches_the_receiver(hooked_app,
                                                                      browser_page):
    app, receiver = hooked_app
    api_key, name = fake_key("authorization"), "e2e-rejected"
    added = subprocess.run([sys.executable, "-m", "lib.cli", "add-key", "--name", name,
                            "--group", "proj-e2e"], cwd=REPO_ROOT, env=app.env,
                           input=api_key + "\n", capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    page = browser_page
    page.goto(app.url("keys"))
    wait_for_app(page)
    sign_in(page, app)
    page.get_by_role("button", name="Sign out").first.wait_for()
    page.get_by_role("link", name="Keys").first.click()
    page.get_by_role("heading", name="Keys").first.wait_for()
    wait_for_app(page)

    # The table is a canvas: tick the first row's "✓" cell (the first column) by position.
    grid = page.locator("[data-testid=stDataFrame]").first
    grid.wait_for()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 27, box["y"] + 35 + 18)
    check = page.get_by_role("button", name="Check (1)")
    check.wait_for()
    check.click()
    page.get_by_text("Checked 1 key(s)").first.wait_for()
    wait_for_app(page)
    assert f"{name}: invalid" in visible_text(page)

    [got] = receiver.wait_for(1, kind="key.auto_disabled")
    assert verify_signature(SECRET, got.headers[TIMESTAMP_HEADER.lower()], got.body,
                            got.headers[SIGNATURE_HEADER.lower()])
    payload = got.json()
    assert payload["data"]["key_name"] == name and payload["data"]["group"] == "proj-e2e"
    assert payload["data"]["trigger"] == "health_check"
    with app.engine.connect() as connection:
        connection.execute(text("SET ROLE service_role"))
        row = connection.execute(text("SELECT is_active, masked_hint, fingerprint FROM "
                                      "gemini_api_keys WHERE name = :n"), {"n": name}).one()
    assert row.is_active is False and payload["data"]["key_hint"] == row.masked_hint
    bodies = "".join(d.body.decode() for d in receiver.received)
    assert api_key not in bodies and row.fingerprint not in bodies
    assert api_key not in page.content()
    log = app.log_text()
    assert "webhook key.auto_disabled" in log and "sent to http://127.0.0.1" in log
    assert "s3cr3tpathpart" not in log and api_key not in log
