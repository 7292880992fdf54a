"""Writing audit rows: every change calls write_audit inside the change's own transaction."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from db.models import AuditLog
from db.session import actor_of


class Action(StrEnum):
    """The audit log's stable verbs (they fit the spec's varchar(50))."""

    KEY_ADDED = "key_added"
    KEY_IMPORTED = "key_imported"
    KEY_RENAMED = "key_renamed"
    KEY_ACTIVATED = "key_activated"
    KEY_DEACTIVATED = "key_deactivated"
    KEY_PRIORITY_CHANGED = "key_priority_changed"
    KEY_GROUP_CHANGED = "key_group_changed"
    KEY_UPDATED = "key_updated"  # several fields of one key in one save (bulk edit)
    KEY_ARCHIVED = "key_archived"
    KEY_UNARCHIVED = "key_unarchived"
    KEY_DELETED = "key_deleted"
    KEY_CHECKED = "key_checked"
    KEY_AUTO_DISABLED = "key_auto_disabled"
    KEY_COOLDOWN = "key_cooldown"
    MODEL_COOLDOWN = "model_cooldown"  # one project x model (a 429 naming it, or limit: 0)
    MASTER_KEY_ROTATED = "master_key_rotated"
    MASTER_KEY_CHECK_RESTORED = "master_key_check_restored"
    USER_CREATED = "user_created"
    ADMIN_GRANTED = "admin_granted"
    ADMIN_REVOKED = "admin_revoked"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an audit verb, not a secret
    SIGN_IN_FAILED = "sign_in_failed"  # the first failure of an account and client per window
    SIGN_IN_THROTTLED = "sign_in_throttled"  # the first refused attempt of one, per window
    ACCOUNT_LOCKED = "account_locked"  # retired: sign-in is throttled now, never locked
    SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
    SETUP_CODE_ISSUED = "setup_code_issued"  # printed to the server console, no admin yet
    SETUP_CODE_FAILED = "setup_code_failed"  # a wrong, expired or used code was entered
    QUOTA_SET = "quota_set"  # an admin set the rpm/tpm/rpd limits of a group × model
    QUOTA_CLEARED = "quota_cleared"
    MODEL_MARK_CLEARED = "model_mark_cleared"  # an admin lifted a no-quota mark or cooldown
    ACCESS_TOKEN_CREATED = "access_token_created"  # noqa: S105 - an audit verb
    ACCESS_TOKEN_REVOKED = "access_token_revoked"  # noqa: S105 - an audit verb


# Verbs that older rows carry but nothing writes any more (still listed, to filter by).
RETIRED_ACTIONS = frozenset({Action.ACCOUNT_LOCKED})


def audit_row(session: Session, *, action: str, key_id: uuid.UUID | None = None,
              details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The columns of one audit row for the session's actor (who, from where, what)."""
    if len(action) > 50:
        raise ValueError(f"audit action {action!r} is longer than 50 characters")
    actor = actor_of(session)
    return {"key_id": key_id, "action": str(action), "user_id": actor.user_id,
            "details": {"source": actor.source, "actor_email": actor.email, **(details or {})}}


def write_audit(session: Session, *, action: str, key_id: uuid.UUID | None = None,
                details: dict[str, Any] | None = None) -> AuditLog:
    """Add one audit row for the session's actor; flushed so a failure aborts the change."""
    row = AuditLog(**audit_row(session, action=action, key_id=key_id, details=details))
    session.add(row)
    session.flush()
    return row
