"""Every admin change to a budget, each with its audit row in the caller's transaction:
set a limit, clear it, and clear a per-model mark the pool set (no quota, cooldown)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.audit.log import Action, write_audit
from lib.errors import InvalidInput, NotFound, refuse_nul
from lib.quotas.reads import QuotaLimit, find_quota, group_has_keys
from lib.quotas.rules import Limits, normalise_model, validate_group_name, validate_limits


@dataclass(frozen=True)
class QuotaChange:
    """What set_quota / clear_quota did: before and after (None: no limit row)."""

    group_label: str
    model: str
    before: Limits | None
    after: Limits | None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def message(self) -> str:
        where = f"{self.group_label} × {self.model}"
        if not self.changed:
            return (f"Quota of {where} unchanged: " + (self.after.describe() if self.after
                                                        else "no limit was set") + ".")
        if self.after is None:
            return f"Cleared the quota of {where} (was {self.before.describe()})."
        was = f" (was {self.before.describe()})" if self.before else ""
        return f"Quota of {where} set: {self.after.describe()}{was}."


def _audit_limits(limits: Limits | None) -> dict[str, Any] | None:
    return None if limits is None else limits.as_dict()


def set_quota(session: Session, *, group_label: str, model: str, rpm: Any = None,
              tpm: Any = None, rpd: Any = None) -> QuotaChange:
    """Set the limits of a group × model; limits not given are removed (no limit).

    The group must be carried by a stored key. The row is locked, so two admins saving at
    once each write an audit row whose `before` is what they replaced.
    """
    group_label = validate_group_name(group_label)
    model = normalise_model(model)
    limits = validate_limits(rpm=rpm, tpm=tpm, rpd=rpd)
    if not group_has_keys(session, group_label):
        raise InvalidInput(f"No stored key has the group {group_label!r}: limits are set per "
                           "group (Google Cloud project); give its keys that group first.")
    existing = _lock_or_create(session, group_label, model, limits)
    before = existing.limits if existing else None
    if before == limits:
        return QuotaChange(group_label, model, before, limits)
    if existing is not None:
        session.execute(text(
            "UPDATE gemini_quota_limits SET rpm = :rpm, tpm = :tpm, rpd = :rpd,"
            " updated_at = now() WHERE group_label = :g AND model = :m"),
            {"g": group_label, "m": model, **limits.as_dict()})
    write_audit(session, action=Action.QUOTA_SET, details={
        "group_label": group_label, "model": model,
        "before": _audit_limits(before), "after": _audit_limits(limits)})
    return QuotaChange(group_label, model, before, limits)


def _lock_or_create(session: Session, group_label: str, model: str,
                    limits: Limits) -> QuotaLimit | None:
    """The existing row, locked; or None after inserting `limits` as a new row.

    A concurrent insert of the same row makes ours do nothing: then it is locked and
    returned, so the caller updates it (and audits what it replaced).
    """
    existing = find_quota(session, group_label, model, for_update=True)
    if existing is not None:
        return existing
    inserted = session.execute(text(
        "INSERT INTO gemini_quota_limits (group_label, model, rpm, tpm, rpd)"
        " VALUES (:g, :m, :rpm, :tpm, :rpd) ON CONFLICT (group_label, model) DO NOTHING"
        " RETURNING 1"), {"g": group_label, "m": model, **limits.as_dict()}).first()
    if inserted is not None:
        return None
    return find_quota(session, group_label, model, for_update=True)


def clear_quota(session: Session, *, group_label: str, model: str) -> QuotaChange:
    """Remove every limit of a group × model (the pool then counts but never holds back)."""
    group_label = validate_group_name(group_label)
    model = normalise_model(model)
    row = session.execute(text(
        "DELETE FROM gemini_quota_limits WHERE group_label = :g AND model = :m"
        " RETURNING rpm, tpm, rpd"), {"g": group_label, "m": model}).first()
    if row is None:
        raise NotFound(f"No quota is set for {group_label} × {model}.")
    before = Limits(row.rpm, row.tpm, row.rpd)
    write_audit(session, action=Action.QUOTA_CLEARED, details={
        "group_label": group_label, "model": model,
        "before": _audit_limits(before), "after": None})
    return QuotaChange(group_label, model, before, None)


def clear_model_mark(session: Session, *, project: str, model: str) -> str:
    """Lift the pool's per-model mark of a project (no quota, or a cooldown), so its keys may
    serve that model again; returns what was lifted, for a message."""
    # As stored by the pool (from Gemini's 429), not re-shaped: a mark must stay clearable.
    if not isinstance(project, str) or not project.strip():
        raise InvalidInput("Choose the project (group) whose mark to clear.")
    if not isinstance(model, str) or not model.strip():
        raise InvalidInput("Choose the model whose mark to clear.")
    refuse_nul(project, "project")
    refuse_nul(model, "model")
    # DELETE … RETURNING: admins may read and delete marks, not lock them (no UPDATE grant).
    mark = session.execute(text(
        "DELETE FROM gemini_model_cooldowns WHERE project = :p AND model = :m"
        " RETURNING no_quota, cooldown_until, reason"), {"p": project, "m": model}).first()
    if mark is None:
        raise NotFound(f"No mark for {project} × {model} (perhaps the pool lifted it).")
    before = {"no_quota": mark.no_quota,
              "cooldown_until": mark.cooldown_until.isoformat() if mark.cooldown_until
              else None, "reason": mark.reason}
    write_audit(session, action=Action.MODEL_MARK_CLEARED, details={
        "project": project, "model": model, "before": before, "after": None})
    what = "no-quota mark" if mark.no_quota else "cooldown"
    return f"Cleared the {what} of {project} × {model}."
