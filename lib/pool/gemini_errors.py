"""What Gemini's answers mean for the key that was used: error classification and cooldowns.

Stdlib only; the HTTP call itself is lib.pool.health.check_key (or the caller's own client).
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from lib.clock import next_pacific_midnight
from lib.redact import clip_message

_MAX_BODY_BYTES = 1 << 20

ErrorKind = Literal[
    "ok", "invalid", "permission_denied", "rate_limited", "server_error", "network_error", "unknown"
]
QuotaScope = Literal["minute", "day"]

_INVALID_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_INVALID_KEY_MESSAGE = re.compile(r"API key (not valid|expired)", re.IGNORECASE)
_LEAKED_MESSAGE = re.compile(r"reported as leaked", re.IGNORECASE)
_UNRESTRICTED_MESSAGE = re.compile(r"unrestricted", re.IGNORECASE)
# Google's message lists each exceeded quota as "..., limit: 0, model: gemini-2.5-pro" when
# the project's tier has no quota for the model at all.
_NO_QUOTA_MESSAGE = re.compile(r"limit:\s*0(?![\d.])", re.IGNORECASE)
AUTH_KEY_REFUSED_ADVICE = ("Google does not accept this authorization key for the Gemini API: "
                     "create a new key in Google AI Studio (or enable the Generative "
                     "Language API for its service account) and add that one")
UNRESTRICTED_ADVICE = ("Google rejects unrestricted standard keys: restrict this key in "
                       "Google Cloud Console (API restrictions: Generative Language API), "
                       "then reactivate it")



@dataclass(frozen=True)
class GeminiError:
    """What a Gemini response (or failure to get one) means for the key that was used.

    disables_key: the key itself is unusable (invalid, leaked, blocked); disable it now.
    counts_as_key_failure: count toward the key's consecutive failures. False for Google's
    own trouble (5xx), network errors and rate limits (those get a cooldown instead).
    """

    kind: ErrorKind
    status: int | None = None
    reason: str | None = None
    message: str = ""
    quota_scope: QuotaScope | None = None
    retry_after: timedelta | None = None
    disables_key: bool = False
    counts_as_key_failure: bool = False
    model: str | None = None  # the model a QuotaFailure named (quotaDimensions.model)
    no_quota: bool = False  # `limit: 0`: the project has no quota for `model` at all
    advice: str | None = None  # what an admin should do about a disabled key



def _parse_body(body: str | bytes | dict | list | None) -> tuple[dict[str, Any] | None, str]:
    """Return (the "error" object or None, raw text for when there is no JSON)."""
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body[:_MAX_BODY_BYTES]).decode("utf-8", errors="replace")
    raw = body if isinstance(body, str) else ""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None, raw
    # Gemini sometimes wraps the error in a one-element list.
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return None, raw
    error = body.get("error")
    if isinstance(error, str):
        return {"message": error}, raw
    return (error if isinstance(error, dict) else None), raw


def _details(error: dict[str, Any], type_suffix: str) -> list[dict[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [
        d for d in details
        if isinstance(d, dict) and str(d.get("@type", "")).endswith(type_suffix)
    ]


def _parse_duration(value: Any) -> timedelta | None:
    """Protobuf Duration as JSON: "37s" / "1.5s", or {"seconds": 37, "nanos": 0}."""
    try:
        if isinstance(value, str) and value.strip().endswith("s"):
            seconds = float(value.strip()[:-1])
        elif isinstance(value, dict):
            seconds = float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        else:
            return None
    except (TypeError, ValueError):
        return None
    if not 0 <= seconds < 10 * 86400:  # also rejects nan
        return None
    return timedelta(seconds=seconds)


def _violations(error: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for failure in _details(error, "google.rpc.QuotaFailure")
            for v in (failure.get("violations") if isinstance(failure.get("violations"), list)
                      else []) if isinstance(v, dict)]


def _violation_scope(violation: dict[str, Any]) -> QuotaScope | None:
    quota_id = str(violation.get("quotaId", "")).lower()
    if "perday" in quota_id:
        return "day"
    # No hour scope: a per-hour quota gets the same short cooldown as per-minute and
    # simply 429s again if it has not reset yet.
    if "perminute" in quota_id or "perhour" in quota_id:
        return "minute"
    return None


def _quota(error: dict[str, Any], raw_message: str) -> tuple[QuotaScope | None, str | None,
                                                             bool]:
    """(scope, model, no quota) from QuotaFailure: the strictest violation wins (per-day
    over per-minute), decided by quotaId, never by retryDelay (per-day may say "0s")."""
    scope: QuotaScope | None = None
    model: str | None = None
    no_quota = bool(_NO_QUOTA_MESSAGE.search(raw_message))
    for violation in _violations(error):
        dims = violation.get("quotaDimensions")
        named = dims.get("model") if isinstance(dims, dict) else None
        named = str(named)[:128] if named else None
        this = _violation_scope(violation)
        if str(violation.get("quotaValue", "")).strip() == "0":
            no_quota = True
        if this == "day" and scope != "day":
            scope, model = "day", named or model
        elif this == "minute" and scope is None:
            scope, model = "minute", named or model
        elif model is None:
            model = named
    return scope, model, no_quota and model is not None


def classify_error(
    status: int | None,
    body: str | bytes | dict | list | None,
    *,
    now: datetime | None = None,
) -> GeminiError:
    """Classify an HTTP status + Google error body. status None means no HTTP response.

    now is accepted for call-site symmetry with cooldown_until; classification is timeless.
    """
    del now
    error, raw = _parse_body(body)
    error = error or {}
    code = error.get("code")
    if isinstance(code, int) and (status is None or 200 <= status < 300):
        status = code  # an error object inside a 200 (or a body without a status) wins

    message = error.get("message")
    raw_message = message if isinstance(message, str) else raw
    message = clip_message(raw_message)
    infos = _details(error, "google.rpc.ErrorInfo")
    reason = next((str(i["reason"]) for i in infos if i.get("reason")), None)
    if _LEAKED_MESSAGE.search(message):
        reason = "leaked"
    elif reason is None and isinstance(error.get("status"), str):
        reason = error["status"]

    def make(kind: ErrorKind, **flags: Any) -> GeminiError:
        return GeminiError(kind=kind, status=status, reason=reason, message=message, **flags)

    if status is None:
        return make("network_error")
    if 200 <= status < 300:
        return make("ok")
    if reason in _INVALID_KEY_REASONS or (status == 400 and _INVALID_KEY_MESSAGE.search(message)):
        return make("invalid", disables_key=True, counts_as_key_failure=True)
    if status == 403:
        unrestricted = ("UNRESTRICTED" in (reason or "").upper()
                        or bool(_UNRESTRICTED_MESSAGE.search(raw_message)))
        return make("permission_denied", disables_key=True, counts_as_key_failure=True,
                    advice=UNRESTRICTED_ADVICE if unrestricted else None)
    if status == 429:
        retry = next(
            (d for i in _details(error, "google.rpc.RetryInfo")
             if (d := _parse_duration(i.get("retryDelay"))) is not None),
            None,
        )
        scope, model, no_quota = _quota(error, raw_message)
        return make("rate_limited", quota_scope=scope, retry_after=retry, model=model,
                    no_quota=no_quota)
    if status == 401 and reason == "ACCESS_TOKEN_TYPE_UNSUPPORTED":
        # The key itself will never work here (an authorization key the API won't take).
        return make("invalid", disables_key=True, counts_as_key_failure=True,
                    advice=AUTH_KEY_REFUSED_ADVICE)
    if status == 401:
        # Gemini reports bad keys as 400; a 401 more likely comes from a proxy or a
        # misconfiguration, so count it but don't disable every key on the first one.
        return make("invalid", counts_as_key_failure=True)
    if status >= 500:
        return make("server_error")
    # Other 4xx (INVALID_ARGUMENT about the request, NOT_FOUND model, FAILED_PRECONDITION
    # "location not supported", 3xx from a proxy...) say nothing about the key.
    return make("unknown")


def classify_exception(exc: BaseException) -> GeminiError:
    """A network_error for a failure that produced no HTTP response (timeout, refused...)."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        text = "timed out"
    else:
        text = f"{type(reason).__name__}: {reason}"
    return GeminiError(kind="network_error", message=clip_message(f"network error: {text}"))


def cooldown_until(
    err: GeminiError,
    *,
    now: datetime,
    default_minute_cooldown: timedelta = timedelta(seconds=60),
) -> datetime | None:
    """When a rate-limited key may be tried again (aware, UTC); None if no cooldown applies.

    Per-day quotas reset at the next midnight America/Los_Angeles. Per-minute quotas and
    429s without quota details wait retry_after, or default_minute_cooldown without one.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if err.kind != "rate_limited":
        return None
    if err.quota_scope == "day":
        return next_pacific_midnight(now)
    wait = err.retry_after if err.retry_after else default_minute_cooldown
    return (now + wait).astimezone(UTC)


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
    return GeminiError(kind="unknown", message=clip_message(f"{type(exc).__name__}: {exc}"))


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
