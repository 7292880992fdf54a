"""Health checks: ask Gemini whether a key works, and for stored keys act on the answer.

check_key is the HTTP call (GET /v1beta/models with the key in a header). The Keys page's
"Check" action and the CLI's `check-keys` call check_keys (each key in its own transaction).
A check is not usage: it leaves the daily stats and the key's failure counters alone, but
what it finds is acted on like a call's error would be (an invalid or blocked key is
deactivated, a 429 starts a cooldown), each audited.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db.models import ApiKey, project_of
from db.session import Actor, session_scope
from lib.audit.log import Action, write_audit
from lib.crypto.sealed import KeyDecryptionError, MasterKey, MasterKeyMismatch
from lib.keys.reads import resolve_key, reveal_key
from lib.keys.writes import apply_cooldown, auto_disable
from lib.pool.fail_closed import row_fault
from lib.pool.gemini_errors import ErrorKind, GeminiError, classify_error, classify_exception
from lib.pool.model_cooldowns import cool_model
from lib.pool.policy import DEFAULT_POLICY, FailurePolicy, error_details, judge
from lib.redact import redact
from lib.settings import DEFAULT_GEMINI_BASE_URL, http_base_url

_MAX_BODY_BYTES = 1 << 20

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class HealthResult:
    """What Gemini said about one key (message redacted)."""

    status: ErrorKind
    http_status: int | None
    message: str
    latency_ms: float
    error: GeminiError | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib copies every header, x-goog-api-key included, onto a redirect to ANY host.
    # Google's API does not redirect, so treat a 3xx as an (unknown) error instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
# Header values are sent verbatim; anything else would make http.client raise an
# exception whose text contains the key.
_HEADER_SAFE_KEY = re.compile(r"[\x21-\x7e]+")


def check_key(
    api_key: str, *, base_url: str = DEFAULT_GEMINI_BASE_URL, timeout: float = 10.0
) -> HealthResult:
    """Cheap health check: GET /v1beta/models?pageSize=1 with the key in x-goog-api-key."""
    url = http_base_url(base_url) + "/v1beta/models?pageSize=1"
    if not _HEADER_SAFE_KEY.fullmatch(api_key):
        err = GeminiError(
            kind="invalid",
            reason="MALFORMED_KEY",
            message="API key is empty or contains whitespace/non-ASCII characters",
            disables_key=True,
            counts_as_key_failure=True,
        )
        return HealthResult(err.kind, None, err.message, 0.0, err)

    # S310: http_base_url above allows http(s) only.
    request = urllib.request.Request(  # noqa: S310
        url, headers={"x-goog-api-key": api_key}, method="GET"
    )
    started = time.perf_counter()
    try:
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                response.read(_MAX_BODY_BYTES)
                status, body = response.status, None
        except urllib.error.HTTPError as exc:
            with exc:
                status, body = exc.code, exc.read(_MAX_BODY_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        err = classify_exception(exc)
        latency_ms = (time.perf_counter() - started) * 1000
        return HealthResult(err.kind, None, redact(err.message), latency_ms, err)
    latency_ms = (time.perf_counter() - started) * 1000

    err = classify_error(status, body)
    if err.kind == "ok":
        return HealthResult("ok", status, "OK", latency_ms, None)
    message = redact(err.message or f"HTTP {status}")
    return HealthResult(err.kind, status, message, latency_ms, err)



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


def check_stored_key(session: Session, master: MasterKey, key: ApiKey | uuid.UUID | str, *,
                     base_url: str, timeout: float = DEFAULT_TIMEOUT,
                     policy: FailurePolicy | None = None) -> KeyCheckResult:
    """Check one key (an ApiKey, its id or its name) and write a KEY_CHECKED audit row.

    An invalid / denied key is deactivated and a rate-limited one cooled down, with their
    own audit rows, all in the caller's transaction. The HTTP call happens while that
    transaction is open (at most `timeout` seconds); no row is locked meanwhile.
    """
    policy = policy or DEFAULT_POLICY
    if not isinstance(key, ApiKey):
        key = resolve_key(session, key)
    key_id, name = key.id, key.name
    try:
        api_key = reveal_key(master, key)
    except (KeyDecryptionError, MasterKeyMismatch) as error:
        # Only a row proven at fault is disabled; a wrong master key raises (stops the batch).
        fault = row_fault(session, master, error)
        changed = auto_disable(session, key_id, reason="decryption failed",
                               trigger="health_check", note=fault)
        return _audited(session, KeyCheckResult(
            key_id, name, "decryption_failed", None, fault, 0.0,
            "deactivated" if changed else None))

    health = check_key(api_key, base_url=base_url, timeout=timeout)
    del api_key
    action = None
    if health.error is not None:
        verdict = judge("failure", health.error, policy=policy, now=datetime.now(UTC))
        details = error_details(verdict.error)
        if verdict.disable_reason and auto_disable(
                session, key_id, reason=verdict.disable_reason, error=details,
                trigger="health_check"):
            action = "deactivated"
        err = health.error
        if err.kind == "rate_limited" and err.model and (verdict.cooldown_until
                                                         or err.no_quota):
            if cool_model(session, key_id=key_id, project=project_of(key_id, key.group_label),
                          model=err.model, until=verdict.cooldown_until,
                          no_quota=err.no_quota, scope=err.quota_scope or "minute",
                          error=details, trigger="health_check"):
                action = (f"{err.model}: no quota for this project" if err.no_quota else
                          f"{err.model} cooling down until "
                          f"{verdict.cooldown_until:%Y-%m-%d %H:%M:%S} UTC for this project")
        elif verdict.cooldown_until:
            cooled = apply_cooldown(session, key_id, until=verdict.cooldown_until,
                                    group_label=key.group_label,
                                    whole_group=verdict.cooldown_group,
                                    scope=health.error.quota_scope or "minute",
                                    error=details, trigger="health_check")
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



def check_keys(key_ids: list[uuid.UUID], *, master: MasterKey, actor: Actor,
               engine: Engine, base_url: str,
               timeout: float = DEFAULT_TIMEOUT, workers: int = 4,
               policy: FailurePolicy | None = None) -> list[KeyCheckResult]:
    """Check several keys concurrently, each in its own transaction; results in input order."""

    def one(key_id: uuid.UUID) -> KeyCheckResult:
        with session_scope(actor, engine=engine) as session:
            return check_stored_key(session, master, key_id, base_url=base_url,
                                    timeout=timeout, policy=policy)

    if len(key_ids) <= 1 or workers <= 1:
        return [one(key_id) for key_id in key_ids]
    with ThreadPoolExecutor(max_workers=min(workers, len(key_ids))) as executor:
        return list(executor.map(one, key_ids))
