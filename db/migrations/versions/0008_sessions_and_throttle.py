"""Revocable sign-in sessions, and sign-in failures counted per account, client and window.

Revision ID: 0008
Revises: 0005

gemini_user_sessions: one row per sign-in. The cookie carries a signed token naming the
session; the row (stored as a hash of the session id) is checked on every script run, so
sign-out, a password reset, revoke-admin and "sign out everywhere" end a copied cookie too.

gemini_sign_in_failures: failed and throttled sign-ins, one row per (account, client address,
15-minute window) with counts and first/last times, instead of one row (and one audit row)
per attempt: a flood of failures cannot grow the database without bound.

gemini_sign_in_attempts keeps the successful sign-ins, now with the client address, so a
client that has signed in to an account before is recognised (account-wide throttling spares
it).

Only the service identity (sign-in runs as it) may touch these tables: nothing is granted to
`anon` or `authenticated`, and RLS is forced with a service-role policy only (Supabase's
default privileges would otherwise grant everything on new tables).
"""

from alembic import op

from db.roles import API_ROLES

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = {"gemini_user_sessions": "gemini user sessions",
          "gemini_sign_in_failures": "gemini sign-in failures"}
EVERYONE = ", ".join(("PUBLIC", *API_ROLES))


# The session check needs the user's email by id; like 0005's functions, the only way to
# auth.users, owned by the migrating role and executable by the service identity alone.
USER_EMAIL = f"""
CREATE FUNCTION public.gemini_auth_user_email(p_user_id uuid) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT u.email::text FROM auth.users u WHERE u.id = p_user_id
$$;
REVOKE ALL ON FUNCTION public.gemini_auth_user_email(uuid) FROM {EVERYONE};
GRANT EXECUTE ON FUNCTION public.gemini_auth_user_email(uuid) TO service_role;
"""


def upgrade() -> None:
    op.execute(USER_EMAIL)
    op.execute("""
CREATE TABLE gemini_user_sessions (
  id BIGSERIAL PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
  token_hash VARCHAR(64) NOT NULL UNIQUE,
  client_address VARCHAR(64),
  created_at TIMESTAMP NOT NULL DEFAULT now(),
  expires_at TIMESTAMP NOT NULL,
  revoked_at TIMESTAMP
);
CREATE INDEX idx_user_sessions_live ON gemini_user_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX idx_user_sessions_expires ON gemini_user_sessions (expires_at);

CREATE TABLE gemini_sign_in_failures (
  id BIGSERIAL PRIMARY KEY,
  email VARCHAR(320) NOT NULL,
  client_address VARCHAR(64) NOT NULL,
  window_start TIMESTAMP NOT NULL,
  failures INTEGER NOT NULL DEFAULT 0,
  refused INTEGER NOT NULL DEFAULT 0,
  first_at TIMESTAMP NOT NULL,
  last_at TIMESTAMP NOT NULL,
  last_failed_at TIMESTAMP,
  UNIQUE (email, client_address, window_start)
);
CREATE INDEX idx_sign_in_failures_email ON gemini_sign_in_failures (email, last_failed_at DESC);
CREATE INDEX idx_sign_in_failures_client
  ON gemini_sign_in_failures (client_address, last_failed_at DESC);
CREATE INDEX idx_sign_in_failures_recent ON gemini_sign_in_failures (last_failed_at DESC);

ALTER TABLE gemini_sign_in_attempts ADD COLUMN IF NOT EXISTS client_address VARCHAR(64);
CREATE INDEX idx_sign_in_attempts_known_client
  ON gemini_sign_in_attempts (lower(email), client_address, attempted_at DESC)
  WHERE succeeded;
""")
    for table, label in TABLES.items():
        op.execute(f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY "Service role access to {label}" ON {table}
  FOR ALL TO service_role USING (true) WITH CHECK (true);
-- Supabase's default privileges give every API role ALL (TRUNCATE included) on a new
-- table: take everything back, then grant what the service identity uses (as 0005 does).
REVOKE ALL ON {table} FROM {EVERYONE};
GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO service_role;
REVOKE ALL ON SEQUENCE {table}_id_seq FROM {EVERYONE};
GRANT USAGE ON SEQUENCE {table}_id_seq TO service_role;
""")


def downgrade() -> None:
    op.execute("""
DROP INDEX IF EXISTS idx_sign_in_attempts_known_client;
ALTER TABLE gemini_sign_in_attempts DROP COLUMN IF EXISTS client_address;
DROP TABLE IF EXISTS gemini_sign_in_failures, gemini_user_sessions;
DROP FUNCTION IF EXISTS public.gemini_auth_user_email(uuid);
""")
