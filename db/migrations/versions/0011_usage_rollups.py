"""Exact rollups of the usage tables, so Analytics stays flat at thousands of keys × a year.

Revision ID: 0011
Revises: 0009

The Analytics page sums a year of stats rows (5,000 keys × 365 days × 3 models is 5.5
million rows of the per-model table); summing them on every view took seconds. Four rollups,
each kept by statement-level triggers (with transition tables) on its source table, in the
same transaction as the counts they sum, so they are never stale and never approximate:

- gemini_usage_day_rollup (date, stripe)                from gemini_key_usage_stats
- gemini_usage_key_month_rollup (key_id, month)         from gemini_key_usage_stats
- gemini_model_usage_day_rollup (date, model, stripe)   from gemini_key_model_usage_stats
- gemini_model_usage_key_month_rollup (key_id, month, model)  from the per-model table

No hot row: a day's total is striped over STRIPES rows by the key (a byte of its id), so
pool processes recording on different keys rarely wait for one another; the per-key rows are
locked only by records on that key, which already hold that key's stats row. Readers add the
stripes up (at most 366 × STRIPES rows for a year).

Latency is kept as its exact parts: lat_num = sum(avg_response_time × request_count) as
numeric (increments and decrements cancel exactly), lat_den = the requests of rows that
carry a latency. Rows of a key deleted for good (ON DELETE CASCADE) are subtracted; a
TRUNCATE of a source table empties its rollups. Under the same admin-only RLS and the
grants of 0005's convention as the tables they sum: whoever may write the stats writes the
rollups through the triggers (SECURITY INVOKER), nobody else.
"""

from alembic import op

from db.roles import API_ROLES

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None

STRIPES = 32
EVERYONE = ", ".join(("PUBLIC", *API_ROLES))
IS_ADMIN = ("EXISTS (SELECT 1 FROM user_profiles "
            "WHERE user_id = auth.uid() AND is_admin = true)")
COUNTS = ("request_count", "success_count", "failure_count", "rate_limit_count")
TOKENS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens", "total_tokens")
STRIPE = f"(coalesce(get_byte(uuid_send(key_id), 15), 0) % {STRIPES})"

SOURCES = {
    # source table: (columns summed, day rollup, key-month rollup, extra key column)
    "gemini_key_usage_stats": (COUNTS, "gemini_usage_day_rollup",
                               "gemini_usage_key_month_rollup", None),
    "gemini_key_model_usage_stats": ((*COUNTS, *TOKENS), "gemini_model_usage_day_rollup",
                                     "gemini_model_usage_key_month_rollup", "model"),
}


def _columns(summed: tuple[str, ...]) -> str:
    return ",\n  ".join([*(f"{c} BIGINT NOT NULL DEFAULT 0" for c in summed),
                         "lat_num NUMERIC NOT NULL DEFAULT 0",
                         "lat_den BIGINT NOT NULL DEFAULT 0"])


def _parts(summed: tuple[str, ...], sign: str) -> str:
    """Per source row: its summed columns and latency parts, times sign (1 or -1)."""
    cols = [f"{sign} * coalesce({c}, 0) AS {c}" for c in summed]
    cols += [f"{sign} * coalesce(avg_response_time::numeric * request_count, 0) AS lat_num",
             f"{sign} * CASE WHEN avg_response_time IS NULL THEN 0 "
             f"ELSE coalesce(request_count, 0) END AS lat_den"]
    return ", ".join(cols)


def _upsert(target: str, keys: tuple[str, ...], select_keys: tuple[str, ...],
            summed: tuple[str, ...], source: str, where: str = "TRUE") -> str:
    all_cols = (*summed, "lat_num", "lat_den")
    sums = ", ".join(f"sum({c})" for c in all_cols)
    sets = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in all_cols)
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    return (f"INSERT INTO {target} AS r ({', '.join(keys)}, {', '.join(all_cols)})\n"
            f"  SELECT {', '.join(select_keys)}, {sums} FROM {source} WHERE {where}"
            f" GROUP BY {group} ORDER BY {group}\n"
            f"  ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")


