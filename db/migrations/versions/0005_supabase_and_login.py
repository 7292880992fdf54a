"""Hosted Supabase as it is, and a least-privilege login for the app.

Revision ID: 0005
Revises: 0004

1. The app's login (db.roles.APP_LOGIN): NOINHERIT, a member of anon / authenticated /
   service_role only, created NOLOGIN where missing (an operator gives it LOGIN and a
   password; the embedded server does so itself).
2. auth.users through SECURITY DEFINER functions owned by the migrating role. On hosted
   Supabase the API roles have no privilege on auth.users and `postgres` may not grant its
   own on, so the app asks for nothing: it calls these functions, which may only be executed
   by service_role. auth.users keeps its columns, owner and grants; the functions write rows
   the way Supabase Auth does (GoTrue's columns are filled where the table has them).
3. gemini_user_directory() asks the database who is calling (the role the session has set)
   instead of the `role` claim in request.jwt.claims, which any session can write.
4. Grants narrowed to what each role uses: Supabase's default privileges hand anon,
   authenticated and service_role ALL (TRUNCATE, TRIGGER, REFERENCES included) on every new
   table, function and sequence; `authenticated` (the signed-in admins) may read the
   master-key check table and nothing of the sign-in attempts.
5. The master-key version trigger no longer locks the check row (SELECT ... FOR SHARE needs
   UPDATE on it): it takes a shared advisory lock that start-up and rotation take exclusively
   (db.models.MASTER_KEY_LOCK_ID), so `authenticated` needs only SELECT on the table.
"""

from alembic import op
from sqlalchemy import text

from db.models import MASTER_KEY_LOCK_ID
from db.roles import API_ROLES, app_login_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Columns Supabase Auth (GoTrue) fills for an email user, and the values a row it wrote
# would have: GoTrue reads its token columns into non-nullable strings, so '' rather than
# NULL. Used only where auth.users has the column.
GOTRUE_NEW_USER = {
    "instance_id": "'00000000-0000-0000-0000-000000000000'::uuid",
    "aud": "'authenticated'",
    "role": "'authenticated'",
    "email_confirmed_at": "now()",  # an admin vouches for the address
    "raw_app_meta_data": """'{"provider": "email", "providers": ["email"]}'::jsonb""",
    "raw_user_meta_data": "'{}'::jsonb",
    "created_at": "now()",
    "updated_at": "now()",
    "confirmation_token": "''",
    "recovery_token": "''",
    "email_change_token_new": "''",
    "email_change": "''",
}
DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"

GEMINI_TABLES = ("gemini_api_keys", "gemini_key_audit_log", "gemini_key_usage_stats",
                 "gemini_master_key_check", "gemini_sign_in_attempts")
EVERYONE = ", ".join(("PUBLIC", *API_ROLES))

GRANTS = f"""
REVOKE ALL ON {', '.join(GEMINI_TABLES)} FROM {EVERYONE};
REVOKE ALL ON SEQUENCE gemini_sign_in_attempts_id_seq FROM {EVERYONE};
-- The spec's admin-only policies decide which rows; these decide which statements.
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_api_keys, gemini_key_usage_stats
  TO authenticated, service_role;
GRANT SELECT, INSERT ON gemini_key_audit_log TO authenticated, service_role;
GRANT SELECT ON gemini_master_key_check TO authenticated;  -- the version trigger reads it
GRANT SELECT, INSERT, UPDATE ON gemini_master_key_check TO service_role;
GRANT SELECT, INSERT, DELETE ON gemini_sign_in_attempts TO service_role;
GRANT USAGE ON SEQUENCE gemini_sign_in_attempts_id_seq TO service_role;
-- The schema's revision: read by the app through service_role; nobody else (on Supabase the
-- API would otherwise let anyone with the anon key rewrite it).
REVOKE ALL ON alembic_version FROM {EVERYONE};
GRANT SELECT ON alembic_version TO service_role;
REVOKE ALL ON FUNCTION public.gemini_is_admin() FROM {EVERYONE};
GRANT EXECUTE ON FUNCTION public.gemini_is_admin() TO authenticated, service_role;
DO $$
DECLARE f regprocedure;
BEGIN
  -- Trigger functions need no EXECUTE grant to fire; nobody calls them directly.
  FOREACH f IN ARRAY ARRAY['public.gemini_touch_updated_at()',
                           'public.gemini_audit_append_only()',
                           'public.gemini_keys_require_current_master_version()']::regprocedure[]
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM {EVERYONE}', f);
  END LOOP;
END $$;
"""

MASTER_VERSION_TRIGGER = f"""
CREATE OR REPLACE FUNCTION gemini_keys_require_current_master_version() RETURNS trigger
  LANGUAGE plpgsql AS $$
DECLARE
  current_version integer;
BEGIN
  -- Tombstoned rows hold no ciphertext; nothing to check.
  IF NEW.deleted_at IS NOT NULL OR coalesce(NEW.encrypted_key, '') = '' THEN
    RETURN NEW;
  END IF;
  -- Shared with other additions, exclusive with start-up and rotation (they hold it until
  -- they commit); read after the wait, so a rotation that just finished is seen.
  PERFORM pg_advisory_xact_lock_shared({MASTER_KEY_LOCK_ID});
  SELECT master_key_version INTO current_version FROM gemini_master_key_check WHERE id = 1;
  IF FOUND AND NEW.master_key_version IS DISTINCT FROM current_version THEN
    RAISE EXCEPTION 'API key % is encrypted with master key version % but this database is '
                    'at master key version %: the master key was rotated', NEW.id,
                    NEW.master_key_version, current_version
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Restart this process with the new GEMINI_KEYS_MASTER_KEY.';
  END IF;
  RETURN NEW;
END $$;
"""

