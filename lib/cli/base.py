"""The `python -m lib.cli` group: one-line errors, shared options, and the one CliContext per
invocation (settings parsed once, the runtime and the actor built at most once)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from db.session import Actor, session_scope
from lib.errors import GeminiKeysError
from lib.logging_setup import configure_logging
from lib.notify import delivery as notify_delivery
from lib.operator_errors import describe
from lib.runtime import Runtime, build_runtime, engine_for, require_current_schema
from lib.settings import Settings
from lib.users.accounts import find_user, is_admin, normalise_email


class CliGroup(click.Group):
    """Turns errors the user can act on into one line on stderr and exit status 1: our own
    messages, and deployment problems (database, data directory, disk) described for the
    operator, never a traceback or a password."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeminiKeysError as error:
            fail(str(error))
        except (DBAPIError, ArgumentError, OSError) as error:
            described = describe(error)
            if described is None:
                raise
            fail(described)


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@dataclass
class CliContext:
    """What one command invocation works with; each part is made when first asked for."""

    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)
    _runtime: Runtime | None = field(default=None, repr=False)
    _actors: dict[str, Actor] = field(default_factory=dict, repr=False)

    def engine(self) -> Engine:
        """The configured database, with a current schema (no master key needed)."""
        if self._engine is None:
            engine = engine_for(self.settings)
            require_current_schema(engine)
            notify_delivery.configure(self.settings, engine)  # webhooks (off unless set)
            self._engine = engine
        return self._engine

    def runtime(self) -> Runtime:
        """Engine plus the verified master key (refuses a key that cannot decrypt this
        database's keys)."""
        if self._runtime is None:
            self._runtime = build_runtime(settings=self.settings, apply_migrations=False)
            self._engine = self._runtime.engine
        return self._runtime

    def actor(self, actor_email: str | None = None) -> Actor:
        """The CLI's service identity, acting for `actor_email` (an admin) when given."""
        if not actor_email:
            return Actor.service("cli")
        email = normalise_email(actor_email)
        if email not in self._actors:
            with session_scope(Actor.service("cli"), engine=self.engine()) as session:
                user = find_user(session, email)
                if user is None or not is_admin(session, user.id):
                    raise GeminiKeysError(f"--actor {email} is not an admin")
                self._actors[email] = Actor.service("cli", user.id, email)
        return self._actors[email]

    @contextmanager
    def session(self, actor_email: str | None = None) -> Iterator[Session]:
        """One service-role transaction, acting for `actor_email` (an admin) when given."""
        with session_scope(self.actor(actor_email), engine=self.engine()) as session:
            yield session


pass_cli = click.make_pass_decorator(CliContext)


@click.group(cls=CliGroup)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Gemini Key Manager: keep Gemini API keys encrypted, audited and rotated."""
    settings = Settings.load()
    configure_logging(settings.log_level)
    ctx.obj = CliContext(settings)


def actor_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--actor EMAIL: the admin on whose behalf a mutating command acts (for the audit row)."""
    return click.option("--actor", "actor_email", metavar="EMAIL", envvar="GEMINI_KEYS_ACTOR",
                        help="Admin to record as actor in the audit log (default: the CLI).")(
        command)


def read_secret_from_stdin(what: str) -> str:
    """One line from stdin (hidden prompt on a terminal); never from argv."""
    if sys.stdin is None:
        raise GeminiKeysError(f"no {what} on stdin")
    if sys.stdin.isatty():
        return click.prompt(what.capitalize(), hide_input=True, err=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")
