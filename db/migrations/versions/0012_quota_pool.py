"""Quotas per Google Cloud project x model: admins' limits, the pool's counts, model cooldowns.

Revision ID: 0012
Revises: 0011

Gemini's limits (RPM, input TPM, RPD) are per Google Cloud project and model. A key's
project is its group: COALESCE(NULLIF(group_label, ''), 'key:' || id::text), so an
ungrouped key is its own project. Limits can only be set on named groups.

- gemini_quota_limits: per (group, model); NULL = no limit, 0 = no quota for that model.
- gemini_quota_usage: what the pool counted per (project, model) in one window: 'm' the
  UTC minute, 'd' the Pacific day (window_start = that day's Pacific midnight, naive UTC).
  Requests are counted at acquire, tokens at record.
- gemini_model_cooldowns: a (project, model) resting after a 429 that named the model, or
  with no quota at all (`limit: 0`); an admin clears one by deleting the row.
- gemini_api_keys.in_flight / lease_expires_at: calls handed out and not yet recorded, so
  the pool prefers idle keys; a count whose leases all expired (callers that died) is
  reset by the next acquire of that key. The pool index orders by it within a tier.

RLS and grants follow 0005/0009: admin-only policy plus a service_role policy, everything
revoked from the API roles, then granted per use.
"""

from alembic import op

from db.roles import API_ROLES

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

EVERYONE = ", ".join(("PUBLIC", *API_ROLES))
IS_ADMIN = ("EXISTS (SELECT 1 FROM user_profiles "
            "WHERE user_id = auth.uid() AND is_admin = true)")
POOL_FILTER = "WHERE is_active IS TRUE AND archived_at IS NULL AND deleted_at IS NULL"
TABLES = {
    "gemini_quota_limits": "gemini quota limits",
    "gemini_quota_usage": "gemini quota usage",
    "gemini_model_cooldowns": "gemini model cooldowns",
}


def _policies(table: str, label: str) -> str:
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY "Admin only access to {label}"
  ON {table} FOR ALL USING ({IS_ADMIN}) WITH CHECK ({IS_ADMIN});
CREATE POLICY "Service role access to {label}"
  ON {table} FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON {table} FROM {EVERYONE};
"""


def upgrade() -> None:
    op.execute("""
CREATE TABLE gemini_quota_limits (
  group_label VARCHAR(100) NOT NULL,
  model VARCHAR(128) NOT NULL,
  rpm INTEGER NULL CHECK (rpm IS NULL OR rpm >= 0),
  tpm BIGINT NULL CHECK (tpm IS NULL OR tpm >= 0),
  rpd INTEGER NULL CHECK (rpd IS NULL OR rpd >= 0),
  created_at TIMESTAMP NOT NULL DEFAULT now(),
  updated_at TIMESTAMP NOT NULL DEFAULT now(),
  PRIMARY KEY (group_label, model)
);
CREATE TRIGGER gemini_quota_limits_touch_updated_at BEFORE UPDATE ON gemini_quota_limits
  FOR EACH ROW EXECUTE FUNCTION gemini_touch_updated_at();

CREATE TABLE gemini_quota_usage (
  project VARCHAR(140) NOT NULL,
  model VARCHAR(128) NOT NULL,
  window_kind CHAR(1) NOT NULL CHECK (window_kind IN ('m', 'd')),
  window_start TIMESTAMP NOT NULL,
  requests INTEGER NOT NULL DEFAULT 0,
  tokens BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (project, model, window_kind, window_start)
);
-- For pruning old windows.
CREATE INDEX idx_quota_usage_window ON gemini_quota_usage (window_kind, window_start);

CREATE TABLE gemini_model_cooldowns (
  project VARCHAR(140) NOT NULL,
  model VARCHAR(128) NOT NULL,
  cooldown_until TIMESTAMP NULL,
  no_quota BOOLEAN NOT NULL DEFAULT false,
  reason TEXT,
  updated_at TIMESTAMP NOT NULL DEFAULT now(),
  PRIMARY KEY (project, model)
);
CREATE TRIGGER gemini_model_cooldowns_touch_updated_at BEFORE UPDATE ON gemini_model_cooldowns
  FOR EACH ROW EXECUTE FUNCTION gemini_touch_updated_at();

ALTER TABLE gemini_api_keys
  ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN lease_expires_at TIMESTAMP NULL;
""")
    op.execute(f"""
DROP INDEX IF EXISTS idx_gemini_keys_pool;
CREATE INDEX idx_gemini_keys_pool
  ON gemini_api_keys (priority DESC, in_flight ASC,
                      GREATEST(last_used, cooldown_until) ASC NULLS FIRST)
  {POOL_FILTER};
""")
    op.execute("".join(_policies(t, label) for t, label in TABLES.items()) + """
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_quota_limits TO authenticated, service_role;
GRANT SELECT ON gemini_quota_usage TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_quota_usage TO service_role;
GRANT SELECT, DELETE ON gemini_model_cooldowns TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_model_cooldowns TO service_role;
""")


def downgrade() -> None:
    op.execute(f"""
DROP TABLE IF EXISTS gemini_model_cooldowns, gemini_quota_usage, gemini_quota_limits;
DROP INDEX IF EXISTS idx_gemini_keys_pool;
ALTER TABLE gemini_api_keys DROP COLUMN IF EXISTS in_flight,
  DROP COLUMN IF EXISTS lease_expires_at;
CREATE INDEX idx_gemini_keys_pool
  ON gemini_api_keys (priority DESC, GREATEST(last_used, cooldown_until) ASC NULLS FIRST)
  {POOL_FILTER};
""")
