"""Worker processes for the pool's multi-process tests (spawned: nothing shared but the DB)."""

from __future__ import annotations

import time


def race_for_budget(model: str, attempts: int, barrier, results) -> None:
    """Acquire `model` until `attempts` tries are spent; put (handed out, refused), or
    ("failed", why) so the test says why instead of waiting for a result that never comes."""
    from lib.pool import KeyPool, NoKeyAvailable

    try:
        pool = KeyPool()
        pool.ping()  # connected before the start
        barrier.wait(timeout=360)
        handed = refused = 0
        for _ in range(attempts):
            try:
                lease = pool.acquire(model)
            except NoKeyAvailable:
                refused += 1
                continue
            handed += 1
            pool.record(lease, "success", 1.0, usage={"promptTokenCount": 10})
    except BaseException as error:
        barrier.abort()
        results.put(("failed", repr(error)))
        raise
    results.put((handed, refused))


def busy_calls(calls: int, call_seconds: float, barrier, results) -> None:
    """acquire, hold for call_seconds (a Gemini call), record; put the key ids handed out."""
    from lib.pool import KeyPool

    pool = KeyPool()
    pool.ping()
    barrier.wait()
    taken = []
    for _ in range(calls):
        lease = pool.acquire()
        taken.append((str(lease.key_id), time.monotonic()))
        time.sleep(call_seconds)
        pool.record(lease, "success", call_seconds * 1000)
        taken[-1] = (*taken[-1], time.monotonic())
    results.put(taken)
