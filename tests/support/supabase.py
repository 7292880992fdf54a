"""A database shaped like a hosted Supabase project, as far as this app can tell.

What supabase/postgres and Supabase Auth (GoTrue) set up, and the app meets:
- roles supabase_admin, supabase_auth_admin, authenticator, anon, authenticated,
  service_role, and the login you are given, `postgres`: NOSUPERUSER, CREATEROLE, CREATEDB,
  REPLICATION, BYPASSRLS, a member of anon / authenticated / service_role (WITH ADMIN OPTION
  from PostgreSQL 16 on), search_path "$user", public, extensions;
- schema auth owned by supabase_admin; auth.users with Supabase Auth's columns, indexes and
  RLS enabled (no policies), owned by supabase_auth_admin; `postgres` has ALL on it (SELECT
  WITH GRANT OPTION), the API roles have only USAGE on the schema; auth.uid(), auth.role(),
  auth.email(), auth.jwt() owned by supabase_auth_admin;
- schema extensions (owned by supabase_admin) with uuid-ossp; where the server has no
  uuid-ossp (the embedded one), a stand-in extensions.uuid_generate_v4() on gen_random_uuid();
- the default privileges that give anon, authenticated and service_role ALL on every table,
  function and sequence `postgres` creates in public;
- one user created by Supabase Auth: GoTrue's columns and a bcrypt $2a$ hash (cost 10).

Differences, all because the test servers are shared and their superuser is itself called
`postgres`: the stand-in for Supabase's `postgres` is the login SUPABASE_POSTGRES (no
password: the test servers trust local connections); supabase_admin is NOLOGIN and not a
superuser, supabase_auth_admin and authenticator are NOLOGIN (nothing here logs in as them);
extensions are created by the test server's superuser; roles are cluster-wide, so the API roles
keep the attributes they already have there (our migrations made them NOLOGIN NOINHERIT;
Supabase's are INHERIT and service_role has BYPASSRLS, which changes nothing for this app:
every policy already admits service_role).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import bcrypt
from sqlalchemy import create_engine, text

from db.engine import as_login
from db.roles import APP_LOGIN
from tests.support.databases import drop_database, server_url, servers_lock, with_database

SUPABASE_POSTGRES = "gk_supabase_postgres"
GOTRUE_EMAIL = "signed.up@example.com"
GOTRUE_PASSWORD = "a passphrase typed into Supabase Auth"

ROLES = f"""
DO $$
DECLARE
  spec text[];
BEGIN
  FOREACH spec SLICE 1 IN ARRAY ARRAY[
      ['anon', 'NOLOGIN NOINHERIT'], ['authenticated', 'NOLOGIN NOINHERIT'],
      ['service_role', 'NOLOGIN NOINHERIT BYPASSRLS'],
      ['supabase_admin', 'NOLOGIN'], ['supabase_auth_admin', 'NOLOGIN NOINHERIT'],
      ['authenticator', 'NOLOGIN NOINHERIT'],
      ['{SUPABASE_POSTGRES}', 'LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS']]
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = spec[1]) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s', spec[1], spec[2]);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- made concurrently
      END;
    END IF;
  END LOOP;
END $$;
ALTER ROLE {SUPABASE_POSTGRES} LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
ALTER ROLE {SUPABASE_POSTGRES} SET search_path = "$user", public, extensions;
GRANT anon, authenticated, service_role TO authenticator;
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 160000 THEN
    GRANT anon, authenticated, service_role TO {SUPABASE_POSTGRES} WITH ADMIN OPTION;
  ELSE
    GRANT anon, authenticated, service_role TO {SUPABASE_POSTGRES};
  END IF;
