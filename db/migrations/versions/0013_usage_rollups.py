"""Exact rollups of the usage tables, so Analytics stays flat at thousands of keys × a year.

Revision ID: 0013
Revises: 0012

The Analytics page sums a year of stats rows (5,000 keys × 365 days × 3 models is 5.5
million rows of the per-model table); summing them on every view took seconds. Five tables,
kept by statement-level triggers (with transition tables) on the two stats tables, in the
same transaction as the counts they sum, so they are never stale and never approximate:

- gemini_usage_day_rollup (date, stripe)              sums of gemini_key_usage_stats per day
- gemini_model_usage_day_rollup (date, model, stripe) the same of the per-model table
- gemini_usage_key_running (key_id, date)             per key: the sums of all its spec rows
                                                      up to that date (running totals)
- gemini_model_usage_key_running (key_id, model, date)    the same per key and model
- gemini_model_usage_key_running_all (key_id, date)       per key over every model (tokens)

A key's sums over any range are two index probes: the running row at or before the end minus
the one before the start. Every date a stats row has gets a running row; rows are never
deleted (a deleted stats row leaves its delta subtracted), TRUNCATE empties them.

No hot row: a day's total is striped over STRIPES rows by the key (a byte of its id), so pool
processes recording on different keys rarely wait for one another; the running rows are
locked only by records on that key, which already hold that key's stats row.

Latency is kept as its exact parts: lat_num = sum(avg_response_time × request_count) as
numeric (increments and decrements cancel exactly), lat_den = the requests of rows that
carry a latency. The pool's record (one row updated in place) takes a short path: its delta
goes to the day rollup and to the key's running rows from that day on. Under the same
admin-only RLS and the grants of 0005's convention as the tables they sum: whoever may write
the stats writes these through the triggers (SECURITY INVOKER), nobody else.
"""

from alembic import op

from db.roles import API_ROLES

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STRIPES = 32
EVERYONE = ", ".join(("PUBLIC", *API_ROLES))
IS_ADMIN = ("EXISTS (SELECT 1 FROM user_profiles "
            "WHERE user_id = auth.uid() AND is_admin = true)")
COUNTS = ("request_count", "success_count", "failure_count", "rate_limit_count")
TOKENS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "cached_tokens", "total_tokens")
STRIPE = f"(coalesce(get_byte(uuid_send(key_id), 15), 0) % {STRIPES})"

# Per source table: (columns summed, its day rollup, its per-key running totals as
# (table, extra key column or None)).
SOURCES = {
    "gemini_key_usage_stats": (COUNTS, "gemini_usage_day_rollup",
                               (("gemini_usage_key_running", None),), None),
    "gemini_key_model_usage_stats": ((*COUNTS, *TOKENS), "gemini_model_usage_day_rollup",
                                     (("gemini_model_usage_key_running", "model"),
                                      ("gemini_model_usage_key_running_all", None)), "model"),
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


def _all(summed: tuple[str, ...]) -> tuple[str, ...]:
    return (*summed, "lat_num", "lat_den")


def _day_upsert(target: str, keys: tuple[str, ...], summed: tuple[str, ...]) -> str:
    cols = _all(summed)
    group = ", ".join(str(i + 1) for i in range(len(keys)))
    return (f"INSERT INTO {target} AS r ({', '.join(keys)}, {', '.join(cols)})\n"
            f"  SELECT {', '.join(keys)}, {', '.join(f'sum({c})' for c in cols)} FROM delta"
            f" GROUP BY {group} ORDER BY {group}\n"
            f"  ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{c} = r.{c} + excluded.{c}" for c in cols))


def _running(target: str, extra: str | None, summed: tuple[str, ...], n: int) -> str:
    """CTEs that keep `target` (per key[, extra] and date: the sums of every row up to that
    date) exact under the statement's deltas: rows at or after a delta's date grow by it; a
    date without a row gets one, the latest earlier row plus the deltas up to it."""
    cols = _all(summed)
    g = ("key_id", extra) if extra else ("key_id",)
    same = " AND ".join(f"{{a}}.{c} = {{b}}.{c}" for c in g)
    on = lambda a, b: same.format(a=a, b=b)  # noqa: E731
    sums = ", ".join(f"sum({c}) AS {c}" for c in cols)
    part = ", ".join(g)
    return f"""cd{n} AS MATERIALIZED (
  SELECT {part}, date, {", ".join(f"{c}, sum({c}) OVER w AS run_{c}" for c in cols)}
  FROM (SELECT {part}, date, {sums} FROM delta WHERE key_id IS NOT NULL
        GROUP BY {part}, date) x
  WINDOW w AS (PARTITION BY {part} ORDER BY date)),
up{n} AS (UPDATE {target} AS t SET {", ".join(f"{c} = t.{c} + a.{c}" for c in cols)}
  FROM (SELECT {", ".join(f"r.{c}" for c in g)}, r.date,
               {", ".join(f"sum(cd.{c}) AS {c}" for c in cols)}
        FROM {target} r JOIN cd{n} cd ON {on("cd", "r")} AND cd.date <= r.date
        GROUP BY {", ".join(f"r.{c}" for c in g)}, r.date) a
  WHERE {on("t", "a")} AND t.date = a.date),
new{n} AS (INSERT INTO {target} ({part}, date, {", ".join(cols)})
  SELECT {", ".join(f"cd.{c}" for c in g)}, cd.date,
         {", ".join(f"coalesce(p.{c}, 0) + cd.run_{c}" for c in cols)}
  FROM cd{n} cd LEFT JOIN LATERAL (SELECT * FROM {target} r WHERE {on("r", "cd")}
                                   AND r.date < cd.date ORDER BY r.date DESC LIMIT 1) p ON true
  WHERE NOT EXISTS (SELECT 1 FROM {target} r WHERE {on("r", "cd")} AND r.date = cd.date)
  ORDER BY {", ".join(f"cd.{c}" for c in g)}, cd.date)"""


