"""Fixtures of the pool tests: a runtime on the test database and a pool on it."""

from __future__ import annotations

import pytest

from lib.pool import KeyPool
from lib.runtime import build_runtime


@pytest.fixture
def runtime(db):
    return build_runtime()


@pytest.fixture
def pool(runtime):
    pool = KeyPool(runtime)
    yield pool
    pool.close()