END $$;
"""

AUTH_USERS = """
CREATE TABLE auth.users (
  instance_id uuid,
  id uuid NOT NULL,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change_token_new varchar(255),
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text DEFAULT NULL::character varying,
  phone_confirmed_at timestamptz,
  phone_change text DEFAULT ''::character varying,
  phone_change_token varchar(255) DEFAULT ''::character varying,
  phone_change_sent_at timestamptz,
  confirmed_at timestamptz GENERATED ALWAYS AS (LEAST(email_confirmed_at, phone_confirmed_at))
    STORED,
  email_change_token_current varchar(255) DEFAULT ''::character varying,
  email_change_confirm_status smallint DEFAULT 0,
  banned_until timestamptz,
  reauthentication_token varchar(255) DEFAULT ''::character varying,
  reauthentication_sent_at timestamptz,
  is_sso_user boolean NOT NULL DEFAULT false,
  deleted_at timestamptz,
  is_anonymous boolean NOT NULL DEFAULT false,
  CONSTRAINT users_pkey PRIMARY KEY (id),
  CONSTRAINT users_phone_key UNIQUE (phone),
  CONSTRAINT users_email_change_confirm_status_check
    CHECK (email_change_confirm_status >= 0 AND email_change_confirm_status <= 2)
);
CREATE UNIQUE INDEX confirmation_token_idx ON auth.users (confirmation_token)
  WHERE confirmation_token !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX recovery_token_idx ON auth.users (recovery_token)
  WHERE recovery_token !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX email_change_token_new_idx ON auth.users (email_change_token_new)
  WHERE email_change_token_new !~ '^[0-9 ]*$';
CREATE UNIQUE INDEX users_email_partial_key ON auth.users (email) WHERE is_sso_user = false;
CREATE INDEX users_instance_id_email_idx ON auth.users (instance_id, lower(email));
CREATE INDEX users_instance_id_idx ON auth.users (instance_id);
CREATE INDEX users_is_anonymous_idx ON auth.users (is_anonymous);
ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
         )::uuid $$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
         )::text $$;
CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.email', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
         )::text $$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
"""


def project_sql(has_uuid_ossp: bool) -> str:
    """Everything inside the project's database, run by the test server's superuser."""
    uuid_ossp = ('CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;' if has_uuid_ossp else
                 "CREATE FUNCTION extensions.uuid_generate_v4() RETURNS uuid LANGUAGE sql "
                 "VOLATILE AS 'SELECT gen_random_uuid()';\n"
                 "ALTER FUNCTION extensions.uuid_generate_v4() OWNER TO supabase_admin;")
    p = SUPABASE_POSTGRES
    return f"""
CREATE SCHEMA extensions AUTHORIZATION supabase_admin;
{uuid_ossp}
GRANT USAGE ON SCHEMA extensions TO {p}, anon, authenticated, service_role;
GRANT ALL ON SCHEMA extensions TO {p};
GRANT USAGE ON SCHEMA public TO {p}, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {p} IN SCHEMA public
  GRANT ALL ON TABLES TO {p}, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {p} IN SCHEMA public
  GRANT ALL ON FUNCTIONS TO {p}, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {p} IN SCHEMA public
  GRANT ALL ON SEQUENCES TO {p}, anon, authenticated, service_role;
CREATE SCHEMA auth AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT ALL ON SCHEMA auth TO supabase_auth_admin, {p};
SET ROLE supabase_auth_admin;
{AUTH_USERS}
RESET ROLE;
GRANT ALL ON auth.users TO {p};
GRANT SELECT ON auth.users TO {p} WITH GRANT OPTION;
GRANT ALL ON ALL ROUTINES IN SCHEMA auth TO {p};
"""


GOTRUE_SIGN_UP = """
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
  email_confirmed_at, raw_app_meta_data, raw_user_meta_data, created_at, updated_at,
  confirmation_token, recovery_token, email_change_token_new, email_change)
VALUES ('00000000-0000-0000-0000-000000000000', :id, 'authenticated', 'authenticated', :email,
  :hash, now(), '{"provider": "email", "providers": ["email"]}', '{}', now(), now(),
  '', '', '', '')
"""


@dataclass(frozen=True)
class SupabaseProject:
    """The project's database: DATABASE_URL as Supabase gives it (its `postgres`), the app's
    own login once an operator enabled it, and the test server's superuser (for inspection)."""

    server: str
    name: str
    superuser_url: str
    gotrue_user_id: uuid.UUID

    @property
    def postgres_url(self) -> str:
        return as_login(self.superuser_url, SUPABASE_POSTGRES)

    @property
    def app_url(self) -> str:
        return as_login(self.superuser_url, APP_LOGIN)


