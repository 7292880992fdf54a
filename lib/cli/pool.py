"""check-keys and pool-status."""

from __future__ import annotations

import sys

import click

from lib.cli.base import CliContext, actor_option, cli, fail, pass_cli
from lib.clock import utc_now
from lib.keys.reads import in_service_key_ids, resolve_key
from lib.pool import pool_status
from lib.pool.health import DEFAULT_TIMEOUT, check_keys

EXIT_SOME_NOT_OK = 2


@cli.command("check-keys")
@click.argument("names", nargs=-1, metavar="[NAME_OR_ID]...")
@click.option("--all", "check_all", is_flag=True,
              help="Check every key that is not archived (active or not).")
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds to wait for Gemini per key.")
@click.option("--workers", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Keys checked at the same time.")
@actor_option
@pass_cli
def check_keys_command(cli_ctx: CliContext,
                       names: tuple[str, ...], check_all: bool, timeout: float, workers: int,
                       actor_email: str | None) -> None:
    """Ask Gemini whether stored keys work (GET /v1beta/models, key in a header).

    Each check is audited (key_checked); an invalid or blocked key is deactivated and a
    rate-limited one cooled down, as the key pool would. Exit status 2 if any key is not OK.
    """
    if check_all == bool(names):
        fail("name the keys to check, or pass --all (not both)")
    runtime = cli_ctx.runtime()
    with cli_ctx.session() as session:
        if check_all:
            key_ids = in_service_key_ids(session)
        else:
            key_ids = list(dict.fromkeys(resolve_key(session, name).id for name in names))
    if not key_ids:
        click.echo("no keys to check")
        return
    results = check_keys(key_ids, master=runtime.master_key, actor=cli_ctx.actor(actor_email),
                         engine=runtime.engine, base_url=runtime.settings.gemini_api_base_url,
                         timeout=timeout, workers=workers)
    width = max(len(r.name) for r in results)
    for r in results:
        http = f"HTTP {r.http_status}" if r.http_status else "no HTTP"
        line = f"{r.name.ljust(width)}  {r.status:<17} {http:<9} {r.latency_ms:>8.1f} ms"
        if not r.ok:
            line += f"  {r.message}"
        if r.action:
            line += f"  -> {r.action}"
        click.echo(line)
    bad = sum(not r.ok for r in results)
    click.echo(f"{len(results) - bad} of {len(results)} keys OK")
    if bad:
        sys.exit(EXIT_SOME_NOT_OK)


@cli.command("pool-status")
@pass_cli
def pool_status_command(cli_ctx: CliContext) -> None:
    """Show every key as the pool sees it: state, cooldown, failures, today's (UTC) usage."""
    with cli_ctx.session() as session:
        states = pool_status(session)
    if not states:
        click.echo("no keys")
        return
    now = utc_now()
    width = max(len(s.name) for s in states)
    click.echo(f"{'name'.ljust(width)}  state         prio  group        fails  today: req  fail"
               "  429   avg ms  note")
    for s in states:
        note = ""
        if s.state == "cooling down" and s.cooldown_until:
            note = f"until {s.cooldown_until:%Y-%m-%d %H:%M:%S} UTC"
            note += f" ({int((s.cooldown_until - now).total_seconds())} s)"
        elif s.state == "disabled" and s.disabled_reason:
            note = s.disabled_reason
        avg = f"{s.avg_ms_today:.1f}" if s.avg_ms_today is not None else "-"
        click.echo(f"{s.name.ljust(width)}  {s.state:<12}  {s.priority or 0:>4}  "
                   f"{(s.group_label or '-')[:12]:<12} {s.consecutive_failures:>5}  "
                   f"{s.requests_today:>10}  {s.failures_today:>4}  {s.rate_limited_today:>4}"
                   f"  {avg:>7}  {note}")
