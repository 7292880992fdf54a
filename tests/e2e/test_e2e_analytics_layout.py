"""Analytics at common window widths (1280 and 1920 px): the KPI tiles and the line saying
what their changes compare against are shown in full, nothing cut off with an ellipsis;
screenshots of both widths (tests/support/browser.screenshot)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from db.engine import REPO_ROOT
from tests.support.browser import open_page, screenshot, signed_in, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.one_server]

# Every element inside `root` (with a box) whose content is wider than its box: text cut
# off by overflow/ellipsis. Returns their texts.
CLIPPED = """root => [root, ...root.querySelectorAll('*')]
    .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent.trim()).filter(t => t)"""


def seed(live_app) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lib.cli", "seed-demo", "--keys", "6", "--days", "400",
         "--audit-rows", "0"], cwd=REPO_ROOT, env=live_app.env, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def assert_kpis_in_full(page, days: int) -> None:
    note = page.get_by_text(f"Changes against the previous {days} days (").first
    note.wait_for()
    assert note.is_visible()
    assert note.evaluate(CLIPPED) == []
    full = note.inner_text()
    assert full.rstrip().endswith("Average latency is weighted by requests.")
    tiles = page.locator("[data-testid=stMetric]")
    assert tiles.count() == 8
    labels = []
    for i in range(tiles.count()):
        tile = tiles.nth(i)
        assert tile.is_visible()
        assert tile.evaluate(CLIPPED) == [], tile.inner_text()
        labels.append(tile.locator("[data-testid=stMetricLabel]").inner_text().strip())
    toggle = page.locator("[data-testid=stCheckbox]").filter(has_text="Include archived")
    assert toggle.evaluate(CLIPPED) == []
    assert labels == ["Requests", "Success rate", "Failures", "Rate-limited (429)",
                      "Avg latency", "Prompt tokens", "Output tokens", "Total tokens"]


@pytest.mark.parametrize("width", [1280, 1920])
def test_kpi_captions_are_not_cut_off(live_app, chromium, width):
    seed(live_app)
    context = chromium.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(120_000)  # generous: the machine may be shared
    page = context.new_page()
    try:
        signed_in(page, live_app)
        open_page(page, "Analytics")
        assert_kpis_in_full(page, 30)
        page.wait_for_function(
            "document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= 6",
            timeout=240_000)  # a loaded CI machine draws slowly
        screenshot(page, f"analytics-{width}")
        page.locator("[data-testid=stRadio]").first.get_by_text("365 days").click()
        wait_for_app(page)
        assert_kpis_in_full(page, 365)
    finally:
        context.close()
