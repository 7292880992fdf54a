"""A local fake of the Gemini REST API for tests (127.0.0.1 only, no Google needed).

    with FakeGemini() as fake:
        fake.respond(key, "rate_limited_day")
        fake.respond(other, "rate_limited_minute", "ok")  # one per request, last one sticks
        check_key(key, base_url=fake.base_url)
        assert fake.requests[0].headers["x-goog-api-key"] == key

Serves GET /v1beta/models and POST /v1beta/models/{model}:generateContent (also /v1/...).
Unknown keys get "invalid", like Google. Error bodies copy Google's real shapes.

For the gateway it also serves GET /v1beta/models/{model}, :streamGenerateContent (SSE with
alt=sse: `stream_chunks` chunks `stream_interval` seconds apart, usageMetadata on the last;
`stream_gate`, when set, holds every chunk after the first until it is set), :countTokens,
:embedContent, :batchEmbedContents, and Gemini's OpenAI-compatible routes under
/v1beta/openai/ (chat/completions with and without stream, embeddings, models; the key as
Authorization: Bearer). `requests` records method, path, headers and body of each request;
`streams_finished` / `streams_cut` count streams sent to the end / left by the client.
"""

from __future__ import annotations

import json
import re
import select
import threading
import time
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
_NATIVE = re.compile(r"^/v1(?:beta)?/models/(?P<model>[\w.\-]+):(?P<method>streamGenerateContent"
                     r"|countTokens|embedContent|batchEmbedContents)$")
_MISSING = re.compile(r"^/v1(?:beta)?/models/(?P<model>missing[\w.\-]*):\w+$")
_MODEL_GET = re.compile(r"^/v1(?:beta)?/models/(?P<model>[\w.\-]+)$")
_OPENAI = re.compile(r"^/v1beta/openai/(?P<path>chat/completions|embeddings|models)/?$")
USAGE = {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8}
OPENAI_USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
_FREE_TIER_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_RATE_LIMIT_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)


