"""export-audit."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import click

from lib.audit.export import FORMATS, write_export
from lib.audit.queries import AuditFilter, resolve_keys, resolve_users
from lib.cli.base import CliContext, cli, pass_cli
from lib.errors import InvalidInput


def parse_moment(value: str | None, *, end: bool) -> dt.datetime | None:
    """YYYY-MM-DD (a whole UTC day; --to includes it) or an ISO date-time (UTC if no offset)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            if end and day == dt.date.max:  # up to the end of the calendar: no bound at all
                return None
            return dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time())
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a date (YYYY-MM-DD) or an ISO date-time.") from None
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise InvalidInput(f"{value!r} is outside the dates an export can cover "
                           "(years 1 to 9999, UTC).") from None
    return moment


@cli.command("export-audit")
@click.option("--from", "since", metavar="DATE", help="From this UTC day or ISO date-time.")
@click.option("--to", "until", metavar="DATE",
              help="Up to this UTC day (included) or ISO date-time (excluded).")
@click.option("--action", "actions", multiple=True, metavar="VERB",
              help="Only this action (repeat for several), e.g. key_added.")
@click.option("--key", "keys", multiple=True, metavar="NAME_OR_ID",
              help="Only this key (repeat for several); deleted keys count too.")
@click.option("--actor", "actors", multiple=True, metavar="EMAIL",
              help="Only what this user did (repeat for several).")
@click.option("--search", default="", metavar="TEXT", help="Only entries whose details hold TEXT.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("-o", "--output", required=True, metavar="FILE", help="Write here; - for stdout.")
@pass_cli
def export_audit(cli_ctx: CliContext,
                 since: str | None, until: str | None, actions: tuple[str, ...],
                 keys: tuple[str, ...], actors: tuple[str, ...], search: str, fmt: str,
                 output: str) -> None:
    """Export the filtered audit log, newest first, as CSV or JSON lines.

    Rows are streamed from the database to FILE (or stdout with -o -), so any size works.
    """
    with cli_ctx.session() as session:
        flt = AuditFilter(
            since=parse_moment(since, end=False), until=parse_moment(until, end=True),
            actions=tuple(dict.fromkeys(a.strip() for a in actions)),
            key_ids=resolve_keys(session, keys), user_ids=resolve_users(session, actors),
            search=search)
        if output == "-":
            count = write_export(session, flt, fmt, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            # Written beside the target and renamed at the end: a failed export leaves no
            # half-written file under the name asked for.
            target = Path(output)
            partial = target.with_name(target.name + ".partial")
            try:
                with partial.open("wb") as out:
                    count = write_export(session, flt, fmt, out)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    click.echo(f"exported {count} audit entries" + ("" if output == "-" else f" to {output}"),
               err=True)