def _statement(table: str, delta: str) -> str:
    summed, day, month, extra = SOURCES[table]
    e = (extra,) if extra else ()
    day_keys = ("date", *e, "stripe")
    return (f"WITH delta AS MATERIALIZED ({delta}),\n"
            f"d AS ({_upsert(day, day_keys, day_keys, summed, 'delta')})\n"
            + _upsert(month, ("key_id", "month", *e),
                      ("key_id", "date_trunc('month', date)::date", *e), summed, "delta",
                      "key_id IS NOT NULL") + ";")


def _function(table: str) -> str:
    summed, day, month, extra = SOURCES[table]
    keys = f"key_id, date, {STRIPE} AS stripe{', ' + extra if extra else ''}"
    new = f"SELECT {keys}, {_parts(summed, '1')} FROM new_rows"
    old = f"SELECT {keys}, {_parts(summed, '-1')} FROM old_rows"
    return f"""
CREATE FUNCTION {table}_rollup() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE {day}, {month};
  ELSIF TG_OP = 'INSERT' THEN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
      {_statement(table, new)}
    END IF;
  ELSIF TG_OP = 'DELETE' THEN
    IF EXISTS (SELECT 1 FROM old_rows) THEN
      {_statement(table, old)}
    END IF;
  ELSIF EXISTS (SELECT 1 FROM new_rows) THEN
    {_statement(table, new + " UNION ALL " + old)}
  END IF;
  RETURN NULL;
END $fn$;
CREATE TRIGGER {table}_rollup_ins AFTER INSERT ON {table}
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup();
CREATE TRIGGER {table}_rollup_upd AFTER UPDATE ON {table}
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup();
CREATE TRIGGER {table}_rollup_del AFTER DELETE ON {table}
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup();
CREATE TRIGGER {table}_rollup_trunc AFTER TRUNCATE ON {table}
  FOR EACH STATEMENT EXECUTE FUNCTION {table}_rollup();
REVOKE ALL ON FUNCTION {table}_rollup() FROM {EVERYONE};
"""


def _table(name: str, keys: str, pk: str, summed: tuple[str, ...], label: str) -> str:
    return f"""
CREATE TABLE {name} (
  {keys},
  {_columns(summed)},
  PRIMARY KEY ({pk})
);
ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {name} FORCE ROW LEVEL SECURITY;
CREATE POLICY "Admin only access to {label}" ON {name}
  FOR ALL USING ({IS_ADMIN}) WITH CHECK ({IS_ADMIN});
CREATE POLICY "Service role access to {label}" ON {name}
  FOR ALL TO service_role USING (true) WITH CHECK (true);
REVOKE ALL ON {name} FROM {EVERYONE};
GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO authenticated, service_role;
"""


def upgrade() -> None:
    model = (*COUNTS, *TOKENS)
    op.execute(
        _table("gemini_usage_day_rollup", "date DATE NOT NULL, stripe SMALLINT NOT NULL",
               "date, stripe", COUNTS, "the daily usage rollup")
        + _table("gemini_usage_key_month_rollup", "key_id UUID NOT NULL, month DATE NOT NULL",
                 "key_id, month", COUNTS, "the monthly usage rollup per key")
        + _table("gemini_model_usage_day_rollup",
                 "date DATE NOT NULL, model VARCHAR(128) NOT NULL, stripe SMALLINT NOT NULL",
                 "date, model, stripe", model, "the daily per-model usage rollup")
        + _table("gemini_model_usage_key_month_rollup",
                 "key_id UUID NOT NULL, month DATE NOT NULL, model VARCHAR(128) NOT NULL",
                 "key_id, month, model", model, "the monthly per-model usage rollup per key")
        + "".join(_function(t) for t in SOURCES))
    for table, (summed, _, _, extra) in SOURCES.items():  # what is there already
        keys = f"key_id, date, {STRIPE} AS stripe{', ' + extra if extra else ''}"
        op.execute(_statement(table, f"SELECT {keys}, {_parts(summed, '1')} FROM {table}"))


def downgrade() -> None:
    for table, (_, day, month, _) in SOURCES.items():
        op.execute(f"""
DROP TRIGGER IF EXISTS {table}_rollup_ins ON {table};
DROP TRIGGER IF EXISTS {table}_rollup_upd ON {table};
DROP TRIGGER IF EXISTS {table}_rollup_del ON {table};
DROP TRIGGER IF EXISTS {table}_rollup_trunc ON {table};
DROP FUNCTION IF EXISTS {table}_rollup();
DROP TABLE IF EXISTS {day}, {month};""")
