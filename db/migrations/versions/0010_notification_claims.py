"""Webhook dedupe claims: one row per notification subject, so several processes that see the
same event in the same window send it once.

Revision ID: 0010
Revises: 0009

gemini_notification_claims: dedupe_key names what an event is about (e.g.
"key.auto_disabled:main", "group.cooling_down:proj-a:day"); a process sends only if its
INSERT … ON CONFLICT (dedupe_key) DO UPDATE … WHERE expires_at <= now wins the row. Keys,
tokens and hashes never appear here (names, groups and tiers only). Expired rows are pruned
by the senders, so the table stays as small as the set of recent subjects.

Only the service identity (the notifier's worker acts as it) touches the table: RLS forced
with a service-role policy only, and 0005's grant convention (everything revoked from every
API role, then what service_role uses).
"""

from alembic import op

from db.roles import API_ROLES

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

EVERYONE = ", ".join(("PUBLIC", *API_ROLES))


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE gemini_notification_claims (
  dedupe_key VARCHAR(500) PRIMARY KEY,
  event_id UUID NOT NULL,
  claimed_at TIMESTAMP NOT NULL DEFAULT now(),
  expires_at TIMESTAMP NOT NULL
);
CREATE INDEX idx_notification_claims_expires ON gemini_notification_claims (expires_at);

ALTER TABLE gemini_notification_claims ENABLE ROW LEVEL SECURITY;
ALTER TABLE gemini_notification_claims FORCE ROW LEVEL SECURITY;
CREATE POLICY "Service role access to gemini notification claims"
  ON gemini_notification_claims FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON gemini_notification_claims FROM {EVERYONE};
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_notification_claims TO service_role;
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS gemini_notification_claims;")
