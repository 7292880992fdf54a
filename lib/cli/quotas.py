"""Budget commands: set-quota, list-quotas, clear-quota (limits per group × model).

Each change prints what it did only after its transaction committed."""

from __future__ import annotations

import click

from lib.cli.base import CliContext, actor_option, cli, pass_cli
from lib.quotas.reads import quota_usage_today
from lib.quotas.rules import describe_limit
from lib.quotas.writes import clear_quota as clear_quota_row
from lib.quotas.writes import set_quota as set_quota_row


def _group_and_model(command):
    command = click.option("--model", required=True,
                           help="The Gemini model id, e.g. gemini-2.5-flash.")(command)
    return click.option("--group", "group_label", required=True,
                        help="The group (Google Cloud project) of the keys.")(command)


@cli.command("set-quota")
@_group_and_model
@click.option("--rpm", default=None, metavar="N", help="Requests per minute.")
@click.option("--tpm", default=None, metavar="N", help="Input tokens per minute.")
@click.option("--rpd", default=None, metavar="N",
              help="Requests per Pacific day (reset at midnight Pacific).")
@actor_option
@pass_cli
def set_quota(cli_ctx: CliContext, group_label: str, model: str, rpm: str | None,
              tpm: str | None, rpd: str | None, actor_email: str | None) -> None:
    """Set the limits of a group × model; the pool never hands out a key of the group for
    the model once one is reached. A limit not given is removed; 0 means no quota at all.

    Example: python -m lib.cli set-quota --group proj-a --model gemini-2.5-flash --rpm 10 --rpd 250
    """
    with cli_ctx.session(actor_email) as session:
        change = set_quota_row(session, group_label=group_label, model=model, rpm=rpm,
                               tpm=tpm, rpd=rpd)
    click.echo(change.message())


@cli.command("clear-quota")
@_group_and_model
@actor_option
@pass_cli
def clear_quota(cli_ctx: CliContext, group_label: str, model: str,
                actor_email: str | None) -> None:
    """Remove every limit of a group × model (the pool keeps counting)."""
    with cli_ctx.session(actor_email) as session:
        change = clear_quota_row(session, group_label=group_label, model=model)
    click.echo(change.message())


@cli.command("list-quotas")
@pass_cli
def list_quotas(cli_ctx: CliContext) -> None:
    """List the limits with their use now: this UTC minute (rpm, tpm) and this Pacific day
    (rpd), tab-separated, and the marks the pool set (no quota, cooldowns)."""
    with cli_ctx.session() as session:
        today = quota_usage_today(session)
    if not today.rows:
        click.echo("no quotas set: python -m lib.cli set-quota --group G --model M "
                   "[--rpm N] [--tpm N] [--rpd N]")
    else:
        click.echo("group\tmodel\trpm\ttpm\trpd\trequests this minute\ttokens this minute"
                   "\trequests today\ttokens today")
    for row in today.rows:
        limits = row.limits.as_dict()
        click.echo("\t".join([row.group_label, row.model,
                              *(describe_limit(limits[n]) for n in ("rpm", "tpm", "rpd")),
                              *(f"{v:,}" for v in (row.minute_requests, row.minute_tokens,
                                                   row.day_requests, row.day_tokens))]))
    if today.rows:
        w = today.windows
        click.echo(f"today = the Pacific day since {w.day_start:%Y-%m-%d %H:%M} UTC; "
                   f"rpd resets {w.next_day:%Y-%m-%d %H:%M} UTC")
    for mark in today.marks:
        state = ("no quota" if mark.no_quota
                 else f"cooling down until {mark.cooldown_until:%Y-%m-%d %H:%M} UTC")
        click.echo(f"mark: {mark.label} × {mark.model}: {state}"
                   + (f" ({mark.reason})" if mark.reason else ""))
