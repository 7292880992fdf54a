"""record(usage=): one statement writes the spec's stats, the per-model stats with tokens,
and the project's token windows; their sums agree."""

from __future__ import annotations

import pytest

from lib.pool.usage import Tokens, parse_usage
from tests.support.pool import add, stats_rows, table_rows

GEMINI = {"promptTokenCount": 120, "candidatesTokenCount": 30, "thoughtsTokenCount": 50,
          "cachedContentTokenCount": 100, "totalTokenCount": 200}
OPENAI = {"prompt_tokens": 120, "completion_tokens": 80, "total_tokens": 200,
          "completion_tokens_details": {"reasoning_tokens": 50},
          "prompt_tokens_details": {"cached_tokens": 100}}


@pytest.mark.parametrize("usage", [GEMINI, OPENAI], ids=["gemini", "openai"])
def test_both_usage_shapes_give_the_same_tokens(usage):
    assert parse_usage(usage) == Tokens(prompt=120, output=30, thoughts=50, cached=100,
                                        total=200)


@pytest.mark.parametrize("usage", [None, {}, {"promptTokenCount": "lots"},
                                   {"promptTokenCount": -5}, {"promptTokenCount": True}])
def test_odd_usage_counts_as_zero_and_never_fails(usage):
    assert parse_usage(usage).prompt == 0


def test_token_sums_agree_between_the_stats_tables_and_the_quota_windows(db, runtime, pool):
    key_id, _ = add(runtime, "k", group="team")
    calls = [("gemini-2.5-pro", GEMINI, "success"), ("gemini-2.5-flash", OPENAI, "success"),
             ("gemini-2.5-pro", {"promptTokenCount": 7, "totalTokenCount": 9}, "failure"),
             (None, GEMINI, "success")]
    for model, usage, outcome in calls:
        pool.record(pool.acquire(model), outcome, 10.0, usage=usage)
    with pool.lease("gemini-2.5-flash") as lease:
        lease.usage = GEMINI

    [spec] = stats_rows(db, key_id)
    per_model = table_rows(db, "gemini_key_model_usage_stats", "model")
    assert sum(r["request_count"] for r in per_model) == spec["request_count"] == 5
    assert sum(r["success_count"] for r in per_model) == spec["success_count"] == 4
    assert sum(r["failure_count"] for r in per_model) == spec["failure_count"] == 1
    by_model = {r["model"]: r for r in per_model}
    assert by_model[""]["total_tokens"] == 200  # recorded without a model
    assert by_model["gemini-2.5-pro"]["prompt_tokens"] == 127
    assert by_model["gemini-2.5-flash"]["thoughts_tokens"] == 100
    assert sum(r["total_tokens"] for r in per_model) == 200 * 4 + 9
    windows = table_rows(db, "gemini_quota_usage")
    for kind in ("m", "d"):
        tokens = {r["model"]: r["tokens"] for r in windows if r["window_kind"] == kind}
        assert tokens == {"gemini-2.5-pro": 127, "gemini-2.5-flash": 240}  # input tokens
        requests = {r["model"]: r["requests"] for r in windows if r["window_kind"] == kind}
        assert requests == {"gemini-2.5-pro": 2, "gemini-2.5-flash": 2}
    means = [r["avg_response_time"] for r in per_model]
    assert spec["avg_response_time"] == pytest.approx(sum(
        m * r["request_count"] for m, r in zip(means, per_model, strict=True)) / 5, rel=1e-9)
