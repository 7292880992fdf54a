"""The spec's schema, Supabase's pieces where missing, and what the product adds beside it.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

IS_ADMIN = ("EXISTS (SELECT 1 FROM user_profiles "
            "WHERE user_id = auth.uid() AND is_admin = true)")

# What Supabase already has; created only where missing so one chain runs on both.
SUPABASE_PIECES = r"""
CREATE SCHEMA IF NOT EXISTS auth;
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
    END IF;
  END LOOP;
  IF to_regclass('auth.users') IS NULL THEN
    CREATE TABLE auth.users (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      email varchar(255),
      encrypted_password varchar(255),
      created_at timestamptz DEFAULT now(),
      last_sign_in_at timestamptz
    );
    CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));
    GRANT SELECT, INSERT, UPDATE ON auth.users TO service_role;
  END IF;
  IF to_regprocedure('auth.uid()') IS NULL THEN
    CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
      SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $f$;
  END IF;
  IF to_regprocedure('uuid_generate_v4()') IS NULL THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
    EXCEPTION WHEN OTHERS THEN
      -- The embedded server ships without uuid-ossp; gen_random_uuid() is built in.
      CREATE FUNCTION public.uuid_generate_v4() RETURNS uuid LANGUAGE sql VOLATILE
        AS 'SELECT gen_random_uuid()';
    END;
  END IF;
  IF to_regclass('public.user_profiles') IS NULL THEN
    CREATE TABLE public.user_profiles (
      user_id uuid PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE,
      created_at timestamptz DEFAULT now()
    );
    ALTER TABLE public.user_profiles ENABLE ROW LEVEL SECURITY;
    CREATE POLICY "Users read their own profile" ON public.user_profiles
      FOR SELECT USING (user_id = auth.uid());
  END IF;
END $$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
"""

SPEC_TABLES = """
CREATE TABLE gemini_api_keys (
  id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
  name VARCHAR(255) NOT NULL,
  encrypted_key TEXT NOT NULL,
  encryption_iv VARCHAR(255) NOT NULL,
  encryption_tag VARCHAR(255) NOT NULL,
  is_active BOOLEAN DEFAULT true,
  priority INTEGER DEFAULT 1,
  created_by UUID REFERENCES auth.users(id),
  created_at TIMESTAMP DEFAULT NOW(),
  updated_at TIMESTAMP DEFAULT NOW(),
  last_used TIMESTAMP,
  usage_count INTEGER DEFAULT 0,
  failure_count INTEGER DEFAULT 0
);
CREATE TABLE gemini_key_audit_log (
  id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
  key_id UUID REFERENCES gemini_api_keys(id) ON DELETE CASCADE,
  action VARCHAR(50) NOT NULL,
  user_id UUID REFERENCES auth.users(id),
  created_at TIMESTAMP DEFAULT NOW(),
  details JSONB
);
CREATE TABLE gemini_key_usage_stats (
  id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
  key_id UUID REFERENCES gemini_api_keys(id) ON DELETE CASCADE,
  date DATE NOT NULL,
  request_count INTEGER DEFAULT 0,
  success_count INTEGER DEFAULT 0,
  failure_count INTEGER DEFAULT 0,
  rate_limit_count INTEGER DEFAULT 0,
  avg_response_time FLOAT,
  created_at TIMESTAMP DEFAULT NOW(),
  UNIQUE(key_id, date)
);
ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS is_admin BOOLEAN DEFAULT false;
CREATE INDEX idx_gemini_keys_active ON gemini_api_keys(is_active);
CREATE INDEX idx_gemini_keys_priority ON gemini_api_keys(priority DESC);
CREATE INDEX idx_audit_log_key_id ON gemini_key_audit_log(key_id);
CREATE INDEX idx_usage_stats_key_date ON gemini_key_usage_stats(key_id, date);
"""

# Beside the spec: crypto bookkeeping, grouping, lifecycle, the pool's state, sign-in throttle.
PRODUCT_ADDITIONS = """
ALTER TABLE gemini_api_keys
  ADD COLUMN master_key_version INTEGER NOT NULL DEFAULT 1,
  ADD COLUMN fingerprint VARCHAR(64),
  ADD COLUMN masked_hint VARCHAR(32) NOT NULL DEFAULT '',
  ADD COLUMN group_label VARCHAR(100),
  ADD COLUMN archived_at TIMESTAMP,
  ADD COLUMN deleted_at TIMESTAMP,
  ADD COLUMN cooldown_until TIMESTAMP,
  ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0,
  ADD COLUMN disabled_reason TEXT;
CREATE UNIQUE INDEX uq_gemini_keys_name_live ON gemini_api_keys (lower(name))
  WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX uq_gemini_keys_fingerprint_live ON gemini_api_keys (fingerprint)
  WHERE deleted_at IS NULL;
CREATE INDEX idx_gemini_keys_pool ON gemini_api_keys (priority DESC, last_used ASC NULLS FIRST)
  WHERE is_active IS TRUE AND archived_at IS NULL AND deleted_at IS NULL;
