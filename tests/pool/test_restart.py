"""The pool survives a real database restart (and a crash) without failing a call."""

from __future__ import annotations

import os
import threading

import pytest

from db.engine import as_login, get_engine
from db.migrate import upgrade
from db.roles import APP_LOGIN
from lib.pool import KeyPool
from lib.runtime import build_runtime
from tests.support.pool import add
from tests.support.private_pg import PrivateServer

THREADS = 8


@pytest.fixture(scope="module")
def server():
    server = PrivateServer("restart-pg")
    yield server
    server.close()


def calls(pool: KeyPool, n: int) -> list[BaseException]:
    """n threads at once, each an acquire + record; the errors they met."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def one() -> None:
        try:
            start.wait()
            pool.record(pool.acquire("gemini-2.5-flash"), "success", 1)
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.one_server
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_pool_shared_by_8_threads_survives_a_server_restart(server, monkeypatch, mode):
    owner_url = server.database(f"restart_{mode}")
    upgrade(get_engine(owner_url))
    monkeypatch.setenv("DATABASE_URL", as_login(owner_url, APP_LOGIN))
    monkeypatch.setenv("DATABASE_OWNER_URL", owner_url)
    runtime = build_runtime(env=dict(os.environ))
    for i in range(3):
        add(runtime, f"k{i}")
    pool = KeyPool(runtime)
    assert calls(pool, THREADS) == []  # every thread leaves an idle connection behind

    server.restart(mode)  # every idle connection is now dead

    assert calls(pool, THREADS) == []
    assert calls(pool, THREADS) == []
    pool.close()