USER_DIRECTORY = f"""
-- Id and email of every user, for admins (the audit page, the Keys table) and the service
-- identity. Who is calling is the role this session has set (SET LOCAL ROLE), which only a
-- login that is a member of it can set; the JWT claims are text any session may write.
CREATE OR REPLACE FUNCTION public.gemini_user_directory()
  RETURNS TABLE (id uuid, email text) LANGUAGE sql STABLE {DEFINER} AS $$
  SELECT u.id, u.email::text FROM auth.users u
  WHERE pg_catalog.current_setting('role') = 'service_role' OR public.gemini_is_admin()
$$;
REVOKE ALL ON FUNCTION public.gemini_user_directory() FROM {EVERYONE};
GRANT EXECUTE ON FUNCTION public.gemini_user_directory() TO authenticated, service_role;
"""

SERVICE_FUNCTIONS = ("gemini_auth_users(text)", "gemini_auth_password_hash(uuid)",
                     "gemini_auth_create_user(uuid, text, text)",
                     "gemini_auth_set_password(uuid, text)", "gemini_auth_record_sign_in(uuid)")


def auth_functions(columns: set[str]) -> str:
    """The service identity's way to auth.users, written for the columns it has."""
    extra = {name: value for name, value in GOTRUE_NEW_USER.items() if name in columns}
    insert_columns = ", ".join(["id", "email", "encrypted_password",
                                *(f'"{name}"' for name in extra)])
    insert_values = ", ".join(["p_id", "p_email", "p_password_hash", *extra.values()])
    touch = ", updated_at = now()" if "updated_at" in columns else ""
    grants = "\n".join(f"REVOKE ALL ON FUNCTION public.{f} FROM {EVERYONE};\n"
                       f"GRANT EXECUTE ON FUNCTION public.{f} TO service_role;"
                       for f in SERVICE_FUNCTIONS)
    return f"""
-- Every user (or the one with this email, any case): no password hashes.
CREATE FUNCTION public.gemini_auth_users(p_email text DEFAULT NULL)
  RETURNS TABLE (id uuid, email text, created_at timestamptz, last_sign_in_at timestamptz,
                 has_password boolean)
  LANGUAGE sql STABLE {DEFINER} AS $$
  SELECT u.id, u.email::text, u.created_at, u.last_sign_in_at,
         coalesce(u.encrypted_password, '') <> ''
    FROM auth.users u
   WHERE u.email IS NOT NULL AND (p_email IS NULL OR lower(u.email) = lower(p_email))
   ORDER BY lower(u.email)
$$;
-- The bcrypt hash of one user, for the sign-in check only.
CREATE FUNCTION public.gemini_auth_password_hash(p_user_id uuid) RETURNS text
  LANGUAGE sql STABLE {DEFINER} AS $$
  SELECT u.encrypted_password::text FROM auth.users u WHERE u.id = p_user_id
$$;
CREATE FUNCTION public.gemini_auth_create_user(p_id uuid, p_email text, p_password_hash text)
  RETURNS void LANGUAGE sql VOLATILE {DEFINER} AS $$
  INSERT INTO auth.users ({insert_columns}) VALUES ({insert_values})
$$;
CREATE FUNCTION public.gemini_auth_set_password(p_user_id uuid, p_password_hash text)
  RETURNS void LANGUAGE sql VOLATILE {DEFINER} AS $$
  UPDATE auth.users SET encrypted_password = p_password_hash{touch} WHERE id = p_user_id
$$;
CREATE FUNCTION public.gemini_auth_record_sign_in(p_user_id uuid)
  RETURNS void LANGUAGE sql VOLATILE {DEFINER} AS $$
  UPDATE auth.users SET last_sign_in_at = now() WHERE id = p_user_id
$$;
{grants}
"""


# Where this chain created auth.users (plain PostgreSQL), the API roles lose the direct
# privileges 0001 gave them: the functions above are the one way in, as on Supabase.
OWN_AUTH_USERS = f"""
DO $$
BEGIN
  IF (SELECT relowner FROM pg_class WHERE oid = 'auth.users'::regclass)
     = (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'REVOKE ALL ON auth.users FROM {EVERYONE}';
  END IF;
END $$;
"""


def upgrade() -> None:
    bind = op.get_bind()
    columns = set(bind.execute(text(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'auth.users'::regclass "
        "AND attnum > 0 AND NOT attisdropped AND attgenerated = ''")).scalars())
    op.execute(app_login_sql(login=False))
    op.execute(MASTER_VERSION_TRIGGER)
    op.execute(USER_DIRECTORY)
    op.execute(auth_functions(columns))
    op.execute(OWN_AUTH_USERS)
    op.execute(GRANTS)


def downgrade() -> None:
    # The login role and the revoked TRUNCATE / TRIGGER / REFERENCES stay: 0004 needs neither.
    op.execute(f"""
DROP FUNCTION IF EXISTS {', '.join(f'public.{f}' for f in SERVICE_FUNCTIONS)};
GRANT SELECT, INSERT, UPDATE, DELETE ON gemini_master_key_check, gemini_sign_in_attempts
  TO authenticated;
GRANT USAGE ON SEQUENCE gemini_sign_in_attempts_id_seq TO authenticated;
DO $$
BEGIN
  IF (SELECT relowner FROM pg_class WHERE oid = 'auth.users'::regclass)
     = (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
    GRANT SELECT, INSERT, UPDATE ON auth.users TO service_role;
  END IF;
END $$;
""")
    op.execute(MASTER_VERSION_TRIGGER.replace(
        f"PERFORM pg_advisory_xact_lock_shared({MASTER_KEY_LOCK_ID});", "").replace(
        "WHERE id = 1;", "WHERE id = 1 FOR SHARE;"))