class RecordedRequest(NamedTuple):
    method: str
    path: str  # path and query, exactly as received
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""


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

    def __init__(self, *, slow_seconds: float = 2.0, default_kind: str = "invalid",
                 stream_chunks: int = 3, stream_interval: float = 0.02) -> None:
        self.slow_seconds = slow_seconds
        self.default_kind = default_kind
        self.stream_chunks = stream_chunks
        self.stream_interval = stream_interval
        self.stream_gate: threading.Event | None = None
        self.streams_finished = 0
        self.streams_cut = 0
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
        body = self.rfile.read(min(length, MAX_REQUEST_BODY)) if length else b""
        self.owner._record(RecordedRequest(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        ))
        url = urllib.parse.urlsplit(self.path)
        if self._serve_more(url, body, expect_model=expect_model):
            return
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

    # -- the gateway's routes ---------------------------------------------------------------

    def _kind_or_error(self, api_key: str | None, model: str) -> str | None:
        """The programmed kind if it is ok/slow; otherwise the error is sent and None."""
        kind = self.owner._next_kind(api_key)
        if kind is None:
            self._send(401, _error(401, "UNAUTHENTICATED", "Missing API key."))
            return None
        if kind in ("ok", "slow"):
            if kind == "slow" and self.owner._closing.wait(self.owner.slow_seconds):
                return None
            return kind
        status, error = error_body(kind, api_key or "", model)
        with self.owner._lock:
            message = self.owner._messages.get(api_key or "")
        if message is not None:
            error["error"]["message"] = message
        self._send(status, error)
        return None

    def _serve_more(self, url: urllib.parse.SplitResult, body: bytes, *,
                    expect_model: bool) -> bool:
        """The routes beyond generateContent and models.list; False if none matched."""
        query = urllib.parse.parse_qs(url.query)
        native_key = self.headers.get("x-goog-api-key") or next(iter(query.get("key", [])), None)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if (m := _MISSING.match(url.path)) and expect_model:  # any model named missing*
            self._send(404, _error(404, "NOT_FOUND", f"models/{m['model']} is not found."))
            return True
        if (m := _NATIVE.match(url.path)) and expect_model:
            model, method = m["model"], m["method"]
            if model.startswith("missing"):
                self._send(404, _error(404, "NOT_FOUND", f"models/{model} is not found."))
                return True
            if self._kind_or_error(native_key, model) is None:
                return True
            if method == "streamGenerateContent":
                events = [json.dumps(c) for c in _native_chunks(model, self.owner.stream_chunks)]
                if query.get("alt") == ["sse"]:
                    self._stream([f"data: {e}\r\n\r\n".encode() for e in events],
                                 "text/event-stream")
                else:
                    self._send_raw(200, ("[" + ",".join(events) + "]").encode())
            elif method == "countTokens":
                self._send(200, {"totalTokens": 3})
            elif method == "embedContent":
                self._send(200, {"embedding": {"values": [0.1, 0.2, 0.3]}})
            else:
                count = len(payload.get("requests") or []) or 1
                self._send(200, {"embeddings": [{"values": [0.1, 0.2, 0.3]}] * count})
            return True
        if (m := _MODEL_GET.match(url.path)) and not expect_model:
            if self._kind_or_error(native_key, m["model"]) is not None:
                self._send(200, {"name": f"models/{m['model']}", "displayName": m["model"],
                                 "supportedGenerationMethods": ["generateContent"]})
            return True
        if m := _OPENAI.match(url.path):
            authorization = self.headers.get("Authorization", "")
            bearer = authorization[7:] if authorization.lower().startswith("bearer ") else None
            model = str(payload.get("model") or "gemini-2.0-flash")
            if self._kind_or_error(bearer, model) is None:
                return True
            path = m["path"]
            if path == "models":
                self._send(200, {"object": "list", "data": [
                    {"id": "models/gemini-2.0-flash", "object": "model", "owned_by": "google"}]})
            elif path == "embeddings":
                self._send(200, {"object": "list", "model": model, "usage": {
                    "prompt_tokens": 3, "total_tokens": 3}, "data": [
                    {"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]})
            elif payload.get("stream"):
                usage = bool((payload.get("stream_options") or {}).get("include_usage"))
                events = [json.dumps(c) for c in _openai_chunks(
                    model, self.owner.stream_chunks, usage)] + ["[DONE]"]
                self._stream([f"data: {e}\n\n".encode() for e in events], "text/event-stream")
            else:
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                    "model": model, "usage": OPENAI_USAGE, "choices": [{
                        "index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "OK"}}]})
            return True
        return False

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, 2) == b""  # 2: MSG_PEEK
        except OSError:
            return True

    def _pause(self, seconds: float, gate: threading.Event | None) -> bool:
        """Wait `seconds` (and for the gate, if any); False if the client went away."""
        deadline = time.monotonic() + max(seconds, 0)
        give_up = time.monotonic() + 10
        while True:
            if self._client_gone():
                return False
            now = time.monotonic()
            if now >= deadline and (gate is None or gate.is_set()):
                return True
            if now > give_up or self.owner._closing.is_set():
                return False
            time.sleep(min(0.005, max(deadline - now, 0.001)))

    def _stream(self, events: list[bytes], content_type: str) -> None:
        """Send events as chunked transfer encoding, each flushed on its own."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, event in enumerate(events):
                if index and not self._pause(self.owner.stream_interval,
                                             self.owner.stream_gate):
                    raise BrokenPipeError
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            with self.owner._lock:
                self.owner.streams_cut += 1
            return
        with self.owner._lock:
            self.owner.streams_finished += 1

    def _send_raw(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

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


def _native_chunks(model: str, count: int) -> list[dict]:
    chunks = []
    for index in range(count):
        chunk: dict[str, Any] = {"candidates": [{
            "content": {"parts": [{"text": f"chunk{index} "}], "role": "model"}, "index": 0}],
            "modelVersion": model}
        if index == count - 1:
            chunk["candidates"][0]["finishReason"] = "STOP"
            chunk["usageMetadata"] = USAGE
        chunks.append(chunk)
    return chunks


def _openai_chunks(model: str, count: int, usage: bool) -> list[dict]:
    chunks = [{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
               "model": model, "choices": [{
                   "index": 0, "delta": {"role": "assistant", "content": f"chunk{index} "},
                   "finish_reason": "stop" if index == count - 1 else None}]}
              for index in range(count)]
    if usage:
        chunks.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                       "model": model, "choices": [], "usage": OPENAI_USAGE})
    return chunks
