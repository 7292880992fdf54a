"""create-user, list-users, grant-admin, revoke-admin, reset-password, sign-out-everywhere
(each prints what it did only after its transaction committed)."""

from __future__ import annotations

import click

from lib.cli.base import CliContext, actor_option, cli, fail, pass_cli, read_secret_from_stdin
from lib.users.accounts import create_user as create_user_row
from lib.users.accounts import list_users as list_user_rows
from lib.users.accounts import reset_password as reset_password_row
from lib.users.accounts import set_admin
from lib.users.accounts import sign_out_everywhere as end_all_sessions

STDIN_HELP = "Read the password from stdin (it is never taken from the command line)."


def _require_password_stdin(password_stdin: bool, command: str) -> str:
    if not password_stdin:
        fail("pass --password-stdin and send the password on stdin, e.g. "
             f"`printf '%s\\n' \"$PW\" | python -m lib.cli {command} --email E --password-stdin`")
    return read_secret_from_stdin("password")


@cli.command("create-user")
@click.option("--email", required=True, help="The user's email (their sign-in name).")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@pass_cli
def create_user(cli_ctx: CliContext, email: str, admin: bool, password_stdin: bool) -> None:
    """Create a user who can sign in; with --admin, one who sees everything."""
    password = _require_password_stdin(password_stdin, "create-user")
    with cli_ctx.session() as session:
        user = create_user_row(session, email=email, password=password, admin=admin,
                               bcrypt_rounds=cli_ctx.settings.bcrypt_rounds)
    click.echo(f"created {'admin' if admin else 'user'} {user.email} ({user.id})")


@cli.command("list-users")
@pass_cli
def list_users(cli_ctx: CliContext) -> None:
    """List users: email, admin or not, created, last sign-in (UTC)."""
    with cli_ctx.session() as session:
        users = list_user_rows(session)
    for user in users:
        last = f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "never"
        created = f"{user.created_at:%Y-%m-%d %H:%M}" if user.created_at else "-"
        click.echo(f"{user.email}\t{'admin' if user.is_admin else 'user'}\t"
                   f"created {created}\tlast sign-in {last}")
    if not users:
        click.echo("no users yet: python -m lib.cli create-user --email E --admin "
                   "--password-stdin")


@cli.command("grant-admin")
@click.option("--email", required=True, help="The user who becomes an admin.")
@actor_option
@pass_cli
def grant_admin(cli_ctx: CliContext, email: str, actor_email: str | None) -> None:
    """Make an existing user an admin."""
    with cli_ctx.session(actor_email) as session:
        changed = set_admin(session, email=email, admin=True)
    click.echo(f"{email.strip().lower()} {'is now' if changed else 'was already'} an admin")


@cli.command("revoke-admin")
@click.option("--email", required=True, help="The admin who loses admin rights.")
@actor_option
@pass_cli
def revoke_admin(cli_ctx: CliContext, email: str, actor_email: str | None) -> None:
    """Take admin rights away (never the last admin's, nor your own); ends their sessions."""
    with cli_ctx.session(actor_email) as session:
        changed = set_admin(session, email=email, admin=False)
    click.echo(f"{email.strip().lower()} {'is no longer' if changed else 'was not'} an admin")


@cli.command("reset-password")
@click.option("--email", required=True, help="Whose password to set.")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@actor_option
@pass_cli
def reset_password(cli_ctx: CliContext,
                   email: str, password_stdin: bool, actor_email: str | None) -> None:
    """Set a new password for a user; ends their sessions and lifts the sign-in throttle."""
    password = _require_password_stdin(password_stdin, "reset-password")
    with cli_ctx.session(actor_email) as session:
        user = reset_password_row(session, email=email, password=password,
                                  bcrypt_rounds=cli_ctx.settings.bcrypt_rounds)
    click.echo(f"password of {user.email} reset")


@cli.command("sign-out-everywhere")
@click.option("--email", required=True, help="The user to sign out of every browser.")
@actor_option
@pass_cli
def sign_out_everywhere(cli_ctx: CliContext, email: str, actor_email: str | None) -> None:
    """End every session of a user: all browsers, and any copy of their sign-in cookie."""
    with cli_ctx.session(actor_email) as session:
        ended = end_all_sessions(session, email=email)
    click.echo(f"{email.strip().lower()} is signed out everywhere ({ended} session(s) ended)")
