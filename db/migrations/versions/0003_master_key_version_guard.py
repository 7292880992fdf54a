"""A key row must be encrypted under the master-key version in force.

Revision ID: 0003
Revises: 0002

A process still running with the old master key after a rotation would otherwise insert
rows that only the old key decrypts, which nobody has any more. The trigger also serialises
key additions with a rotation: it takes a SHARE lock on the check row, which
rotate-master-key holds FOR UPDATE for its whole transaction, so an add that races a
rotation waits for it and then fails with this message instead of being left behind.
It fires on new ciphertext only (INSERT, or an UPDATE that sets encrypted_key, as rotation
does), so the pool's counter updates never pay for the lookup.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE FUNCTION gemini_keys_require_current_master_version() RETURNS trigger
  LANGUAGE plpgsql AS $$
DECLARE
  current_version integer;
BEGIN
  -- Tombstoned rows hold no ciphertext; nothing to check.
  IF NEW.deleted_at IS NOT NULL OR coalesce(NEW.encrypted_key, '') = '' THEN
    RETURN NEW;
  END IF;
  SELECT master_key_version INTO current_version
    FROM gemini_master_key_check WHERE id = 1 FOR SHARE;
  IF FOUND AND NEW.master_key_version IS DISTINCT FROM current_version THEN
    RAISE EXCEPTION 'API key % is encrypted with master key version % but this database is '
                    'at master key version %: the master key was rotated', NEW.id,
                    NEW.master_key_version, current_version
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Restart this process with the new GEMINI_KEYS_MASTER_KEY.';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER gemini_api_keys_master_key_version
  BEFORE INSERT OR UPDATE OF encrypted_key ON gemini_api_keys
  FOR EACH ROW EXECUTE FUNCTION gemini_keys_require_current_master_version();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS gemini_api_keys_master_key_version ON gemini_api_keys;
DROP FUNCTION IF EXISTS gemini_keys_require_current_master_version();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
