"""init-db and status."""

from __future__ import annotations

import click
from sqlalchemy import text

from db.engine import hidden
from db.migrate import current_revision, head_revision
from db.session import Actor, session_scope
from lib.cli.base import CliContext, cli, pass_cli
from lib.keys.status import ARCHIVED, ENABLED, IN_SERVICE
from lib.runtime import database_urls, engine_for, login_warnings, migrate

COUNTS = {
    "keys (live)": f"SELECT count(*) FROM gemini_api_keys k WHERE {IN_SERVICE.sql('k')}",
    "keys (active)": f"SELECT count(*) FROM gemini_api_keys k WHERE {ENABLED.sql('k')}",
    "keys (archived)": f"SELECT count(*) FROM gemini_api_keys k WHERE {ARCHIVED.sql('k')}",
    "users": "SELECT count(*) FROM public.gemini_auth_users()",
    "admins": "SELECT count(*) FROM user_profiles WHERE is_admin IS TRUE",
    "audit rows": "SELECT count(*) FROM gemini_key_audit_log",
    "usage stat rows": "SELECT count(*) FROM gemini_key_usage_stats",
    "master key version": "SELECT max(master_key_version) FROM gemini_master_key_check",
}


@cli.command("init-db")
@pass_cli
def init_db(cli_ctx: CliContext) -> None:
    """Create or upgrade the schema (safe to run again: it then changes nothing).

    Runs as the tables' owner: DATABASE_OWNER_URL when set, else DATABASE_URL (the embedded
    server: its own superuser)."""
    applied = migrate(cli_ctx.settings)
    state = "upgraded to" if applied else "already at"
    where = hidden(database_urls(cli_ctx.settings).owner)
    click.echo(f"schema {state} revision {head_revision()} on {where}")


@cli.command()
@pass_cli
def status(cli_ctx: CliContext) -> None:
    """Show the database (password hidden), schema revision and row counts."""
    engine = engine_for(cli_ctx.settings)
    current, head = current_revision(engine), head_revision()
    click.echo(f"database: {engine.url.render_as_string(hide_password=True)}")
    click.echo(f"schema: {current or 'none'} (head {head})")
    if current != head:
        click.echo("run `python -m lib.cli init-db` to create or upgrade the schema")
        return
    for warning in login_warnings(engine) or ["the database login has least privilege"]:
        click.echo(f"login: {warning}")
    with session_scope(Actor.service("cli"), engine=engine) as session:
        for label, sql in COUNTS.items():
            click.echo(f"{label}: {session.scalar(text(sql))}")
