"""Key commands: add-key, import-keys, list-keys, set-active, set-priority, rename, set-group,
archive, unarchive, delete-key. Keys arrive on stdin or in a file, never in argv.

Every command that changes something prints what it did only after its transaction
committed: a failed commit prints an error and nothing that looks like success."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from typing import Any

import click

from lib.cli.base import CliContext, actor_option, cli, fail, pass_cli, read_secret_from_stdin
from lib.keys import rules, writes
from lib.keys.importing import IMPORT_MAX_BYTES, decode_import
from lib.keys.importing import import_keys as import_key_lines
from lib.keys.reads import KeyFilter, resolve_key
from lib.keys.reads import list_keys as list_key_rows
from lib.streaming import csv_cell

LIST_FIELDS = ("name", "id", "masked_hint", "kind", "group_label", "is_active", "priority",
               "usage_count", "failure_count", "last_used", "created_by_email", "created_at",
               "archived_at")


def _name_or_id(command):
    return click.argument("name_or_id", metavar="NAME_OR_ID")(command)


@cli.command("add-key")
@click.option("--name", required=True, help="A name for the key, e.g. project-a-main.")
@click.option("--priority", default=str(rules.DEFAULT_PRIORITY), show_default=True,
              help=f"{rules.PRIORITY_MIN}-{rules.PRIORITY_MAX}; higher is preferred.")
@click.option("--group", "group_label", default=None,
              help="The Google Cloud project the key belongs to (quotas are per project).")
@actor_option
@pass_cli
def add_key(cli_ctx: CliContext,
            name: str, priority: str, group_label: str | None, actor_email: str | None) -> None:
    """Add one key, read from stdin, never from the command line.

    Example: printf '%s\\n' "$KEY" | python -m lib.cli add-key --name prod-1
    """
    master = cli_ctx.runtime().master_key
    api_key = read_secret_from_stdin("API key")
    with cli_ctx.session(actor_email) as session:
        row = writes.add_key(session, master, name=name, api_key=api_key,
                             priority=priority, group_label=group_label)
    click.echo(f"added key {row.name} ({row.masked_hint}, id {row.id})")


@cli.command("import-keys")
@click.argument("file", type=click.File("rb"))
@click.option("--priority", default=str(rules.DEFAULT_PRIORITY), show_default=True,
              help="Priority for every imported key.")
@click.option("--group", "group_label", default=None, help="Group for every imported key.")
@click.option("--skip-refused", is_flag=True,
              help="Add the good lines even if some are refused (default: add nothing).")
@actor_option
@pass_cli
def import_keys(cli_ctx: CliContext, file: io.BufferedIOBase, priority: str,
                group_label: str | None,
                skip_refused: bool, actor_email: str | None) -> None:
    """Add many keys from FILE ('-' for stdin): lines of `name,key` or one key per line.

    While any line is refused (bad shape, bad name, duplicate) nothing is added, unless
    --skip-refused is given. Blank lines, '#' comments and a name,key header are skipped.
    """
    text = decode_import(file.read(IMPORT_MAX_BYTES + 1), "FILE")  # before connecting
    master = cli_ctx.runtime().master_key
    with cli_ctx.session(actor_email) as session:
        result = import_key_lines(session, master, text, priority=priority,
                                  group_label=group_label, skip_refused=skip_refused)
    for line in result.refused:
        click.echo(f"skipped line {line.line_no}: {line.problem}", err=True)
    for row in result.added:
        click.echo(f"added key {row.name} ({row.masked_hint})")
    click.echo(f"imported {len(result.added)} key(s), skipped {len(result.refused)} line(s)")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _csv_cell(value: Any) -> str:
    return csv_cell(_cell(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@cli.command("list-keys")
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True)
@click.option("--search", default="", help="Part of a name or group.")
@click.option("--all", "include_archived", is_flag=True, help="Include archived keys.")
@pass_cli
def list_keys(cli_ctx: CliContext, output_format: str, search: str, include_archived: bool) -> None:
    """List keys, masked like AQ.A…x7Zq or AIza…k3Q9, with their type; nothing is decrypted."""
    filters = KeyFilter(search=search, archived=None if include_archived else False)
    with cli_ctx.session() as session:
        rows = list_key_rows(session, filters)
    rows = [{f: getattr(row, f) for f in LIST_FIELDS} for row in rows]
    if output_format == "json":
        click.echo(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in rows], indent=2))
    elif output_format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(LIST_FIELDS)
        writer.writerows([[_csv_cell(r[f]) for f in LIST_FIELDS] for r in rows])
        click.echo(out.getvalue(), nl=False)
    elif not rows:
        click.echo("no keys (add one with add-key or import-keys)")
    else:
        shown = ("name", "masked_hint", "kind", "group_label", "is_active", "priority",
                 "usage_count", "failure_count", "last_used", "archived_at")
        table = [[_cell(r[f]) for f in shown] for r in rows]
        widths = [max(len(f), *(len(line[i]) for line in table)) for i, f in enumerate(shown)]
        click.echo("  ".join(f.ljust(w) for f, w in zip(shown, widths, strict=True)).rstrip())
        for line in table:
            click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"true", "on", "yes", "1"}:
        return True
    if lowered in {"false", "off", "no", "0"}:
        return False
    fail("expected true or false")
    raise AssertionError  # unreachable: fail() exits


@cli.command("set-active")
@_name_or_id
@click.argument("active", metavar="true|false")
@click.option("--reason", default=None, help="Why it is switched off (kept in the audit log).")
@actor_option
@pass_cli
def set_active(cli_ctx: CliContext, name_or_id: str, active: str, reason: str | None,
               actor_email: str | None) -> None:
    """Switch a key on (the pool may use it) or off."""
    wanted = _parse_bool(active)
    with cli_ctx.session(actor_email) as session:
        key = resolve_key(session, name_or_id)
        writes.set_active(session, key.id, wanted, reason=reason)
    click.echo(f"key {key.name} is {'active' if wanted else 'inactive'}")


@cli.command("set-priority")
@_name_or_id
@click.argument("priority")
@actor_option
@pass_cli
def set_priority(cli_ctx: CliContext,
                 name_or_id: str, priority: str, actor_email: str | None) -> None:
    """Set a key's priority (1-1000; higher is preferred by the pool)."""
    with cli_ctx.session(actor_email) as session:
        key = resolve_key(session, name_or_id)
        writes.set_priority(session, key.id, priority)
    click.echo(f"key {key.name} has priority {key.priority}")


