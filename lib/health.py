"""Health checks of stored keys: decrypt, ask Gemini, audit, apply the pool's policy.

The Keys page's "Check" action calls check_stored_key inside ctx.session(); the CLI's
`check-keys` calls check_keys. A check is not usage: it leaves the daily stats and the
key's failure counters alone, but what it finds is acted on like a call's error would be
(an invalid or blocked key is deactivated, a 429 starts a cooldown), each audited.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models import ApiKey
from db.session import Actor, session_scope
from lib.audit import Action, write_audit
from lib.crypto import KeyDecryptionError, MasterKey
from lib.gemini import check_key
from lib.pool_policy import DEFAULT_POLICY, FailurePolicy, apply_cooldown, auto_disable, judge

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class KeyCheckResult:
    """status: ok / invalid / permission_denied / rate_limited / server_error /
    network_error / unknown / decryption_failed. action: what the check changed, if anything.
    message is redacted (never key material)."""

    key_id: uuid.UUID
    name: str
    status: str
    http_status: int | None
    message: str
    latency_ms: float
    action: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def default_base_url() -> str:
    """GEMINI_API_BASE_URL from the app's settings (env, then the default)."""
    from lib.bootstrap import load_settings

    return load_settings().get("GEMINI_API_BASE_URL")


def check_stored_key(session: Session, master: MasterKey, key: ApiKey | uuid.UUID | str, *,
                     base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                     policy: FailurePolicy | None = None) -> KeyCheckResult:
    """Check one key (an ApiKey, its id or its name) and write a KEY_CHECKED audit row.

    An invalid / denied key is deactivated and a rate-limited one cooled down, with their
    own audit rows, all in the caller's transaction. The HTTP call happens while that
    transaction is open (at most `timeout` seconds); no row is locked meanwhile.
    """
    from lib.keys import resolve_key, reveal_key

    policy = policy or DEFAULT_POLICY
    if not isinstance(key, ApiKey):
        key = resolve_key(session, key)
    key_id, name = key.id, key.name
    try:
        api_key = reveal_key(master, key)
    except KeyDecryptionError as error:
        changed = auto_disable(session, key_id, reason="decryption failed",
                               trigger="health_check", note=error.reason)
        return _audited(session, KeyCheckResult(
            key_id, name, "decryption_failed", None, error.reason, 0.0,
            "deactivated" if changed else None))

    health = check_key(api_key, base_url=base_url or default_base_url(), timeout=timeout)
    del api_key
    action = None
    if health.error is not None:
        verdict = judge("failure", health.error, policy=policy, now=datetime.now(UTC))
        if verdict.disable_reason and auto_disable(
                session, key_id, reason=verdict.disable_reason, error=verdict.error,
                trigger="health_check"):
            action = "deactivated"
        if verdict.cooldown_until:
            cooled = apply_cooldown(session, key_id, until=verdict.cooldown_until,
                                    group_label=key.group_label,
                                    whole_group=verdict.cooldown_group,
                                    error=verdict.error, trigger="health_check")
            if cooled:
                action = (f"cooling down until {verdict.cooldown_until:%Y-%m-%d %H:%M:%S} UTC"
                          + (f" ({len(cooled)} keys)" if len(cooled) > 1 else ""))
    return _audited(session, KeyCheckResult(
        key_id, name, health.status, health.http_status, health.message,
        round(health.latency_ms, 1), action))


def _audited(session: Session, result: KeyCheckResult) -> KeyCheckResult:
    write_audit(session, action=Action.KEY_CHECKED, key_id=result.key_id, details={
        "name": result.name, "status": result.status, "http_status": result.http_status,
        "message": result.message, "latency_ms": result.latency_ms, "action": result.action,
    })
    session.expire_all()  # the policy changed rows behind the ORM's back
    return result


def checkable_key_ids(session: Session) -> list[uuid.UUID]:
    """Every key `check-keys --all` checks: not deleted, not archived (active or not)."""
    return list(session.scalars(
        select(ApiKey.id).where(ApiKey.deleted_at.is_(None), ApiKey.archived_at.is_(None))
        .order_by(ApiKey.priority.desc(), ApiKey.name)))


def check_keys(key_ids: list[uuid.UUID], *, master: MasterKey, actor: Actor,
               engine: Engine | None = None, base_url: str | None = None,
               timeout: float = DEFAULT_TIMEOUT, workers: int = 4,
               policy: FailurePolicy | None = None) -> list[KeyCheckResult]:
    """Check several keys concurrently, each in its own transaction; results in input order."""
    base_url = base_url or default_base_url()

    def one(key_id: uuid.UUID) -> KeyCheckResult:
        with session_scope(actor, engine=engine) as session:
            return check_stored_key(session, master, key_id, base_url=base_url,
                                    timeout=timeout, policy=policy)

    if len(key_ids) <= 1 or workers <= 1:
        return [one(key_id) for key_id in key_ids]
    with ThreadPoolExecutor(max_workers=min(workers, len(key_ids))) as executor:
        return list(executor.map(one, key_ids))
