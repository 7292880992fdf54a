"""The per-request database work of the gateway besides the pool: is this access token
live (and for which models), and count its request. Each is one round trip on the same kind
of autocommit connections the pool keeps, as service_role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg2
from sqlalchemy import Engine, text

from db.session import Actor, role_prelude, session_scope
from lib.keys.status import USABLE
from lib.pool.connections import Connections, StaleConnection
from lib.tokens import USAGE_SQL, VERIFY_SQL, hash_token

GATEWAY_ACTOR = Actor.service("gateway")
_PRELUDE, _PRELUDE_PARAMS = role_prelude(GATEWAY_ACTOR)
_USABLE_SQL = ("SELECT count(*) FROM gemini_api_keys WHERE "
               + USABLE.sql(None, now="(now() AT TIME ZONE 'UTC')"))


@dataclass(frozen=True)
class Caller:
    """The access token a request came with (never the token itself)."""

    token_id: uuid.UUID
    name: str
    models: frozenset[str] | None  # None: every model

    def may_use(self, model: str | None) -> bool:
        return self.models is None or model is None or model in self.models


class Access:
    def __init__(self, engine: Engine, *, connections: int = 8) -> None:
        """connections: idle connections kept, as many as threads calling at once."""
        self.engine = engine
        self._connections = Connections(engine, keep=connections)

    def _run(self, sql: str, params: tuple) -> list[tuple]:
        for attempt in (1, 2):
            try:
                with self._connections.get() as (connection, _), connection.cursor() as cursor:
                    cursor.execute(f"{_PRELUDE}; SET LOCAL synchronous_commit = off; {sql}",
                                   _PRELUDE_PARAMS + params)
                    return cursor.fetchall() if cursor.description else []
            except StaleConnection:
                if attempt == 2:
                    raise psycopg2.OperationalError("lost the database connection") from None
        raise AssertionError("unreachable")

    def caller(self, token: str) -> Caller | None:
        """The live token's caller, or None (unknown, revoked or expired)."""
        rows = self._run(VERIFY_SQL, (hash_token(token),))
        if not rows:
            return None
        token_id, name, models = rows[0]
        return Caller(uuid.UUID(str(token_id)), name, frozenset(models) if models else None)

    def count(self, caller: Caller, *, error: bool, usage: dict | None) -> None:
        prompt, output, total = usage_tokens(usage)
        self._run(USAGE_SQL, (str(caller.token_id), int(error), prompt, output, total))

    def keys_usable(self) -> int:
        with session_scope(GATEWAY_ACTOR, engine=self.engine) as session:
            return int(session.scalar(text(_USABLE_SQL)) or 0)

    def close(self) -> None:
        self._connections.close()


def usage_tokens(usage: dict | None) -> tuple[int, int, int]:
    """(prompt, output, total) from Gemini's usageMetadata or OpenAI's usage."""
    if not isinstance(usage, dict):
        return 0, 0, 0

    def number(*names: str) -> int:
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return 0

    prompt = number("promptTokenCount", "prompt_tokens")
    output = number("candidatesTokenCount", "completion_tokens")
    total = number("totalTokenCount", "total_tokens") or prompt + output
    return prompt, output, total
