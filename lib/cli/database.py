"""init-db and status."""

from __future__ import annotations

import click
from sqlalchemy import text

from db.migrate import current_revision, head_revision
from db.session import Actor, session_scope
from lib.bootstrap import engine_for, load_settings, migrate
from lib.cli.base import cli

COUNTS = {
    "keys (live)": "SELECT count(*) FROM gemini_api_keys"
                   " WHERE archived_at IS NULL AND deleted_at IS NULL",
    "keys (active)": "SELECT count(*) FROM gemini_api_keys WHERE is_active IS TRUE"
                     " AND archived_at IS NULL AND deleted_at IS NULL",
    "keys (archived)": "SELECT count(*) FROM gemini_api_keys"
                       " WHERE archived_at IS NOT NULL AND deleted_at IS NULL",
    "users": "SELECT count(*) FROM auth.users",
    "admins": "SELECT count(*) FROM user_profiles WHERE is_admin IS TRUE",
    "audit rows": "SELECT count(*) FROM gemini_key_audit_log",
    "usage stat rows": "SELECT count(*) FROM gemini_key_usage_stats",
    "master key version": "SELECT max(master_key_version) FROM gemini_master_key_check",
}


@cli.command("init-db")
def init_db() -> None:
    """Create or upgrade the schema (safe to run again: it then changes nothing)."""
    engine = engine_for(load_settings())
    applied = migrate(engine)
    state = "upgraded to" if applied else "already at"
    where = engine.url.render_as_string(hide_password=True)
    click.echo(f"schema {state} revision {head_revision()} on {where}")


@cli.command()
def status() -> None:
    """Show the database (password hidden), schema revision and row counts."""
    engine = engine_for(load_settings())
    current, head = current_revision(engine), head_revision()
    click.echo(f"database: {engine.url.render_as_string(hide_password=True)}")
    click.echo(f"schema: {current or 'none'} (head {head})")
    if current != head:
        click.echo("run `python -m lib.cli init-db` to create or upgrade the schema")
        return
    with session_scope(Actor.service("cli"), engine=engine) as session:
        for label, sql in COUNTS.items():
            click.echo(f"{label}: {session.scalar(text(sql))}")
