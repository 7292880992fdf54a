"""A local fake of the Gemini REST API for tests (127.0.0.1 only, no Google needed).

    with FakeGemini() as fake:
        fake.respond(key, "rate_limited_day")
        fake.respond(other, "rate_limited_minute", "ok")  # one per request, last one sticks
        check_key(key, base_url=fake.base_url)
        assert fake.requests[0].headers["x-goog-api-key"] == key

Serves GET /v1beta/models and POST /v1beta/models/{model}:generateContent (also /v1/...).
Unknown keys get "invalid", like Google. Error bodies copy Google's real shapes.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self

KINDS = frozenset({
    "ok", "invalid", "permission_denied", "leaked", "service_blocked",
    "rate_limited_minute", "rate_limited_day", "rate_limited_no_details",
    "server_error", "overloaded", "slow",
    # today's errors (issue 13) and project-wide 429s (QuotaFailure without a model)
    "rate_limited_minute_project", "rate_limited_day_project", "rate_limited_fractional",
    "rate_limited_day_zero_delay", "rate_limited_several", "no_quota", "auth_key_refused",
    "unrestricted_key",
})
MAX_RECORDED = 1000
MAX_REQUEST_BODY = 1 << 20
_ROUTE = re.compile(r"^/v1(?:beta)?/models(?:/(?P<model>[\w.\-]+):generateContent)?$")
_FREE_TIER_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_RATE_LIMIT_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


class RecordedRequest(NamedTuple):
    method: str
    path: str  # path and query, exactly as received
    headers: dict[str, str]  # lower-cased names


def _error(code: int, status: str, message: str, details: list | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _error_info(reason: str, **metadata: str) -> dict:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com", **metadata},
    }


def _quota_429(quota_id: str, limit: str, retry_delay: str, model: str) -> dict:
    return _error(429, "RESOURCE_EXHAUSTED", _RATE_LIMIT_MESSAGE, [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": _FREE_TIER_METRIC,
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": model},
                "quotaValue": limit,
            }],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{
                "description": "Learn more about Gemini API quotas",
                "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
            }],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
    ])


def _violation(quota_id: str, model: str | None, value: str | None = None,
               metric: str = _FREE_TIER_METRIC) -> dict:
    violation: dict[str, Any] = {"quotaMetric": metric, "quotaId": quota_id,
                                 "quotaDimensions": {"location": "global"}}
    if model:
        violation["quotaDimensions"]["model"] = model
    if value is not None:
        violation["quotaValue"] = value
    return violation


def _quota_failure(violations: list[dict], retry_delay: str, message: str = _RATE_LIMIT_MESSAGE
                   ) -> dict:
    return _error(429, "RESOURCE_EXHAUSTED", message, [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
    ])


_PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
_PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
_TOKENS_PER_MINUTE = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
_TOKEN_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"


def todays_error_body(kind: str, model: str) -> tuple[int, dict] | None:
    """Bodies seen in late 2026 (shapes from public reports); None for other kinds."""
    if kind == "rate_limited_minute_project":
        return 429, _quota_failure([_violation(_PER_MINUTE, None, "15")], "37s")
    if kind == "rate_limited_day_project":
        return 429, _quota_failure([_violation(_PER_DAY, None, "50")], "5s")
    if kind == "rate_limited_fractional":
        return 429, _quota_failure([_violation(_PER_MINUTE, model, "15")], "45.837906927s")
    if kind == "rate_limited_day_zero_delay":
        return 429, _quota_failure([_violation(_PER_DAY, model, "250")], "0s")
    if kind == "rate_limited_several":  # per-minute tokens and requests, and per-day
        return 429, _quota_failure([
            _violation(_TOKENS_PER_MINUTE, model, "250000", _TOKEN_METRIC),
            _violation(_PER_MINUTE, model, "10"), _violation(_PER_DAY, model, "250")],
            "12.5s")
    if kind == "no_quota":  # the tier has no quota for this model at all
        lines = "".join(f"\n* Quota exceeded for metric: {metric}, limit: 0, model: {model}"
                        for metric in (_TOKEN_METRIC, _FREE_TIER_METRIC, _FREE_TIER_METRIC))
        return 429, _quota_failure(
            [_violation(_TOKENS_PER_MINUTE, model, metric=_TOKEN_METRIC),
             _violation(_PER_MINUTE, model), _violation(_PER_DAY, model)], "45s",
            _RATE_LIMIT_MESSAGE + lines + "\nPlease retry in 45.837906927s.")
    if kind == "auth_key_refused":
        return 401, _error(401, "UNAUTHENTICATED",
                           "Request had invalid authentication credentials. Expected OAuth 2 "
                           "access token, login cookie or other valid authentication "
                           "credential. See https://developers.google.com/identity/sign-in/"
                           "web/devconsole-project.",
                           [_error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED",
                                        method="google.ai.generativelanguage.v1beta."
                                               "GenerativeService.GenerateContent")])
    if kind == "unrestricted_key":
        return 403, _error(403, "PERMISSION_DENIED",
                           "Requests from unrestricted API keys are blocked. Add API "
                           "restrictions to this key in the Google Cloud Console.",
                           [_error_info("API_KEY_UNRESTRICTED")])
    return None


def error_body(kind: str, api_key: str = "", model: str = "gemini-2.0-flash") -> tuple[int, dict]:
    """(HTTP status, JSON body) Google sends for an error kind; ok/slow are not errors."""
    if (today := todays_error_body(kind, model)) is not None:
        return today
    if kind == "invalid":
        message = "API key not valid. Please pass a valid API key."
        return 400, _error(400, "INVALID_ARGUMENT", message, [_error_info("API_KEY_INVALID")])
    if kind == "permission_denied":
        # Real CONSUMER_SUSPENDED messages quote the key: callers must redact.
        return 403, _error(403, "PERMISSION_DENIED",
                           f"Permission denied: Consumer 'api_key:{api_key}' has been suspended.",
                           [_error_info("CONSUMER_SUSPENDED", consumer=f"api_key:{api_key}")])
    if kind == "leaked":
        return 403, _error(403, "PERMISSION_DENIED",
                           "Your API key was reported as leaked. Please use another API key.")
    if kind == "service_blocked":
        method = "google.ai.generativelanguage.v1beta.ModelService.ListModels"
        return 403, _error(403, "PERMISSION_DENIED",
                           f"Requests to this API generativelanguage.googleapis.com "
                           f"method {method} are blocked.",
                           [_error_info("API_KEY_SERVICE_BLOCKED", methodName=method,
                                        consumer="projects/123456789012")])
    if kind == "rate_limited_minute":
        quota_id = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
        return 429, _quota_429(quota_id, "15", "37s", model)
    if kind == "rate_limited_day":
        # Field report: a per-day 429 whose retryDelay was only a few seconds.
        quota_id = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
        return 429, _quota_429(quota_id, "50", "5s", model)
    if kind == "rate_limited_no_details":
        message = "Resource has been exhausted (e.g. check quota)."
        return 429, _error(429, "RESOURCE_EXHAUSTED", message)
    if kind == "server_error":
        message = ("An internal error has occurred. Please retry or report in "
                   "https://developers.generativeai.google/guide/troubleshooting")
        return 500, _error(500, "INTERNAL", message)
    if kind == "overloaded":
        return 503, _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    raise ValueError(f"not an error kind: {kind!r}")


def _ok_body(model: str | None) -> dict:
    if model is None:  # models.list
        return {
            "models": [{
                "name": "models/gemini-2.0-flash",
                "displayName": "Gemini 2.0 Flash",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }],
            "nextPageToken": "fake-page-2",
        }
    return {
        "candidates": [{
            "content": {"parts": [{"text": "OK"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
        "modelVersion": model,
    }


class FakeGemini:
    """Context manager running the fake on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, *, slow_seconds: float = 2.0, default_kind: str = "invalid") -> None:
        self.slow_seconds = slow_seconds
        self.default_kind = default_kind
        self._plans: dict[str, deque[str]] = {}
        self._messages: dict[str, str] = {}
        self._recorded: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def respond(self, api_key: str, *kinds: str, message: str | None = None) -> None:
        """Program a key: each request takes the next kind; the last one repeats. `message`
        replaces the text of its error bodies (Gemini's messages are not ours to trust)."""
        if not kinds or not KINDS.issuperset(kinds):
            raise ValueError(f"kinds must be among {sorted(KINDS)}, got {kinds!r}")
        with self._lock:
            self._plans[api_key] = deque(kinds)
            if message is None:
                self._messages.pop(api_key, None)
            else:
                self._messages[api_key] = message

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGemini is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _next_kind(self, api_key: str | None) -> str | None:
        with self._lock:
            if api_key is None:
                return None
            plan = self._plans.get(api_key)
            if not plan:
                return self.default_kind
            return plan.popleft() if len(plan) > 1 else plan[0]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._recorded.append(request)

    def __enter__(self) -> Self:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._closing.clear()
        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-gemini", daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._closing.set()  # wakes "slow" handlers so shutdown never waits for them
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are expected here, not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    owner: FakeGemini
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck client must not hold a handler thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(expect_model=False)

    def do_POST(self) -> None:
        self._serve(expect_model=True)

    def _serve(self, *, expect_model: bool) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self.close_connection = True  # don't read it all; the rest can't be reused
        if length:
            self.rfile.read(min(length, MAX_REQUEST_BODY))
        self.owner._record(RecordedRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
        ))
        url = urllib.parse.urlsplit(self.path)
        route = _ROUTE.match(url.path)
        if route is None or (route["model"] is not None) != expect_model:
            self._send(404, _error(404, "NOT_FOUND", f"Method not found: {url.path}"))
            return
        # Like Google, accept ?key= too, so a client that leaks it into the URL still "works"
        # and tests can catch it through .requests.
        api_key = self.headers.get("x-goog-api-key") or next(
            iter(urllib.parse.parse_qs(url.query).get("key", [])), None
        )
        kind = self.owner._next_kind(api_key)
        if kind is None:
            self._send(403, _error(403, "PERMISSION_DENIED",
                                   "Method doesn't allow unregistered callers (callers without "
                                   "established identity). Please use API Key or other form of "
                                   "API consumer identity to call this API."))
        elif kind in ("ok", "slow"):
            if kind == "slow" and self.owner._closing.wait(self.owner.slow_seconds):
                return
            self._send(200, _ok_body(route["model"]))
        else:
            status, body = error_body(kind, api_key or "", route["model"] or "gemini-2.0-flash")
            with self.owner._lock:
                message = self.owner._messages.get(api_key or "")
            if message is not None:
                body["error"]["message"] = message
            self._send(status, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body, indent=2).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (e.g. a timeout test)
