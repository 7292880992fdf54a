"""Gemini API: error classification, secret redaction and a key health check.

Stdlib only, so the key pool, the CLI and the logging filter can all import it.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
BASE_URL_ENV = "GEMINI_API_BASE_URL"
MESSAGE_LIMIT = 300
_MAX_BODY_BYTES = 1 << 20
# Per-day quotas reset at midnight Pacific time (NOTES.md, "Gemini API").
_QUOTA_TZ = ZoneInfo("America/Los_Angeles")

ErrorKind = Literal[
    "ok", "invalid", "permission_denied", "rate_limited", "server_error", "network_error", "unknown"
]
QuotaScope = Literal["minute", "day"]

_INVALID_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_INVALID_KEY_MESSAGE = re.compile(r"API key (not valid|expired)", re.IGNORECASE)
_LEAKED_MESSAGE = re.compile(r"reported as leaked", re.IGNORECASE)

# One pass over the text. AIza... stays case-sensitive so ordinary words never match; the
# named groups keep the label ("Bearer ", "key=") so redacted logs still read sensibly.
_SECRET = re.compile(
    r"AIza[0-9A-Za-z_\-]{20,}"
    r"|(?P<bearer>(?i:\bbearer\s+))[A-Za-z0-9\-._~+/]+=*"
    r"|(?P<header>(?i:\bx-goog-api-key[\"']?\s*[:=]\s*[\"']?))[^\s\"',;}&]+"
    r"|(?P<param>(?i:\b(?:api[_-]?key|key|access_token)=))[^\s&\"'#]+"
)
REDACTED = "[REDACTED]"


def _redact_match(m: re.Match[str]) -> str:
    return (m.group("bearer") or m.group("header") or m.group("param") or "") + REDACTED


def redact(text: str) -> str:
    """Replace Gemini keys, bearer tokens and key=... parameters with [REDACTED]."""
    return _SECRET.sub(_redact_match, text)


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


@dataclass(frozen=True)
class HealthResult:
    status: ErrorKind
    http_status: int | None
    message: str
    latency_ms: float
    error: GeminiError | None


def _clean_message(text: str) -> str:
    # Redact before trimming: a cut key could otherwise leave a prefix too short to match.
    text = " ".join(redact(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


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


def _quota_scope(error: dict[str, Any]) -> QuotaScope | None:
    """Per-minute vs per-day from QuotaFailure quotaIds; retryDelay is not reliable for this."""
    scope: QuotaScope | None = None
    for failure in _details(error, "google.rpc.QuotaFailure"):
        violations = failure.get("violations")
        for violation in violations if isinstance(violations, list) else []:
            if not isinstance(violation, dict):
                continue
            quota_id = str(violation.get("quotaId", "")).lower()
            if "perday" in quota_id:
                return "day"  # the longest window wins
            # No hour scope: a per-hour quota gets the same short cooldown as per-minute and
            # simply 429s again if it has not reset yet.
            if "perminute" in quota_id or "perhour" in quota_id:
                scope = "minute"
    return scope


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
    message = _clean_message(message if isinstance(message, str) else raw)
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
        return make("permission_denied", disables_key=True, counts_as_key_failure=True)
    if status == 429:
        retry = next(
            (d for i in _details(error, "google.rpc.RetryInfo")
             if (d := _parse_duration(i.get("retryDelay"))) is not None),
            None,
        )
        return make("rate_limited", quota_scope=_quota_scope(error), retry_after=retry)
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
    return GeminiError(kind="network_error", message=_clean_message(f"network error: {text}"))


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
        next_day = now.astimezone(_QUOTA_TZ).date() + timedelta(days=1)
        # Midnight always exists in Los Angeles (DST switches at 02:00).
        return datetime(
            next_day.year, next_day.month, next_day.day, tzinfo=_QUOTA_TZ
        ).astimezone(UTC)
    wait = err.retry_after if err.retry_after else default_minute_cooldown
    return (now + wait).astimezone(UTC)


def base_url_from_env(env: Mapping[str, str]) -> str:
    """GEMINI_API_BASE_URL (for fakes and proxies) or DEFAULT_BASE_URL, without trailing /."""
    return _check_base_url(env.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL)


def _check_base_url(base_url: str) -> str:
    # urllib would happily open file:// and friends; only HTTP(S) may carry a key.
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{BASE_URL_ENV} must be an http(s) URL, got {redact(base_url)!r}")
    return base_url.rstrip("/")


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
    api_key: str, *, base_url: str = DEFAULT_BASE_URL, timeout: float = 10.0
) -> HealthResult:
    """Cheap health check: GET /v1beta/models?pageSize=1 with the key in x-goog-api-key."""
    url = _check_base_url(base_url) + "/v1beta/models?pageSize=1"
    if not _HEADER_SAFE_KEY.fullmatch(api_key):
        err = GeminiError(
            kind="invalid",
            reason="MALFORMED_KEY",
            message="API key is empty or contains whitespace/non-ASCII characters",
            disables_key=True,
            counts_as_key_failure=True,
        )
        return HealthResult(err.kind, None, err.message, 0.0, err)

    # S310: _check_base_url above allows http(s) only.
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
