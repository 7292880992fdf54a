"""session_scope: one transaction that tells PostgreSQL who acts, so RLS applies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine
from sqlalchemy.orm import Session

Source = Literal["app", "cli", "pool", "system", "gateway"]


@dataclass(frozen=True)
class Actor:
    """Who a transaction acts for.

    role "authenticated": a signed-in user; RLS admits them only if user_profiles.is_admin.
    role "service_role": the CLI and the key pool (Supabase's service identity); user_id, when
    set, is the admin on whose behalf the CLI acts and lands in audit rows.
    role "anon": nobody signed in.
    Migrations alone run as the connection's own role, outside session_scope.
    """

    role: Literal["authenticated", "service_role", "anon"]
    source: Source
    user_id: uuid.UUID | None = None
    email: str | None = None

    @classmethod
    def user(cls, user_id: uuid.UUID, email: str | None = None) -> Actor:
        return cls("authenticated", "app", user_id, email)

    @classmethod
    def service(cls, source: Source = "cli", user_id: uuid.UUID | None = None,
                email: str | None = None) -> Actor:
        return cls("service_role", source, user_id, email)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls("anon", "app")

    def claims(self) -> str:
        claims = {"role": self.role}
        if self.user_id:
            claims["sub"] = str(self.user_id)
        if self.email:
            claims["email"] = self.email
        return json.dumps(claims)


def role_prelude(actor: Actor) -> tuple[str, tuple[str, str]]:
    """The statements that make a transaction act as `actor` (SET LOCAL ROLE and the JWT
    claims auth.uid() reads; both end with the transaction), in the driver's %s paramstyle,
    with their parameters. The one way the database role is set: session_scope and the key
    pool's one-round-trip statements both send it."""
    # Role names come from the Literal above, never from user input.
    return (f"SET LOCAL ROLE {actor.role}; "
            "SELECT set_config('request.jwt.claims', %s, true),"
            " set_config('request.jwt.claim.sub', %s, true)",
            (actor.claims(), str(actor.user_id or "")))


def apply_actor(session: Session, actor: Actor) -> None:
    """Make the session's transaction act as `actor` (see role_prelude)."""
    session.info["actor"] = actor
    sql, params = role_prelude(actor)
    session.connection().exec_driver_sql(sql, params)


def actor_of(session: Session) -> Actor:
    """The actor a session_scope was opened for (for audit rows)."""
    return session.info["actor"]


@contextmanager
def session_scope(actor: Actor, *, engine: Engine) -> Iterator[Session]:
    """One transaction as `actor`: commits on success, rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        apply_actor(session, actor)
        yield session
