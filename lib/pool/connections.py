"""The few autocommit connections the key pool keeps for its one-round-trip statements."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine


class Connections:
    """A few autocommit connections kept for the pool's one-round-trip statements.

    Taken from the engine (so db/ still makes every connection) and detached from its
    pool: no pre-ping and no isolation-level switch per call, which would cost more round
    trips than the statement itself. A connection that fails is closed, never reused; an
    idle one found dead is replaced once (the statement never reached the server).
    """

    def __init__(self, engine: Engine, keep: int = 8) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[tuple[Any, set[str]]] = []
        self._lock = threading.Lock()

    def _new(self) -> tuple[Any, set[str]]:
        fairy = self._engine.raw_connection()
        fairy.detach()
        connection = fairy.dbapi_connection
        connection.autocommit = True
        return connection, set()

    @contextmanager
    def get(self) -> Iterator[tuple[Any, set[str]]]:
        with self._lock:
            entry = self._idle.pop() if self._idle else None
        if entry is not None and entry[0].closed:
            entry = None
        stale_possible = entry is not None
        entry = entry or self._new()
        try:
            yield entry
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            entry[0].close()
            if not stale_possible:
                raise
            # One retry on a fresh connection belongs to the caller; see KeyPool._execute.
            raise StaleConnection from None
        except BaseException:
            if entry[0].closed or entry[0].status != psycopg2.extensions.STATUS_READY:
                entry[0].close()
            else:
                self._put(entry)
            raise
        else:
            self._put(entry)

    def _put(self, entry: tuple[Any, set[str]]) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(entry)
                return
        entry[0].close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()


class _StaleConnection(Exception):
    """An idle connection had died (server restart, idle timeout)."""


class StaleConnection(Exception):
    """An idle connection had died (server restart, idle timeout)."""
