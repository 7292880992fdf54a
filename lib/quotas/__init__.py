"""Budgets per Google Cloud project × model (issue 16): rules (what an admin may set), reads
(the limits, today's use against them, the pool's no-quota marks and per-model cooldowns),
writes (set or clear a limit, clear a mark; each with its audit row).

Gemini's quotas belong to a project, and a key's project is its group
(db.models.PROJECT_SQL: the group, or 'key:<id>' for a key without one); limits can only be
set on named groups. The pool (lib/pool) counts and enforces them; this package is what admins
see and change.
"""
