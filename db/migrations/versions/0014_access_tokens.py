"""Access tokens for the gateway, and their usage per UTC day.

Revision ID: 0014
Revises: 0013

gemini_access_tokens holds a token's name, its SHA-256 hash (never the token), the first
characters for recognising it, an optional model allow-list, expiry and revocation. A name
is unique among live tokens (a revoked token's name may be reused). gemini_access_token_usage
counts each gateway request per token and UTC day: requests, errors, tokens, last use.

Admin-only RLS plus a service_role policy (the gateway and CLI act as service_role), and
0005's grant convention: revoke everything from every API role, grant what each one uses.
Tokens are never deleted (revoked instead), so nobody is granted DELETE on them.
"""

from alembic import op

from db.roles import API_ROLES

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

EVERYONE = ", ".join(("PUBLIC", *API_ROLES))
IS_ADMIN = ("EXISTS (SELECT 1 FROM user_profiles "
            "WHERE user_id = auth.uid() AND is_admin = true)")


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE gemini_access_tokens (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name VARCHAR(100) NOT NULL,
  token_hash CHAR(64) NOT NULL UNIQUE,
  token_prefix VARCHAR(16) NOT NULL,
  models TEXT[],
  created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
  created_by UUID,
  expires_at TIMESTAMP,
  revoked_at TIMESTAMP,
  last_used_at TIMESTAMP,
  CHECK (length(name) > 0)
);
CREATE UNIQUE INDEX idx_access_tokens_live_name ON gemini_access_tokens (name)
  WHERE revoked_at IS NULL;

CREATE TABLE gemini_access_token_usage (
  token_id UUID NOT NULL REFERENCES gemini_access_tokens(id) ON DELETE CASCADE,
  date DATE NOT NULL,
  request_count INTEGER NOT NULL DEFAULT 0,
  error_count INTEGER NOT NULL DEFAULT 0,
  prompt_tokens BIGINT NOT NULL DEFAULT 0,
  output_tokens BIGINT NOT NULL DEFAULT 0,
  total_tokens BIGINT NOT NULL DEFAULT 0,
  last_used_at TIMESTAMP,
  PRIMARY KEY (token_id, date)
);

ALTER TABLE gemini_access_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE gemini_access_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY "Admin only access to access tokens"
  ON gemini_access_tokens FOR ALL USING ({IS_ADMIN}) WITH CHECK ({IS_ADMIN});
CREATE POLICY "Service role access to access tokens"
  ON gemini_access_tokens FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON gemini_access_tokens FROM {EVERYONE};
GRANT SELECT, INSERT, UPDATE ON gemini_access_tokens TO authenticated, service_role;

ALTER TABLE gemini_access_token_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE gemini_access_token_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY "Admin only access to access token usage"
  ON gemini_access_token_usage FOR ALL USING ({IS_ADMIN}) WITH CHECK ({IS_ADMIN});
CREATE POLICY "Service role access to access token usage"
  ON gemini_access_token_usage FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON gemini_access_token_usage FROM {EVERYONE};
GRANT SELECT ON gemini_access_token_usage TO authenticated;
GRANT SELECT, INSERT, UPDATE ON gemini_access_token_usage TO service_role;
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS gemini_access_token_usage;"
               "DROP TABLE IF EXISTS gemini_access_tokens;")
