"""Optimistic concurrency for admin edits: each edit carries the values the admin SAW.

One rule for every edit of a stored row (a key, an admin right, a quota, a token), checked
in the saving transaction with the row locked:

- a field the edit does not change (wanted == seen) is not checked: edits of different
  fields by two admins merge;
- a field the edit changes is applied when the row still holds the seen value;
- when the row already holds the wanted value, there is nothing to do and no conflict (the
  pool switched a key off that the admin was switching off too);
- otherwise the field conflicts: the edit of that row is refused and reported as
  `Conflict` (target, field: seen → now, who changed it), never half-applied.

Fields the edit does not change but that moved underneath are reported as `notes`, so an
admin is told, for example, that the pool disabled the key they are editing.

The callers: lib/keys/writes.py (`expected=` on each write, `KeyEdit` for the grid), and
lib/users/accounts.py (`expected_admin=`). Plain Python: no database, no Streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lib.errors import InvalidInput


def shown(value: Any) -> str:
    """A field's value as a message shows it."""
    if value is None or value == "":
        return "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True)
class FieldChange:
    """One field of a row: what the admin saw, what the row holds now, what they wanted."""

    field: str
    seen: Any
    now: Any
    wanted: Any = None

    def describe(self) -> str:
        return f"{self.field}: {shown(self.seen)} → {shown(self.now)}"


@dataclass(frozen=True)
class Check:
    """The outcome of comparing one edit with its row: what to write, what conflicts, and
    what moved underneath in fields the edit leaves alone."""

    apply: dict[str, Any]
    conflicts: list[FieldChange]
    notes: list[FieldChange]


def check_edit(seen: Mapping[str, Any], current: Mapping[str, Any],
               wanted: Mapping[str, Any]) -> Check:
    """Compare an edit (the fields it sets, and the values seen for them) with the row.

    A field without a seen value is applied unchecked (callers that have no view, e.g. the
    CLI acting on what it is told).
    """
    apply: dict[str, Any] = {}
    conflicts: list[FieldChange] = []
    notes: list[FieldChange] = []
    for name, want in wanted.items():
        now = current[name]
        if name not in seen:
            if now != want:
                apply[name] = want
            continue
        was = seen[name]
        if want == was:
            if now != was:
                notes.append(FieldChange(name, was, now, want))
        elif now == was:
            apply[name] = want
        elif now != want:
            conflicts.append(FieldChange(name, was, now, want))
    return Check(apply, conflicts, notes)


@dataclass(frozen=True)
class Conflict:
    """A row someone else changed (or removed) since the admin saw it: not saved."""

    target: str  # the key's name, the user's email, … (shown as inert text)
    changes: Sequence[FieldChange] = ()
    by: str | None = None  # who changed it, from the audit log ("ada@…", "the key pool")
    gone: bool = False  # deleted (or otherwise no longer there)

    def describe(self) -> str:
        if self.gone:
            return f"{self.target}: it was deleted since you loaded the page"
        changes = ", ".join(c.describe() for c in self.changes)
        wanted = ", ".join(f"{c.field} {shown(c.wanted)}" for c in self.changes)
        by = f" by {self.by}" if self.by else ""
        return (f"{self.target}: changed{by} since you loaded the page ({changes}); "
                f"your {wanted} was not saved")


@dataclass(frozen=True)
class Note:
    """A field the edit left alone that moved since the admin saw it (saved anyway)."""

    target: str
    changes: Sequence[FieldChange] = ()
    by: str | None = None

    def describe(self) -> str:
        by = f" by {self.by}" if self.by else ""
        changes = ", ".join(c.describe() for c in self.changes)
        return f"{self.target}: meanwhile changed{by} ({changes}); left as it is now"


class EditConflict(InvalidInput):
    """An edit refused because its row changed since the admin saw it (nothing saved)."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        self.conflicts = list(conflicts)
        super().__init__("Not saved: " + "; ".join(c.describe() for c in self.conflicts)
                         + ". The page now shows the current values; check them and save "
                         "again if you still want the change.")


@dataclass(frozen=True)
class SaveReport:
    """What a save of many rows did: one line per saved row, the refused rows, the notes."""

    changed: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def message(self) -> str:
        if not self.changed and not self.conflicts:
            return "Nothing changed."
        parts = []
        if self.changed:
            parts.append(f"Saved {len(self.changed)} key(s): " + "; ".join(self.changed))
        if self.conflicts:
            parts.append(f"Not saved, {len(self.conflicts)} key(s) changed by someone else "
                         "since you loaded the page (the table now shows the current values): "
                         + "; ".join(c.describe() for c in self.conflicts))
        if self.notes:
            parts.append("Note: " + "; ".join(n.describe() for n in self.notes))
        return "\n\n".join(parts)