def create_project(server: str, name: str) -> SupabaseProject:
    """A new database on `server` shaped like a fresh hosted project (nothing of ours yet)."""
    base = server_url(server)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        with servers_lock():  # cluster-wide roles: one test process at a time
            connection.execute(text(ROLES))
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}" OWNER {SUPABASE_POSTGRES}'))
    admin.dispose()
    url = with_database(base, name)
    engine = create_engine(url)
    gotrue_id = uuid.uuid4()
    with engine.begin() as connection:
        has_uuid_ossp = bool(connection.scalar(text(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp'")))
        connection.execute(text(project_sql(has_uuid_ossp)))
        # Supabase Auth's own sign-up: Go's bcrypt writes $2a$ hashes at cost 10.
        hashed = bcrypt.hashpw(GOTRUE_PASSWORD.encode(), bcrypt.gensalt(10, prefix=b"2a"))
        connection.execute(text("SET LOCAL ROLE supabase_auth_admin"))
        connection.execute(text(GOTRUE_SIGN_UP),
                           {"id": gotrue_id, "email": GOTRUE_EMAIL, "hash": hashed.decode()})
    engine.dispose()
    return SupabaseProject(server, name, url, gotrue_id)


def enable_app_login(project: SupabaseProject) -> None:
    """What the README asks the operator to do after init-db (there with a password)."""
    engine = create_engine(project.superuser_url)
    with engine.begin() as connection:
        connection.execute(text(f"ALTER ROLE {APP_LOGIN} LOGIN"))
    engine.dispose()


def drop_project(project: SupabaseProject) -> None:
    drop_database(project.server, project.name)


AUTH_SHAPE = """
SELECT json_build_object(
  'columns', (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod),
                     a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated)
                     ORDER BY a.attnum)
                FROM pg_attribute a LEFT JOIN pg_attrdef d
                  ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE a.attrelid = 'auth.users'::regclass AND a.attnum > 0
                 AND NOT a.attisdropped),
  'table', (SELECT json_build_array(pg_get_userbyid(relowner), relacl::text, relrowsecurity,
                                    relforcerowsecurity)
              FROM pg_class WHERE oid = 'auth.users'::regclass),
  'indexes', (SELECT json_agg(indexdef ORDER BY indexname) FROM pg_indexes
               WHERE schemaname = 'auth'),
  'constraints', (SELECT json_agg(conname || ' ' || pg_get_constraintdef(oid) ORDER BY conname)
                    FROM pg_constraint WHERE conrelid = 'auth.users'::regclass),
  -- (not the internal ones a foreign key to auth.users adds, as any Supabase app's does)
  'triggers', (SELECT json_agg(tgname ORDER BY tgname) FROM pg_trigger
                WHERE tgrelid = 'auth.users'::regclass AND NOT tgisinternal),
  'policies', (SELECT json_agg(policyname ORDER BY policyname) FROM pg_policies
                WHERE schemaname = 'auth'),
  'schema', (SELECT json_build_array(pg_get_userbyid(nspowner), nspacl::text)
               FROM pg_namespace WHERE nspname = 'auth'),
  'relations', (SELECT json_agg(json_build_array(relname, pg_get_userbyid(relowner),
                                                 relacl::text) ORDER BY relname)
                  FROM pg_class WHERE relnamespace = 'auth'::regnamespace),
  'functions', (SELECT json_agg(json_build_array(p.oid::regprocedure::text,
                                                 pg_get_userbyid(p.proowner), p.proacl::text,
                                                 md5(p.prosrc)) ORDER BY p.oid::regprocedure::text)
                  FROM pg_proc p WHERE p.pronamespace = 'auth'::regnamespace))
"""


def auth_shape(project: SupabaseProject) -> dict:
    """Everything about schema auth that Supabase owns: columns, owner, grants, RLS, indexes."""
    engine = create_engine(project.superuser_url)
    with engine.connect() as connection:
        shape = connection.scalar(text(AUTH_SHAPE))
    engine.dispose()
    return shape
