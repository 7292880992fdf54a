"""The pool's index orders keys by when they last became usable, so cooling keys sort last.

Revision ID: 0004
Revises: 0003

0001's idx_gemini_keys_pool (priority DESC, last_used) left keys that are cooling down at
the front of their tier: they are never used, so their last_used stays old, and every
acquire walked past all of them (with 30,000 keys, 10% cooling: ~12x a SELECT 1).
Ordering by GREATEST(last_used, cooldown_until) puts every key that is usable now
(cooldown_until <= now) before every key still cooling, so the first row the index yields
is the one handed out. Within a tier this is least recently used, where a key that just
came out of a cooldown counts as used at that moment (it goes behind keys idle longer).
GREATEST ignores NULLs: a key never used and never cooled sorts first.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

POOL_FILTER = "WHERE is_active IS TRUE AND archived_at IS NULL AND deleted_at IS NULL"


def upgrade() -> None:
    op.execute(f"""
DROP INDEX IF EXISTS idx_gemini_keys_pool;
CREATE INDEX idx_gemini_keys_pool
  ON gemini_api_keys (priority DESC, GREATEST(last_used, cooldown_until) ASC NULLS FIRST)
  {POOL_FILTER};
""")


def downgrade() -> None:
    op.execute(f"""
DROP INDEX IF EXISTS idx_gemini_keys_pool;
CREATE INDEX idx_gemini_keys_pool ON gemini_api_keys (priority DESC, last_used ASC NULLS FIRST)
  {POOL_FILTER};
""")
