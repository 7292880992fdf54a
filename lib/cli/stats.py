"""export-stats and seed-demo."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click

from lib.analytics.export import stats_csv, stats_file_name
from lib.analytics.stats import StatsFilter
from lib.cli.base import CliContext, actor_option, cli, pass_cli
from lib.demo import check_demo_size
from lib.demo import seed_demo as make_demo
from lib.errors import InvalidInput
from lib.keys.reads import resolve_key
from lib.streaming import write_chunks


def parse_day(value: str, option: str) -> dt.date:
    try:
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} {value!r} is not a date like 2026-01-31 (YYYY-MM-DD)"
                           ) from None


def output_path(output: str, flt: StatsFilter, per: str) -> Path:
    """FILE as given, or the range-named file inside it when FILE is a directory."""
    target = Path(output)
    return target / stats_file_name(flt, per) if target.is_dir() else target


@cli.command("export-stats")
@click.option("--from", "since", required=True, metavar="YYYY-MM-DD", help="First UTC day.")
@click.option("--to", "until", required=True, metavar="YYYY-MM-DD",
              help="Last UTC day (included).")
@click.option("--key", "keys", multiple=True, metavar="NAME_OR_ID",
              help="Only this key (repeat for several).")
@click.option("--group", default=None, metavar="G", help="Only keys with this group label.")
@click.option("--per", type=click.Choice(["day", "key-day", "key-model-day"]),
              default="key-day", show_default=True,
              help="One row per key per day, per day in total, or per key, day and model "
                   "(with model and token columns).")
@click.option("--model", default=None, metavar="MODEL",
              help="Only this model's usage (the per-model table; '' = unspecified).")
@click.option("--include-archived/--exclude-archived", default=True, show_default=True,
              help="Count archived and deleted keys' traffic.")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="Write here (a directory gets gemini-usage_<from>_<to>.csv); - for stdout.")
@pass_cli
def export_stats(cli_ctx: CliContext,
                 since: str, until: str, keys: tuple[str, ...], group: str | None, per: str,
                 model: str | None, include_archived: bool, output: str) -> None:
    """Export daily usage statistics as CSV, streamed (no key material in the file)."""
    start, end = parse_day(since, "--from"), parse_day(until, "--to")
    with cli_ctx.session() as session:
        key_ids = tuple(dict.fromkeys(resolve_key(session, k).id for k in keys))
        flt = StatsFilter(start, end, key_ids=key_ids, group=group or None,
                          include_archived=include_archived, model=model)
        rows = 0

        def counted():
            nonlocal rows
            for chunk in stats_csv(session, flt, per):  # type: ignore[arg-type]
                rows += chunk.count("\n")
                yield chunk

        if output == "-":
            write_chunks(counted(), sys.stdout.buffer)
            sys.stdout.flush()
            where = ""
        else:
            # Written beside the target and renamed at the end: a failed export leaves no
            # half-written file under the name asked for.
            target = output_path(output, flt, per)
            partial = target.with_name(target.name + ".partial")
            try:
                with partial.open("wb") as out:
                    write_chunks(counted(), out)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            where = f" to {target}"
    click.echo(f"exported {max(rows - 1, 0)} rows ({per}, {start} to {end}){where}", err=True)


@cli.command("seed-demo")
@click.option("--keys", "key_count", type=int, default=12, show_default=True,
              help="How many demo keys to add.")
@click.option("--days", type=int, default=90, show_default=True,
              help="Days of daily stats, ending today (UTC).")
@click.option("--audit-rows", type=int, default=100, show_default=True,
              help="Audit history entries to add (at least the lifecycle events).")
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable numbers.")
@actor_option
@pass_cli
def seed_demo(cli_ctx: CliContext, key_count: int, days: int, audit_rows: int, seed: int | None,
              actor_email: str | None) -> None:
    """Add clearly labelled demo keys (fake, encrypted), stats and audit history."""
    check_demo_size(key_count, days, audit_rows)  # before connecting: bad numbers fail fast
    runtime = cli_ctx.runtime()
    with cli_ctx.session(actor_email) as session:
        summary = make_demo(session, runtime.master_key, keys=key_count, days=days,
                       audit_rows=audit_rows, seed=seed)
    click.echo(f"added {summary.keys} demo keys (demo-{summary.batch}-…), "
               f"{summary.stats_rows} daily stats rows ({summary.start} to {summary.end}), "
               f"{summary.model_rows} per-model rows with tokens and "
               f"{summary.audit_rows} audit entries")
    notes = [f"failing today and auto-disabled: {summary.failing_key}" if summary.failing_key
             else "", f"hitting 429s, cooling down: {summary.rate_limited_key}"
             if summary.rate_limited_key else "",
             f"never used: {summary.idle_key}" if summary.idle_key else "",
             "at its daily limit: {} × {} ({} requests today, Pacific day)".format(
                 *summary.quota_at_limit) if summary.quota_at_limit else ""]
    for note in filter(None, notes):
        click.echo(f"  {note}")
