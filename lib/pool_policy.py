"""The key pool's failure policy: what one call's outcome does to its key.

    outcome / error                          effect on the key
    success                                  consecutive_failures reset to 0
    429, per-minute quota (or no details)    cooldown for retryDelay, else default_minute_cooldown
    429, per-day quota                       cooldown until midnight Pacific, for the key AND
                                             every live key with the same group_label
    400 API_KEY_INVALID, 403, outcome        deactivated at once (disabled_reason set)
      "invalid"
    a key failure (401, plain "failure",     consecutive_failures + 1; at max_consecutive_failures
      an exception that is not HTTP/network) the key is deactivated
    500 / 503 / network error / other 4xx    counted in the stats only (Google's or the
                                             caller's trouble, not the key's)

Every automatic change writes one audit row (KEY_COOLDOWN / KEY_AUTO_DISABLED) whose details
carry the reason and the error (kind, HTTP status, Google's reason, redacted message); an
ordinary success or failure writes none. The functions that change keys take the caller's
session and flush, like every data function.
"""

from __future__ import annotations

import http.client
import math
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from lib.audit import Action, write_audit
from lib.gemini import GeminiError, classify_error, classify_exception, cooldown_until, redact

Outcome = Literal["success", "failure", "rate_limited", "invalid"]
OUTCOMES: frozenset[str] = frozenset({"success", "failure", "rate_limited", "invalid"})
MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class FailurePolicy:
    """How the pool reacts to failures. Pass one to KeyPool(policy=...) or check_stored_key.

    max_consecutive_failures: deactivate a key after this many key failures in a row (a
        success resets the run); None never deactivates for this reason.
    default_minute_cooldown: cooldown after a per-minute 429 without retryDelay, and after a
        429 without quota details.
    max_minute_cooldown: cap on Google's retryDelay, so a bogus value cannot park a key.
    cool_down_on_rate_limit: False keeps rate-limited keys in rotation (counted only).
    day_cooldown_whole_group: a per-day 429 also cools every key with the same group_label
        (same Google Cloud project, same daily quota).
    disable_invalid_keys: 400 API_KEY_INVALID / 403 / outcome "invalid" deactivate at once.
    count_unclassified_failures: a "failure" without an error, or an exception that is
        neither an HTTP error nor a network error, counts toward max_consecutive_failures.
    max_decryption_failures: in one acquire(), keys that fail to decrypt are deactivated
        and skipped; after this many, acquire raises KeyDecryptionError instead.
    """

    max_consecutive_failures: int | None = 5
    default_minute_cooldown: timedelta = timedelta(seconds=60)
    max_minute_cooldown: timedelta = timedelta(hours=1)
    cool_down_on_rate_limit: bool = True
    day_cooldown_whole_group: bool = True
    disable_invalid_keys: bool = True
    count_unclassified_failures: bool = True
    max_decryption_failures: int = 3

    def __post_init__(self) -> None:
        if self.max_consecutive_failures is not None and self.max_consecutive_failures < 1:
            raise ValueError("max_consecutive_failures must be >= 1 or None")
        if self.max_decryption_failures < 1:
            raise ValueError("max_decryption_failures must be >= 1")

    def describe(self) -> dict[str, Any]:
        """JSON-safe settings, for audit rows and `pool-status`."""
        return {k: (v.total_seconds() if isinstance(v, timedelta) else v)
                for k, v in asdict(self).items()}


DEFAULT_POLICY = FailurePolicy()


@dataclass(frozen=True)
class Verdict:
    """What record() does: which stats bucket, the key's counters, and any automatic change.

    outcome: the stats bucket (success / failure / rate_limited / invalid); invalid counts as
        a failure in the stats. consecutive: -1 reset, +1 count, 0 leave alone.
    """

    outcome: Outcome
    consecutive: int
    disable_reason: str | None = None
    cooldown_until: datetime | None = None  # aware UTC
    cooldown_group: bool = False
    error: GeminiError | None = None


def _clip(message: str) -> str:
    message = " ".join(redact(message).split())
    return message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"


