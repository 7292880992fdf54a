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
ordinary success or failure writes none. The writes themselves are lib.keys.writes'
auto_disable and apply_cooldown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from lib.pool.gemini_errors import GeminiError, cooldown_until
from lib.redact import clip_message

Outcome = Literal["success", "failure", "rate_limited", "invalid"]
OUTCOMES: frozenset[str] = frozenset({"success", "failure", "rate_limited", "invalid"})


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
    text = f"{label} ({code})" if code else label
    return f"{text}: {error.advice}" if error.advice else text


def error_details(error: GeminiError | None) -> dict[str, Any] | None:
    """What an audit row may say about an error: never key material (messages are redacted)."""
    if error is None:
        return None
    details: dict[str, Any] = {"kind": error.kind, "status": error.status,
                               "reason": error.reason, "message": clip_message(error.message)}
    if error.quota_scope:
        details["quota_scope"] = error.quota_scope
    if error.retry_after is not None:
        details["retry_after_s"] = error.retry_after.total_seconds()
    if error.model:
        details["model"] = error.model
    if error.no_quota:
        details["no_quota"] = True
    return details


def finite_latency(latency_ms: float) -> float:
    """A latency in ms, checked: finite and not negative."""
    value = float(latency_ms)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
    return value