CREATE INDEX idx_audit_log_created ON gemini_key_audit_log (created_at DESC, id DESC);
CREATE INDEX idx_audit_log_key_created
  ON gemini_key_audit_log (key_id, created_at DESC, id DESC);
CREATE INDEX idx_audit_log_action_created
  ON gemini_key_audit_log (action, created_at DESC, id DESC);
CREATE INDEX idx_audit_log_user_created
  ON gemini_key_audit_log (user_id, created_at DESC, id DESC);
CREATE INDEX idx_usage_stats_date ON gemini_key_usage_stats (date, key_id);

CREATE TABLE gemini_master_key_check (
  id INTEGER PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  master_key_version INTEGER NOT NULL,
  check_value TEXT NOT NULL,
  updated_at TIMESTAMP DEFAULT NOW()
);
CREATE TABLE gemini_sign_in_attempts (
  id BIGSERIAL PRIMARY KEY,
  email VARCHAR(320) NOT NULL,
  succeeded BOOLEAN NOT NULL,
  attempted_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_sign_in_attempts_email
  ON gemini_sign_in_attempts (lower(email), attempted_at DESC);

CREATE FUNCTION gemini_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER gemini_api_keys_touch_updated_at BEFORE UPDATE ON gemini_api_keys
  FOR EACH ROW EXECUTE FUNCTION gemini_touch_updated_at();

-- Append-only audit log. The spec's ON DELETE CASCADE would erase a key's history when the
-- key row is deleted; this trigger refuses that too (keys are retired by tombstoning).
CREATE FUNCTION gemini_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'gemini_key_audit_log is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Keys are retired by archiving or tombstoning, never by deleting the row.';
END $$;
CREATE TRIGGER gemini_audit_append_only BEFORE UPDATE OR DELETE ON gemini_key_audit_log
  FOR EACH ROW EXECUTE FUNCTION gemini_audit_append_only();

-- Lets admins manage every profile without the policy querying its own table recursively.
CREATE FUNCTION public.gemini_is_admin() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = public, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM public.user_profiles WHERE user_id = auth.uid() AND is_admin = true)
$$;
REVOKE ALL ON FUNCTION public.gemini_is_admin() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.gemini_is_admin() TO authenticated, service_role;
CREATE POLICY "Gemini admins manage profiles" ON user_profiles FOR ALL TO authenticated
  USING (public.gemini_is_admin()) WITH CHECK (public.gemini_is_admin());
CREATE POLICY "Service role manages profiles" ON user_profiles FOR ALL TO service_role
  USING (true) WITH CHECK (true);
"""

SECURED_TABLES = {
    "gemini_api_keys": "gemini keys",
    "gemini_key_audit_log": "gemini key audit log",
    "gemini_key_usage_stats": "gemini key usage stats",
    "gemini_master_key_check": "gemini master key check",
    "gemini_sign_in_attempts": "gemini sign-in attempts",
}


def rls_statements() -> str:
    """RLS enabled and forced, the spec's admin-only policy, and the service identity's."""
    parts = []
    for table, label in SECURED_TABLES.items():
        parts.append(f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY "Admin only access to {label}" ON {table}
  FOR ALL USING ({IS_ADMIN}) WITH CHECK ({IS_ADMIN});
CREATE POLICY "Service role access to {label}" ON {table}
  FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON {table} FROM anon;""")
    return "\n".join(parts)


GRANTS = """
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE ON user_profiles TO authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_api_keys, gemini_key_usage_stats,
  gemini_master_key_check, gemini_sign_in_attempts TO authenticated, service_role;
GRANT USAGE ON SEQUENCE gemini_sign_in_attempts_id_seq TO authenticated, service_role;
GRANT SELECT, INSERT ON gemini_key_audit_log TO authenticated, service_role;
-- Supabase's default privileges grant everything on new tables; the audit log stays append-only.
REVOKE UPDATE, DELETE, TRUNCATE ON gemini_key_audit_log FROM authenticated, service_role;
"""


def upgrade() -> None:
    op.execute(SUPABASE_PIECES)
    op.execute(SPEC_TABLES)
    op.execute(PRODUCT_ADDITIONS)
    op.execute(rls_statements())
    op.execute(GRANTS)


def downgrade() -> None:
    op.execute("""
DROP POLICY IF EXISTS "Gemini admins manage profiles" ON user_profiles;
DROP POLICY IF EXISTS "Service role manages profiles" ON user_profiles;
DROP FUNCTION IF EXISTS public.gemini_is_admin();
DROP TABLE IF EXISTS gemini_sign_in_attempts, gemini_master_key_check, gemini_key_usage_stats,
  gemini_key_audit_log, gemini_api_keys;
DROP FUNCTION IF EXISTS gemini_audit_append_only();
DROP FUNCTION IF EXISTS gemini_touch_updated_at();
ALTER TABLE user_profiles DROP COLUMN IF EXISTS is_admin;
""")