def error_from_exception(exc: BaseException) -> GeminiError:
    """Classify an exception raised while calling Gemini, whatever the HTTP client.

    Knows urllib's HTTPError (code + body), requests/httpx errors carrying .response,
    google-genai's APIError (.code + .response_json), and .gemini_error on any exception.
    Network failures are network_error; anything else is kind "unknown", a key failure only
    if the policy counts unclassified failures (decided in judge()).
    """
    attached = getattr(exc, "gemini_error", None)
    if isinstance(attached, GeminiError):
        return attached
    status, body = _http_parts(exc)
    if status is not None:
        return classify_error(status, body)
    if isinstance(exc, (OSError, http.client.HTTPException)) or type(exc).__name__ in {
        "ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutException",
        "ConnectError", "ReadError", "RemoteProtocolError",
    }:
        return classify_exception(exc)
    return GeminiError(kind="unknown", message=_clip(f"{type(exc).__name__}: {exc}"))


def _http_parts(exc: BaseException) -> tuple[int | None, Any]:
    """(status, body) from the usual HTTP client exceptions; (None, None) otherwise."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):  # requests / httpx
        try:
            return status, response.content  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a streamed body may be gone; the status suffices
            return status, None
    for attr in ("code", "status_code", "status"):
        status = getattr(exc, attr, None)
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            break
    else:
        return None, None
    body = getattr(exc, "response_json", None) or getattr(exc, "details", None)
    if body is None and hasattr(exc, "read"):  # urllib.error.HTTPError
        try:
            body = exc.read()
        except Exception:  # noqa: BLE001 - already read or closed
            body = None
    return status, body


def to_gemini_error(error: Any) -> GeminiError | None:
    """record()'s error argument as a GeminiError: a GeminiError, an exception, an HTTP
    status, or a (status, body) pair; None stays None."""
    if error is None or isinstance(error, GeminiError):
        return error
    if isinstance(error, BaseException):
        return error_from_exception(error)
    if isinstance(error, int) and not isinstance(error, bool):
        return classify_error(error, None)
    if isinstance(error, tuple) and len(error) == 2:
        return classify_error(error[0], error[1])
    raise TypeError("error must be a GeminiError, an exception, an HTTP status or a "
                    f"(status, body) pair, not {type(error).__name__}")


def judge(outcome: str, error: GeminiError | None, *, policy: FailurePolicy,
          now: datetime) -> Verdict:
    """Decide the stats bucket and the key's fate for one call. `now` is aware UTC."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, got {outcome!r}")
    if error is not None and error.kind == "ok":
        error = None
    if outcome == "success":
        if error is not None:
            raise ValueError(f"outcome 'success' contradicts the error ({error.kind})")
        return Verdict("success", -1)

    if error is None:  # the caller's word alone
        if outcome == "rate_limited":
            error = GeminiError(kind="rate_limited", message="rate limited (reported by caller)")
        elif outcome == "invalid":
            error = GeminiError(kind="invalid", message="invalid key (reported by caller)",
                                disables_key=True, counts_as_key_failure=True)
        else:
            error = GeminiError(kind="unknown", message="failure (reported by caller)")

    if error.kind == "rate_limited":
        until = None
        if policy.cool_down_on_rate_limit:
            if error.retry_after and error.retry_after > policy.max_minute_cooldown:
                error = _with_retry(error, policy.max_minute_cooldown)
            until = cooldown_until(error, now=now,
                                   default_minute_cooldown=policy.default_minute_cooldown)
        group = error.quota_scope == "day" and policy.day_cooldown_whole_group
        return Verdict("rate_limited", 0, cooldown_until=until, cooldown_group=group,
                       error=error)

    if error.disables_key or outcome == "invalid":
        reason = disable_reason(error) if policy.disable_invalid_keys else None
        return Verdict("invalid", 1, disable_reason=reason, error=error)

    counts = error.counts_as_key_failure or (
        error.kind == "unknown" and error.status is None and policy.count_unclassified_failures)
    return Verdict("failure", 1 if counts else 0, error=error)


def _with_retry(error: GeminiError, retry: timedelta) -> GeminiError:
    fields = asdict(error)
    fields["retry_after"] = retry
    return GeminiError(**fields)


def disable_reason(error: GeminiError) -> str:
    """A short reason for disabled_reason, e.g. 'invalid (400 API_KEY_INVALID)'."""
    label = "failure" if error.kind == "unknown" else error.kind.replace("_", " ")
    code = " ".join(str(p) for p in (error.status, error.reason) if p)
    return f"{label} ({code})" if code else label


