"""Audit browsing: who-is-who for admins, text search index, keyset-safe timestamps.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Keyset pages compare (created_at, id); a NULL created_at would drop out of every page.
-- A CHECK (not SET NOT NULL) keeps the spec's column definition as written.
ALTER TABLE gemini_key_audit_log
  ADD CONSTRAINT gemini_audit_created_at_present CHECK (created_at IS NOT NULL);

-- Admins see actors by email, but the app's role (authenticated) may not read auth.users
-- (on Supabase it never can). This returns id and email only, and only to an admin or the
-- service identity; anyone else gets no rows.
CREATE FUNCTION public.gemini_user_directory()
  RETURNS TABLE (id uuid, email text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
  SELECT u.id, u.email::text FROM auth.users u
  WHERE public.gemini_is_admin()
     OR coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role', '')
        = 'service_role'
$$;
-- Supabase's default privileges grant EXECUTE on new public functions to anon as well.
REVOKE ALL ON FUNCTION public.gemini_user_directory() FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.gemini_user_directory() TO authenticated, service_role;

-- "Text in details" search: a trigram index on details::text where pg_trgm can be had
-- (PG 15 here, the embedded PG 18 and Supabase all ship it). Without it the search still
-- works, as a filtered scan of the chosen date range.
DO $$
DECLARE ext_schema text;
BEGIN
  BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable (%): audit text search runs without an index', SQLERRM;
  END;
  SELECT n.nspname INTO ext_schema FROM pg_extension e
    JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
  IF ext_schema IS NOT NULL THEN
    EXECUTE format('CREATE INDEX idx_audit_log_details_trgm ON gemini_key_audit_log '
                   'USING gin ((details::text) %I.gin_trgm_ops)', ext_schema);
  END IF;
END $$;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("""
DROP INDEX IF EXISTS idx_audit_log_details_trgm;
DROP FUNCTION IF EXISTS public.gemini_user_directory();
ALTER TABLE gemini_key_audit_log DROP CONSTRAINT IF EXISTS gemini_audit_created_at_present;
""")