@cli.command("rename")
@_name_or_id
@click.argument("new_name")
@actor_option
@pass_cli
def rename(cli_ctx: CliContext, name_or_id: str, new_name: str, actor_email: str | None) -> None:
    """Rename a key."""
    with cli_ctx.session(actor_email) as session:
        key = resolve_key(session, name_or_id)
        old = key.name
        writes.rename_key(session, key.id, new_name)
    click.echo(f"key {old} is now named {key.name}")


@cli.command("set-group")
@_name_or_id
@click.argument("group", default="")
@actor_option
@pass_cli
def set_group(cli_ctx: CliContext, name_or_id: str, group: str, actor_email: str | None) -> None:
    """Set the key's group (its Google Cloud project); omit GROUP to clear it."""
    with cli_ctx.session(actor_email) as session:
        key = resolve_key(session, name_or_id)
        writes.set_group(session, key.id, group)
    click.echo(f"key {key.name} is in group {key.group_label or '(none)'}")


@cli.command("archive")
@_name_or_id
@actor_option
@pass_cli
def archive(cli_ctx: CliContext, name_or_id: str, actor_email: str | None) -> None:
    """Archive a key: hidden from the default list, never picked by the pool."""
    with cli_ctx.session(actor_email) as session:
        key = writes.archive_key(session, resolve_key(session, name_or_id).id)
    click.echo(f"key {key.name} is archived")


@cli.command("unarchive")
@_name_or_id
@actor_option
@pass_cli
def unarchive(cli_ctx: CliContext, name_or_id: str, actor_email: str | None) -> None:
    """Bring an archived key back."""
    with cli_ctx.session(actor_email) as session:
        key = writes.unarchive_key(session, resolve_key(session, name_or_id).id)
    click.echo(f"key {key.name} is no longer archived")


@cli.command("delete-key")
@_name_or_id
@click.option("--yes", is_flag=True, help="Confirm: the key can never be decrypted again.")
@actor_option
@pass_cli
def delete_key(cli_ctx: CliContext, name_or_id: str, yes: bool, actor_email: str | None) -> None:
    """Delete a key for good: its ciphertext is wiped; the row and its audit history stay."""
    if not yes:
        fail("deleting cannot be undone; pass --yes to confirm (or use archive instead)")
    with cli_ctx.session(actor_email) as session:
        key = writes.delete_key(session, resolve_key(session, name_or_id).id)
    click.echo(f"key {key.name} deleted (its history stays in the audit log)")