def error_details(error: GeminiError | None) -> dict[str, Any] | None:
    """What an audit row may say about an error: never key material (messages are redacted)."""
    if error is None:
        return None
    details: dict[str, Any] = {"kind": error.kind, "status": error.status,
                               "reason": error.reason, "message": _clip(error.message)}
    if error.quota_scope:
        details["quota_scope"] = error.quota_scope
    if error.retry_after is not None:
        details["retry_after_s"] = error.retry_after.total_seconds()
    return details


def naive_utc(moment: datetime) -> datetime:
    """Aware → naive UTC, as the spec's timestamp columns hold it."""
    return moment.astimezone(UTC).replace(tzinfo=None)


# -- automatic changes: each flushes and writes one audit row per key it changes -----------

def auto_disable(session: Session, key_id: uuid.UUID, *, reason: str,
                 error: GeminiError | None = None, trigger: str = "pool",
                 min_consecutive_failures: int | None = None, note: str | None = None) -> bool:
    """Deactivate an active key with `reason`; False when it was not active (or, with
    min_consecutive_failures, when a success has since reset its run of failures).

    consecutive_failures goes back to 0 (the audit row keeps the count), so a key an admin
    reactivates gets a fresh run.
    """
    guard = "" if min_consecutive_failures is None else " AND old.consecutive_failures >= :n"
    row = session.execute(text(
        "UPDATE gemini_api_keys k SET is_active = false, disabled_reason = :reason,"
        " consecutive_failures = 0"
        " FROM (SELECT id, consecutive_failures FROM gemini_api_keys"
        "       WHERE id = :id FOR UPDATE) old"
        f" WHERE k.id = old.id AND k.is_active IS TRUE AND k.deleted_at IS NULL{guard}"
        " RETURNING k.name, old.consecutive_failures"),
        {"id": key_id, "reason": reason[:500], "n": min_consecutive_failures}).first()
    if row is None:
        return False
    write_audit(session, action=Action.KEY_AUTO_DISABLED, key_id=key_id, details={
        "name": row.name, "reason": reason, "trigger": trigger,
        "before": {"is_active": True, "consecutive_failures": row.consecutive_failures},
        "after": {"is_active": False, "disabled_reason": reason},
        "error": error_details(error),
        **({"detail": _clip(note)} if note else {}),
    })
    return True


def apply_cooldown(session: Session, key_id: uuid.UUID, *, until: datetime,
                   group_label: str | None, whole_group: bool,
                   error: GeminiError | None = None, trigger: str = "pool") -> list[str]:
    """Cool the key (and, with whole_group, its group) down until `until` (aware UTC).

    Keys already cooling at least that long are left alone (no audit row), so a burst of
    429s on one key writes one row. Rows are locked in id order: two concurrent group
    cooldowns cannot deadlock. Returns the names of the keys changed.
    """
    same_group = whole_group and group_label is not None
    where = "(id = :id OR group_label = :group)" if same_group else "id = :id"
    rows = session.execute(text(
        "WITH target AS (SELECT id, cooldown_until FROM gemini_api_keys"
        f"  WHERE {where} AND deleted_at IS NULL"
        "    AND (cooldown_until IS NULL OR cooldown_until < :until)"
        "  ORDER BY id FOR UPDATE)"
        " UPDATE gemini_api_keys k SET cooldown_until = :until FROM target"
        " WHERE k.id = target.id RETURNING k.id, k.name, target.cooldown_until AS before"),
        {"id": key_id, "group": group_label, "until": naive_utc(until)}).all()
    scope = (error.quota_scope if error else None) or "minute"
    for row in sorted(rows, key=lambda r: r.id != key_id):  # the key that hit the limit first
        details: dict[str, Any] = {
            "name": row.name, "trigger": trigger, "scope": scope,
            "reason": ("per-day quota exhausted" if scope == "day" else "rate limited"),
            "before": {"cooldown_until": row.before.isoformat() if row.before else None},
            "after": {"cooldown_until": naive_utc(until).isoformat()},
            "error": error_details(error),
        }
        if row.id != key_id:
            details["reason"] += f" on another key of group {group_label!r}"
            details["caused_by_key_id"] = str(key_id)
        if same_group:
            details["group_label"] = group_label
        write_audit(session, action=Action.KEY_COOLDOWN, key_id=row.id, details=details)
    return [row.name for row in rows]


def finite_latency(latency_ms: float) -> float:
    """A latency in ms, checked: finite and not negative."""
    value = float(latency_ms)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
    return value
