"""What state a stored key is in: the one set of predicates and the one status vocabulary.

    deleted      tombstoned (ciphertext wiped); kept for its audit history
    archived     hidden from the default list, never picked by the pool
    disabled     switched off automatically (disabled_reason says why)
    off          switched off by an admin
    cooling down active, but resting after a 429 until cooldown_until
    ready        active and usable now: what the key pool may hand out

Each predicate exists once, as SQL text for hand-written queries (any table alias) and as a
SQLAlchemy expression for ORM queries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, text

KeyStatus = Literal["deleted", "archived", "disabled", "off", "cooling down", "ready"]
TABLE = "gemini_api_keys"


@dataclass(frozen=True)
class Predicate:
    """A condition on gemini_api_keys; `{k}` stands for the alias prefix, `{now}` for the
    SQL that gives the current naive-UTC time."""

    template: str

    def sql(self, alias: str | None = "k", *, now: str = ":now") -> str:
        """The condition as SQL text, for the table under `alias` (None: unqualified)."""
        return "(" + self.template.format(k=f"{alias}." if alias else "", now=now) + ")"

    def expr(self) -> ColumnElement[bool]:
        """The condition for ORM queries on ApiKey (the unaliased table; needs no `now`)."""
        if "{now}" in self.template:
            raise ValueError("this predicate needs a time; use sql() with a bound :now")
        return text(self.sql(TABLE))  # type: ignore[return-value]


NOT_DELETED = Predicate("{k}deleted_at IS NULL")
# Neither archived nor deleted: the keys that are in service (active or not).
IN_SERVICE = Predicate("{k}archived_at IS NULL AND {k}deleted_at IS NULL")
# In service and switched on (the pool's candidates, cooling or not).
ENABLED = Predicate("{k}is_active IS TRUE AND {k}archived_at IS NULL AND {k}deleted_at IS NULL")
COOLING = Predicate("{k}cooldown_until > {now}")
# What the key pool may hand out at `now`.
USABLE = Predicate("{k}is_active IS TRUE AND {k}archived_at IS NULL AND {k}deleted_at IS NULL"
                   " AND ({k}cooldown_until IS NULL OR {k}cooldown_until <= {now})")
ARCHIVED = Predicate("{k}archived_at IS NOT NULL AND {k}deleted_at IS NULL")
RETIRED = Predicate("{k}archived_at IS NOT NULL OR {k}deleted_at IS NOT NULL")


def key_status(*, deleted: bool, archived: bool, is_active: bool | None,
               disabled_reason: str | None, cooldown_until: dt.datetime | None,
               now: dt.datetime) -> KeyStatus:
    """The status of one key at `now` (naive UTC), in the vocabulary above."""
    if deleted:
        return "deleted"
    if archived:
        return "archived"
    if not is_active:
        return "disabled" if disabled_reason else "off"
    if cooldown_until is not None and cooldown_until > now:
        return "cooling down"
    return "ready"


def status_label(status: KeyStatus, disabled_reason: str | None = None) -> str:
    """The status for a table cell: a disabled key says why ("disabled: invalid (400 …)")."""
    return f"disabled: {disabled_reason}" if status == "disabled" and disabled_reason else status
