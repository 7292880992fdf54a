"""The one-time setup code that creates the first admin in the browser.

Revision ID: 0011
Revises: 0010

gemini_setup_code holds at most one row (id = 1): the SHA-256 of the code the server printed
to its console while no admin existed (never the code itself), when it expires, when it was
used, and the failed attempts of the current 15-minute window (the throttle survives a new
code). Only the service identity (the sign-in page runs as it) touches it: RLS forced with a
service-role policy, everything else revoked (0005's convention).
"""

from alembic import op

from db.roles import API_ROLES

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

EVERYONE = ", ".join(("PUBLIC", *API_ROLES))


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE gemini_setup_code (
  id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  code_hash VARCHAR(64) NOT NULL,
  created_at TIMESTAMP NOT NULL DEFAULT now(),
  expires_at TIMESTAMP NOT NULL,
  used_at TIMESTAMP,
  failures INTEGER NOT NULL DEFAULT 0,
  window_start TIMESTAMP
);
ALTER TABLE gemini_setup_code ENABLE ROW LEVEL SECURITY;
ALTER TABLE gemini_setup_code FORCE ROW LEVEL SECURITY;
CREATE POLICY "Service role access to the setup code" ON gemini_setup_code
  FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON gemini_setup_code FROM {EVERYONE};
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_setup_code TO service_role;
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS gemini_setup_code")
