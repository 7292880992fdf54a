"""Usage per key, UTC day and model, with Gemini's token counts.

Revision ID: 0009
Revises: 0008

Gemini's quotas and prices are per model, and the spec's gemini_key_usage_stats (kept
exactly as it is) has neither a model nor tokens. gemini_key_model_usage_stats is its
sibling: the same counts per (key, day, model) plus prompt, output, thoughts, cached and
total tokens. The pool's record statement writes both tables in one statement, so the
per-model rows of a key and day always sum to the spec's row. A call recorded without a
model is stored under model '' (shown as "unspecified").

The same admin-only RLS as the spec's tables, and the grants of 0005's convention: take
everything back from every API role, then grant what each one uses.
"""

from alembic import op

from db.roles import API_ROLES

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

EVERYONE = ", ".join(("PUBLIC", *API_ROLES))
IS_ADMIN = ("EXISTS (SELECT 1 FROM user_profiles "
            "WHERE user_id = auth.uid() AND is_admin = true)")


def upgrade() -> None:
    op.execute(f"""
CREATE TABLE gemini_key_model_usage_stats (
  key_id UUID NOT NULL REFERENCES gemini_api_keys(id) ON DELETE CASCADE,
  date DATE NOT NULL,
  model VARCHAR(128) NOT NULL DEFAULT '',
  request_count INTEGER NOT NULL DEFAULT 0,
  success_count INTEGER NOT NULL DEFAULT 0,
  failure_count INTEGER NOT NULL DEFAULT 0,
  rate_limit_count INTEGER NOT NULL DEFAULT 0,
  avg_response_time FLOAT,
  prompt_tokens BIGINT NOT NULL DEFAULT 0,
  output_tokens BIGINT NOT NULL DEFAULT 0,
  thoughts_tokens BIGINT NOT NULL DEFAULT 0,
  cached_tokens BIGINT NOT NULL DEFAULT 0,
  total_tokens BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMP NOT NULL DEFAULT now(),
  PRIMARY KEY (key_id, date, model)
);
CREATE INDEX idx_model_usage_stats_date ON gemini_key_model_usage_stats (date, model);

ALTER TABLE gemini_key_model_usage_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE gemini_key_model_usage_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY "Admin only access to gemini key model usage stats"
  ON gemini_key_model_usage_stats FOR ALL USING ({IS_ADMIN}) WITH CHECK ({IS_ADMIN});
CREATE POLICY "Service role access to gemini key model usage stats"
  ON gemini_key_model_usage_stats FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON gemini_key_model_usage_stats FROM {EVERYONE};
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_key_model_usage_stats
  TO authenticated, service_role;
""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS gemini_key_model_usage_stats;")
