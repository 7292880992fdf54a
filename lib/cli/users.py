"""create-user."""

from __future__ import annotations

import click

from lib.cli.base import cli, cli_session, fail, read_secret_from_stdin
from lib.users import create_user as create_user_row


@cli.command("create-user")
@click.option("--email", required=True, help="The user's email (their sign-in name).")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from stdin (it is never taken from the command line).")
def create_user(email: str, admin: bool, password_stdin: bool) -> None:
    """Create a user who can sign in; with --admin, one who sees everything."""
    if not password_stdin:
        fail("pass --password-stdin and send the password on stdin, e.g. "
             "`printf '%s\\n' \"$PW\" | python -m lib.cli create-user --email E --password-stdin`")
    password = read_secret_from_stdin("password")
    with cli_session() as session:
        user = create_user_row(session, email=email, password=password, admin=admin)
        click.echo(f"created {'admin' if admin else 'user'} {user.email} ({user.id})")
