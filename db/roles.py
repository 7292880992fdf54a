"""The database roles the product uses, in one place.

- `anon`, `authenticated`, `service_role`: Supabase's API roles (NOLOGIN). Every transaction
  of the app, the CLI and the key pool runs as one of them (db.session.role_prelude).
- APP_LOGIN (`gemini_app`): the login the app, CLI and pool connect as. Like Supabase's
  `authenticator` it is NOINHERIT and a member of the three API roles only: by itself it may
  do nothing (no table, no privilege, no BYPASSRLS), and the strongest thing it can become
  is `service_role`. RESET ROLE leads back to this powerless login.
- The owner: whoever runs the migrations (DATABASE_OWNER_URL, else DATABASE_URL; the
  embedded server's own superuser). It owns the tables and the SECURITY DEFINER functions.
"""

from __future__ import annotations

API_ROLES = ("anon", "authenticated", "service_role")
APP_LOGIN = "gemini_app"
_ATTRIBUTES = "NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


def app_login_sql(*, login: bool) -> str:
    """SQL that creates the API roles and APP_LOGIN where missing and makes APP_LOGIN a member
    of the API roles. Roles are cluster-wide, so another database may create them at the same
    moment: a duplicate is not an error.

    login=False (migrations on a server we do not run): a new APP_LOGIN is NOLOGIN until an
    operator gives it LOGIN and a password; an existing one is left as it is, and a migrating
    role that may not create roles gets a warning instead of a failed migration.
    login=True (the embedded server, as its superuser): APP_LOGIN may log in (over the
    server's own socket) and its attributes are set to the least-privilege ones.
    """
    create = f"CREATE ROLE {APP_LOGIN} {'LOGIN' if login else 'NOLOGIN'} {_ATTRIBUTES}"
    roles = ", ".join(f"'{r}'" for r in API_ROLES)
    sql = f"""
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY[{roles}] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
      END;
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_LOGIN}') THEN
    BEGIN
      {create};
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  GRANT {', '.join(API_ROLES)} TO {APP_LOGIN};
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'could not set up the login role {APP_LOGIN} (%): create it as the README '
                'says, or use a login of your own', SQLERRM;
END $$;
"""
    if login:
        sql += f"ALTER ROLE {APP_LOGIN} LOGIN {_ATTRIBUTES};\n"
    return sql
