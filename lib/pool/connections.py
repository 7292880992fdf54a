"""The few autocommit connections the key pool keeps for its one-round-trip statements."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine


def is_connection_error(error: BaseException, connection: Any) -> bool:
    """The connection (not the statement) failed: lost, closed, or the server went away.
    After a crash psycopg2 may raise a plain DatabaseError ("server closed the connection
    unexpectedly") rather than an OperationalError."""
    if isinstance(error, psycopg2.extensions.TransactionRollbackError):
        return False  # a deadlock or serialization failure: the statement, not the link
    if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return True
    if not isinstance(error, psycopg2.DatabaseError):
        return False
    return type(error) is psycopg2.DatabaseError or bool(connection.closed)


class Connections:
    """A few autocommit connections kept for the pool's one-round-trip statements.

    Taken from the engine (so db/ still makes every connection) and detached from its
    pool: no pre-ping and no isolation-level switch per call, which would cost more round
    trips than the statement itself. A connection error closes that connection and every
    idle one (after a server restart they are all dead: retrying on the next idle one would
    fail again); the caller then retries once on a fresh connection (KeyPool._execute).
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
    def get(self, *, fresh: bool = False) -> Iterator[tuple[Any, set[str]]]:
        """An idle connection (or a new one; always new with fresh=True)."""
        entry = None
        if not fresh:
            with self._lock:
                entry = self._idle.pop() if self._idle else None
            if entry is not None and entry[0].closed:
                entry = None
        entry = entry or self._new()
        try:
            yield entry
        except BaseException as error:
            if is_connection_error(error, entry[0]):
                entry[0].close()
                self.close()
                raise ConnectionLost from error
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


class ConnectionLost(Exception):
    """The connection failed under a statement (server restart, crash, idle timeout)."""


StaleConnection = ConnectionLost  # the name before restarts were handled
