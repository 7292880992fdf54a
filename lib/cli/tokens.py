"""create-access-token, list-access-tokens, revoke-access-token (the gateway's tokens)."""

from __future__ import annotations

import click

from lib.cli.base import CliContext, actor_option, cli, pass_cli
from lib.tokens import MAX_EXPIRES_DAYS, create_token, list_tokens, revoke_token


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@cli.command("create-access-token")
@click.option("--name", required=True, help="Who or what uses it (unique among live tokens).")
@click.option("--models", default=None, metavar="M1,M2",
              help="Only these models (default: every model).")
@click.option("--expires-days", type=click.FloatRange(0, MAX_EXPIRES_DAYS, min_open=True),
              default=None, help="Expire after this many days (default: never).")
@actor_option
@pass_cli
def create_access_token(cli_ctx: CliContext, name: str, models: str | None,
                        expires_days: float | None, actor_email: str | None) -> None:
    """Create a gateway access token and print it once, to stdout (it is stored only as a
    hash: it cannot be shown again)."""
    with cli_ctx.session(actor_email) as session:
        summary, token = create_token(session, name=name, models=models,
                                      expires_days=expires_days)
    click.echo(token)
    scope = ", ".join(summary.models) if summary.models else "every model"
    expires = _when(summary.expires_at) + " UTC" if summary.expires_at else "never"
    click.echo(f"created access token {summary.name!r} ({scope}; expires {expires}); "
               "it is shown only this once", err=True)


@cli.command("list-access-tokens")
@pass_cli
def list_access_tokens(cli_ctx: CliContext) -> None:
    """Every access token (never the token itself) with its usage."""
    with cli_ctx.session() as session:
        tokens = list_tokens(session)
    if not tokens:
        click.echo("no access tokens")
        return
    width = max(4, *(len(t.name) for t in tokens))
    click.echo(f"{'name'.ljust(width)}  {'id':36}  prefix        state    expires (UTC)     "
               "last used (UTC)   requests  errors  tokens  models")
    for t in tokens:
        click.echo(f"{t.name.ljust(width)}  {t.id!s:36}  {t.prefix + '…':13} {t.state:8} "
                   f"{_when(t.expires_at):17} {_when(t.last_used_at):17} {t.requests:>8}  "
                   f"{t.errors:>6}  {t.tokens:>6}  "
                   f"{','.join(t.models) if t.models else 'all'}")


@cli.command("revoke-access-token")
@click.argument("name_or_id")
@actor_option
@pass_cli
def revoke_access_token(cli_ctx: CliContext, name_or_id: str, actor_email: str | None) -> None:
    """Revoke a token; its next request is refused (401)."""
    with cli_ctx.session(actor_email) as session:
        summary = revoke_token(session, name_or_id)
    click.echo(f"revoked access token {summary.name!r} ({summary.id})")
