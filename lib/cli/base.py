"""The `python -m lib.cli` group: one-line errors, shared options, the CLI's actor."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.session import Actor, session_scope
from lib.bootstrap import engine_for, load_settings, require_current_schema
from lib.errors import GeminiKeysError
from lib.logging_setup import configure_logging


class CliGroup(click.Group):
    """Turns errors the user can act on into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeminiKeysError as error:
            fail(str(error))
        except DBAPIError as error:
            # The driver's text can quote parameters; show only the error class and SQLSTATE.
            code = getattr(error.orig, "pgcode", None) or "no SQLSTATE"
            fail(f"database error ({type(error.orig).__name__}, {code})")


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(cls=CliGroup)
def cli() -> None:
    """Gemini Key Manager: keep Gemini API keys encrypted, audited and rotated."""
    configure_logging()


def actor_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--actor EMAIL: the admin on whose behalf a mutating command acts (for the audit row)."""
    return click.option("--actor", "actor_email", metavar="EMAIL", envvar="GEMINI_KEYS_ACTOR",
                        help="Admin to record as actor in the audit log (default: the CLI).")(
        command)


def cli_engine():
    """The configured database with a current schema."""
    engine = engine_for(load_settings())
    require_current_schema(engine)
    return engine


@contextmanager
def cli_session(actor_email: str | None = None) -> Iterator[Session]:
    """A service-role transaction, acting for `actor_email` (an admin) when given."""
    engine = cli_engine()
    actor = Actor.service("cli")
    if actor_email:
        actor = resolve_cli_actor(engine, actor_email)
    with session_scope(actor, engine=engine) as session:
        yield session


def resolve_cli_actor(engine, email: str) -> Actor:
    from lib.users import find_user, is_admin, normalise_email

    email = normalise_email(email)
    with session_scope(Actor.service("cli"), engine=engine) as session:
        user = find_user(session, email)
        if user is None or not is_admin(session, user.id):
            raise GeminiKeysError(f"--actor {email} is not an admin")
        return Actor.service("cli", user.id, email)


def read_secret_from_stdin(what: str) -> str:
    """One line from stdin (hidden prompt on a terminal); never from argv."""
    if sys.stdin is None:
        raise GeminiKeysError(f"no {what} on stdin")
    if sys.stdin.isatty():
        return click.prompt(what.capitalize(), hide_input=True, err=True)
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


