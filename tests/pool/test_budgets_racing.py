"""Budgets hold with 8 processes racing for one project's last requests."""

from __future__ import annotations

import multiprocessing
import sys
import types

import pytest

from tests.support.pool import add, set_limit, table_rows
from tests.support.pool_workers import race_for_budget

PROCESSES = 8
MODEL = "gemini-2.5-flash"


@pytest.mark.one_server
def test_a_daily_budget_holds_under_8_racing_processes(db, runtime, monkeypatch):
    # A spawned child first re-runs the parent's __main__; in a pytest-xdist worker that
    # has run an AppTest, __main__ is a page script, which stops the child before it reports.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    for i in range(4):
        add(runtime, f"k{i}", group="team")
    set_limit(db, "team", MODEL, rpd=40, rpm=1000)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=race_for_budget, args=(MODEL, 15, barrier, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=420) for _ in workers]  # 8 interpreters start slowly
    assert not [o for o in outcomes if o[0] == "failed"], outcomes
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    handed = sum(h for h, _ in outcomes)
    assert handed == 40  # 120 tries for 40 requests: exactly the budget, never more
    assert sum(r for _, r in outcomes) == PROCESSES * 15 - 40
    windows = table_rows(db, "gemini_quota_usage")
    assert [r["requests"] for r in windows if r["window_kind"] == "d"] == [40]
    assert sum(r["requests"] for r in windows if r["window_kind"] == "m") == 40
    assert [r["tokens"] for r in windows if r["window_kind"] == "d"] == [400]
