"""Alembic environment: runs on the connection db.migrate hands over, under an advisory lock."""

from alembic import context
from sqlalchemy import text

from db.models import Base

MIGRATION_LOCK_ID = 0x6B657973  # any constant; serialises app start-up and `init-db`


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=Base.metadata,
                      transaction_per_migration=False)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


run_migrations_online()