def _statement(table: str, delta: str) -> str:
    summed, day, running, extra = SOURCES[table]
    day_keys = ("date", extra, "stripe") if extra else ("date", "stripe")
    ctes = [f"delta AS MATERIALIZED ({delta})",
            *(_running(t, x, summed, n) for n, (t, x) in enumerate(running))]
    return "WITH " + ",\n".join(ctes) + "\n" + _day_upsert(day, day_keys, summed) + ";"


def _fast_update(table: str) -> tuple[str, str]:
    """The pool's case, one row updated in place (same key, day and model): its delta
    added to the day rollup and to the running rows from its date on (which exist, since
    the row did). Returns (condition, statement)."""
    summed, day, running, extra = SOURCES[table]
    same = "n.key_id IS NOT DISTINCT FROM o.key_id AND n.date = o.date" + (
        f" AND n.{extra} = o.{extra}" if extra else "")
    condition = (f"(SELECT count(*) = 1 AND bool_and({same}) "
                 f"FROM new_rows n CROSS JOIN old_rows o)")
    cols = [f"coalesce(n.{c}, 0) - coalesce(o.{c}, 0) AS {c}" for c in summed]
    cols += ["coalesce(n.avg_response_time::numeric * n.request_count, 0)"
             " - coalesce(o.avg_response_time::numeric * o.request_count, 0) AS lat_num",
             "CASE WHEN n.avg_response_time IS NULL THEN 0 ELSE coalesce(n.request_count, 0)"
             " END - CASE WHEN o.avg_response_time IS NULL THEN 0"
             " ELSE coalesce(o.request_count, 0) END AS lat_den"]
    stripe = STRIPE.replace("key_id", "n.key_id")
    keys = f"n.key_id, n.date, {stripe} AS stripe" + (f", n.{extra}" if extra else "")
    ctes = [f"delta AS (SELECT {keys}, {', '.join(cols)} FROM new_rows n CROSS JOIN old_rows o)"]
    for i, (target, x) in enumerate(running):
        match = " AND t.model = d.model" if x else ""
        ctes.append(f"up{i} AS (UPDATE {target} AS t SET "
                    + ", ".join(f"{c} = t.{c} + d.{c}" for c in _all(summed))
                    + f" FROM delta d WHERE t.key_id = d.key_id{match} AND t.date >= d.date)")
    day_keys = ("date", extra, "stripe") if extra else ("date", "stripe")
    return condition, ("WITH " + ",\n".join(ctes) + "\n"
                       + _day_upsert(day, day_keys, summed) + ";")


def _function(table: str) -> str:
    summed, day, running, extra = SOURCES[table]
    fast_condition, fast = _fast_update(table)
    keys = f"key_id, date, {STRIPE} AS stripe{', ' + extra if extra else ''}"
    new = f"SELECT {keys}, {_parts(summed, '1')} FROM new_rows"
    old = f"SELECT {keys}, {_parts(summed, '-1')} FROM old_rows"
    return f"""
CREATE FUNCTION {table}_rollup() RETURNS trigger LANGUAGE plpgsql
SET search_path = public, pg_temp AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE {day}, {", ".join(t for t, _ in running)};
  ELSIF TG_OP = 'INSERT' THEN
    IF EXISTS (SELECT 1 FROM new_rows) THEN
      {_statement(table, new)}
    END IF;
  ELSIF TG_OP = 'DELETE' THEN
    IF EXISTS (SELECT 1 FROM old_rows) THEN
      {_statement(table, old)}
    END IF;
  ELSIF {fast_condition} THEN
    {fast}
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
        + _table("gemini_usage_key_running", "key_id UUID NOT NULL, date DATE NOT NULL",
                 "key_id, date", COUNTS, "the running usage totals per key")
        + _table("gemini_model_usage_day_rollup",
                 "date DATE NOT NULL, model VARCHAR(128) NOT NULL, stripe SMALLINT NOT NULL",
                 "date, model, stripe", model, "the daily per-model usage rollup")
        + _table("gemini_model_usage_key_running",
                 "key_id UUID NOT NULL, model VARCHAR(128) NOT NULL, date DATE NOT NULL",
                 "key_id, model, date", model, "the running per-model usage totals per key")
        + _table("gemini_model_usage_key_running_all",
                 "key_id UUID NOT NULL, date DATE NOT NULL", "key_id, date", model,
                 "the running usage totals per key over every model")
        + "".join(_function(t) for t in SOURCES))
    for table, (summed, _, _, extra) in SOURCES.items():  # what is there already
        keys = f"key_id, date, {STRIPE} AS stripe{', ' + extra if extra else ''}"
        op.execute(_statement(table, f"SELECT {keys}, {_parts(summed, '1')} FROM {table}"))


def downgrade() -> None:
    for table, (_, day, running, _) in SOURCES.items():
        op.execute(f"""
DROP TRIGGER IF EXISTS {table}_rollup_ins ON {table};
DROP TRIGGER IF EXISTS {table}_rollup_upd ON {table};
DROP TRIGGER IF EXISTS {table}_rollup_del ON {table};
DROP TRIGGER IF EXISTS {table}_rollup_trunc ON {table};
DROP FUNCTION IF EXISTS {table}_rollup();
DROP TABLE IF EXISTS {day}, {", ".join(t for t, _ in running)};""")
