"""The gateway's Starlette app: Gemini's native routes and its OpenAI-compatible routes,
passed through to GEMINI_API_BASE_URL with a key from the pool.

Per request: the access token (x-goog-api-key, ?key= or Authorization: Bearer; never
forwarded) is checked in one round trip, the body read up to the limit, then up to
max_attempts keys are tried: a 429, 5xx, network error or a key the answer says is bad
(400 API_KEY_INVALID, 403) is recorded through the pool and the next key tried, as long as
no byte went to the client and the deadline allows. Other 4xx (the request's own fault) go
back as they are and do not count against the key. The real key travels only in the
x-goog-api-key header (Bearer on the OpenAI routes). Streams go through chunk by chunk; a
client that leaves cancels the upstream request. Recording (pool, token usage) runs after
the answer, off the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from lib.errors import GeminiKeysError
from lib.gateway.access import Access, Caller
from lib.gateway.errors import gemini_error
from lib.gateway.metrics import Metrics
from lib.pool import KeyDecryptionError, KeyPool, Lease, NoKeyAvailable
from lib.pool.gemini_errors import classify_error
from lib.redact import redact
from lib.settings import Settings
from lib.tokens import token_from_request_value

log = logging.getLogger("gemini_keys.gateway")

NATIVE_METHODS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent",
                  "batchEmbedContents")
OPENAI_PATHS = ("chat/completions", "embeddings", "models")
# Request headers passed upstream (everything else, above all the client's credentials, stays).
FORWARD_REQUEST = ("content-type", "accept", "user-agent", "x-goog-api-client",
                   "x-goog-user-project")
FORWARD_RESPONSE = ("content-type", "x-request-id")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
DEFAULT_RETRY_AFTER = 60
# Database calls at once per process, each on its own thread, and the idle connections the
# pool and the token statements keep: more threads than kept connections would open and
# close a connection per call under load (a PostgreSQL backend start each).
DB_THREADS = 16


@dataclass(frozen=True)
class GatewayConfig:
    upstream: str
    max_attempts: int = 3
    max_body_bytes: int = 20 << 20
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, *, max_attempts: int | None = None
                      ) -> GatewayConfig:
        return cls(settings.gemini_api_base_url,
                   max_attempts or settings.gateway_max_attempts,
                   settings.gateway_max_body_bytes, settings.gateway_timeout_seconds,
                   settings.gateway_connect_timeout_seconds)


class _TooLarge(Exception):
    pass


class Gateway:
    """What one process holds: the pool, the token statements, one HTTP client, metrics."""

    def __init__(self, config: GatewayConfig | None) -> None:
        self.config: GatewayConfig = config  # type: ignore[assignment] - set by the lifespan
        self.metrics = Metrics()
        self.client: httpx2.AsyncClient | None = None

    def attach(self, pool: KeyPool, access: Access) -> None:
        self.pool = pool
        self.access = access
        self._limiter = anyio.CapacityLimiter(DB_THREADS)

    # -- helpers -------------------------------------------------------------------------

    async def _thread(self, function: Any, *args: Any) -> Any:
        """`function(*args)` on a worker thread, at most DB_THREADS at once."""
        return await anyio.to_thread.run_sync(lambda: function(*args), limiter=self._limiter)

    def _acquire(self, model: str | None, tried: set) -> Lease:
        return self.pool.acquire(model, exclude=tried)  # failover: never a key that failed

    def _record(self, lease: Lease, outcome: str, latency_ms: float, error: Any = None,
                usage: dict | None = None) -> None:
        try:
            if usage is not None:
                self.pool.record(lease, outcome, latency_ms, error=error, usage=usage)
            else:
                self.pool.record(lease, outcome, latency_ms, error=error)
        except Exception:  # noqa: BLE001 - the answer went out; say so in the log only
            log.exception("gateway: could not record a call of key %s", lease.name)

    def _count(self, caller: Caller, error: bool, usage: dict | None) -> None:
        try:
            self.access.count(caller, error=error, usage=usage)
        except Exception:  # noqa: BLE001
            log.exception("gateway: could not count a request of token %s", caller.name)

    # -- the request ---------------------------------------------------------------------

    async def handle(self, request: Request, *, route: str, openai: bool,
                     model: str | None) -> Response:
        started = time.perf_counter()
        response = await self._handle(request, route=route, openai=openai, model=model,
                                      started=started)
        self.metrics.request(route, response.status_code, time.perf_counter() - started)
        return response

    async def _handle(self, request: Request, *, route: str, openai: bool,
                      model: str | None, started: float) -> Response:
        token = _presented_token(request)
        if token is None:
            return self._unauthenticated()
        try:
            body = await _read_body(request, self.config.max_body_bytes)
        except _TooLarge:
            caller = await self._thread(self.access.caller, token)
            if caller is None:
                return self._unauthenticated()
            self.metrics.error("body_too_large")
            return self._finish_own(gemini_error(
                413, f"Request body over the gateway's limit of "
                f"{self.config.max_body_bytes} bytes."), caller)
        if openai and request.method == "POST":
            model = _model_in_body(body)
        # One trip off the event loop: the token check, then (if it may) the first key.
        caller, first = await self._thread(self._admit, token, model)
        if caller is None:
            return self._unauthenticated()
        if first is None:
            self.metrics.error("model_not_allowed")
            return self._finish_own(gemini_error(
                403, f"This access token may not use model {model!r}."), caller)
        deadline = started + _deadline(request, self.config.timeout_seconds)
        return await self._attempts(request, body, caller=caller, openai=openai, model=model,
                                    deadline=deadline, first=first)

    def _unauthenticated(self) -> Response:
        self.metrics.error("unauthenticated")
        return gemini_error(401, "Missing, unknown, expired or revoked access token. Pass "
                            "a gateway access token (gkat_...) as x-goog-api-key, "
                            "?key= or Authorization: Bearer.")

    def _admit(self, token: str, model: str | None) -> tuple[Caller | None, Any]:
        """(caller, the first key or the pool's exception); caller None: refused; first
        None: the model is outside the token's list."""
        caller = self.access.caller(token)
        if caller is None or not caller.may_use(model):
            return caller, None
        return caller, self._try_acquire(model, set())

    def _try_acquire(self, model: str | None, tried: set) -> Any:
        try:
            return self._acquire(model, tried)
        except (GeminiKeysError, KeyDecryptionError) as error:  # NoKeyAvailable among them
            return error

    async def _attempts(self, request: Request, body: bytes, *, caller: Caller, openai: bool,
                        model: str | None, deadline: float, first: Any) -> Response:
        assert self.client is not None
        tried: set = set()
        last: tuple[str, Any] | None = None  # (kind, detail) of the last failed attempt
        for _ in range(self.config.max_attempts):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                if isinstance(first, Lease):  # taken but never used: not the key's fault
                    await self._thread(self._record, first, "failure", 0.0,
                                       TimeoutError("deadline passed before the call"))
                break
            if first is not None:
                lease, first = first, None
            else:
                lease = await self._thread(self._try_acquire, model, tried)
            if isinstance(lease, (KeyDecryptionError, GeminiKeysError)) and not isinstance(
                    lease, NoKeyAvailable):
                log.error("gateway: the pool could not decrypt keys (wrong master key?)")
                self.metrics.error("pool")
                return self._finish_own(gemini_error(
                    503, "The gateway cannot use its keys right now."), caller)
            if isinstance(lease, NoKeyAvailable):
                if last is not None and last[0] != "rate_limited":
                    break
                self.metrics.error("no_key")
                return self._finish_own(
                    gemini_error(429, f"No Gemini key available for this request "
                                 f"({'all tried keys failed; ' if last else ''}"
                                 f"{lease}).", retry_after=_retry_after(lease)), caller)
            tried.add(lease.key_id)
            upstream = self._upstream_request(request, body, lease, openai, remaining)
            attempt_started = time.perf_counter()
            try:
                response = await self.client.send(upstream, stream=True)
            except httpx2.HTTPError as error:
                latency = (time.perf_counter() - attempt_started) * 1000
                kind = "timeout" if isinstance(error, httpx2.TimeoutException) else "network"
                self.metrics.attempt(kind)
                await self._thread(self._record, lease, "failure", latency, error)
                last = (kind, None)
                continue
            status = response.status_code
            if status < 400:
                self.metrics.attempt("ok")
                return await self._pass(response, lease, caller, attempt_started)
            try:
                error_body = await response.aread()
            except httpx2.HTTPError:
                error_body = b""
            finally:
                await response.aclose()
            latency = (time.perf_counter() - attempt_started) * 1000
            verdict = classify_error(status, error_body)
            retry_elsewhere = (status == 429 or status >= 500
                               or verdict.kind in ("invalid", "permission_denied"))
            if not retry_elsewhere:
                # The request's own fault (INVALID_ARGUMENT, NOT_FOUND model...): the key
                # worked, so the call counts as the key's success; the answer goes back as is.
                self.metrics.attempt("client_error")
                self.metrics.error("upstream_client_error")
                task = BackgroundTask(self._thread, self._after, lease, "success", latency,
                                      None, None, caller, True)
                return Response(error_body, status_code=status, headers=_response_headers(
                    response), background=task)
            self.metrics.attempt(verdict.kind)
            outcome = "rate_limited" if status == 429 else "failure"
            await self._thread(self._record, lease, outcome, latency, (status, error_body))
            retry = verdict.retry_after.total_seconds() if verdict.retry_after else None
            last = (verdict.kind, (status, retry))
        return self._give_up(last, caller)

    def _finish_own(self, response: Response, caller: Caller) -> Response:
        response.background = BackgroundTask(self._thread, self._count, caller, True, None)
        return response

    def _give_up(self, last: tuple[str, Any] | None, caller: Caller) -> Response:
        if last is None or last[0] == "timeout":
            self.metrics.error("deadline")
            return self._finish_own(gemini_error(
                504, "Gemini did not answer within the request's deadline."), caller)
        kind, detail = last
        if kind == "rate_limited":
            self.metrics.error("rate_limited")
            retry = detail[1] if detail and detail[1] else DEFAULT_RETRY_AFTER
            return self._finish_own(gemini_error(
                429, f"Every key tried was rate limited by Gemini ({self.config.max_attempts} "
                "attempts at most).", retry_after=math.ceil(retry)), caller)
        self.metrics.error("upstream")
        shown = f"HTTP {detail[0]}" if detail else "a network error"
        return self._finish_own(gemini_error(
            502, f"Gemini failed on every attempt (last: {shown})."), caller)

    def _upstream_request(self, request: Request, body: bytes, lease: Lease, openai: bool,
                          remaining: float) -> httpx2.Request:
        assert self.client is not None
        headers = {name: value for name in FORWARD_REQUEST
                   if (value := request.headers.get(name)) is not None}
        if openai:
            headers["authorization"] = f"Bearer {lease.api_key}"
        else:
            headers["x-goog-api-key"] = lease.api_key
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
        timeout = httpx2.Timeout(remaining, connect=min(remaining,
                                                       self.config.connect_timeout_seconds))
        return self.client.build_request(
            request.method, self.config.upstream + request.url.path, params=params,
            headers=headers, content=body if request.method == "POST" else None,
            timeout=timeout)

    def _after(self, lease: Lease, outcome: str, latency: float, error: Any,
               usage: dict | None, caller: Caller, failed: bool) -> None:
        self._record(lease, outcome, latency, error, usage)
        self._count(caller, failed, usage)

    async def _pass(self, response: httpx2.Response, lease: Lease, caller: Caller,
                    attempt_started: float) -> Response:
        headers = _response_headers(response)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            try:
                content = await response.aread()
            except httpx2.HTTPError as error:
                latency = (time.perf_counter() - attempt_started) * 1000
                await self._thread(self._after, lease, "failure", latency, error, None, caller,
                                   True)
                return gemini_error(502, "Gemini's answer broke off.")
            finally:
                await response.aclose()
            latency = (time.perf_counter() - attempt_started) * 1000
            usage = _usage(content)
            task = BackgroundTask(self._thread, self._after, lease, "success", latency, None,
                                  usage, caller, False)
            return Response(content, status_code=response.status_code, headers=headers,
                            background=task)
        return StreamingResponse(self._stream(response, lease, caller, attempt_started),
                                 status_code=response.status_code, headers=headers)

    async def _stream(self, response: httpx2.Response, lease: Lease, caller: Caller,
                      attempt_started: float) -> AsyncIterator[bytes]:
        """Each chunk as it comes; the last usage seen is recorded at the end. Leaving early
        (the client went away: this generator is cancelled or closed) closes the upstream
        response, which cancels the upstream request."""
        tail = UsageTail()
        outcome, error = "failure", None
        try:
            async for chunk in response.aiter_bytes():
                tail.feed(chunk)
                yield chunk
            outcome = "success"
        except httpx2.HTTPError as exc:
            error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
                latency = (time.perf_counter() - attempt_started) * 1000
                if outcome == "failure" and error is None:
                    # The client left: not the key's fault.
                    outcome, error = "success", None
                    self.metrics.error("client_disconnected")
                usage = tail.usage()
                await self._thread(self._after, lease, outcome, latency, error, usage, caller,
                                   outcome != "success")


class UsageTail:
    """Remembers the last SSE data line that carries usageMetadata (native) or usage
    (OpenAI), without holding the stream."""

    MAX_LINE = 1 << 20

    def __init__(self) -> None:
        self._partial = b""
        self._last: bytes | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self.MAX_LINE:
            self._partial = b""
        for line in lines:
            if line.startswith(b"data:") and (b'"usageMetadata"' in line or b'"usage"' in line):
                self._last = line

    def usage(self) -> dict | None:
        if self._partial.startswith(b"data:"):
            self.feed(b"\n")
        if self._last is None:
            return None
        try:
            event = json.loads(self._last[5:].strip())
        except ValueError:
            return None
        return _usage_of(event)


def _usage_of(event: Any) -> dict | None:
    if isinstance(event, list) and event:
        event = event[-1]
    if not isinstance(event, dict):
        return None
    usage = event.get("usageMetadata") or event.get("usage")
    return usage if isinstance(usage, dict) else None


def _usage(content: bytes) -> dict | None:
    if b'"usageMetadata"' not in content and b'"usage"' not in content:
        return None
    try:
        return _usage_of(json.loads(content))
    except ValueError:
        return None


def _response_headers(response: httpx2.Response) -> dict[str, str]:
    return {name: value for name in FORWARD_RESPONSE
            if (value := response.headers.get(name)) is not None}


def _presented_token(request: Request) -> str | None:
    """The access token, the way the caller's SDK sends it; None if absent or not shaped
    like one (then no database lookup happens)."""
    value = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not value:
        authorization = request.headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            value = ""
    return token_from_request_value(value)


async def _read_body(request: Request, limit: int) -> bytes:
    if request.method != "POST":
        return b""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
    return b"".join(parts)


def _model_in_body(body: bytes) -> str | None:
    """The OpenAI routes name their model in the body: {"model": "gemini-2.0-flash"}."""
    try:
        model = json.loads(body).get("model") if body else None
    except (ValueError, AttributeError):
        return None
    return model.removeprefix("models/") if isinstance(model, str) else None


def _deadline(request: Request, limit: float) -> float:
    """The client's deadline if it sent one (google-genai: X-Server-Timeout, openai:
    X-Stainless-Timeout, seconds), never more than the gateway's own."""
    for name in ("x-server-timeout", "x-stainless-timeout"):
        try:
            value = float(request.headers.get(name, ""))
        except ValueError:
            continue
        if 0 < value < limit:
            return value
    return limit


def _retry_after(error: NoKeyAvailable) -> int:
    at = getattr(error, "next_available_at", None)
    if at is None:
        return DEFAULT_RETRY_AFTER if getattr(error, "active", 1) == 0 else 1
    from datetime import UTC, datetime
    return max(1, math.ceil((at - datetime.now(UTC)).total_seconds()))


# -- routes ---------------------------------------------------------------------------------

def _routes(gateway: Gateway) -> list[Route]:
    async def native_model(request: Request) -> Response:
        model, _, method = request.path_params["model_method"].partition(":")
        if method not in NATIVE_METHODS or not _MODEL.fullmatch(model):
            return gemini_error(404, f"Method not found: {redact(request.url.path)}")
        return await gateway.handle(request, route=method, openai=False, model=model)

    async def native_get(request: Request) -> Response:
        model = request.path_params.get("model")
        if model is not None and not _MODEL.fullmatch(model):
            return gemini_error(404, "Model not found.")
        return await gateway.handle(request, route="models", openai=False, model=model)

    async def openai_route(request: Request) -> Response:
        path = request.path_params["path"]
        if path.rstrip("/") not in OPENAI_PATHS and not path.startswith("models/"):
            return gemini_error(404, f"Method not found: {redact(request.url.path)}")
        model = path.removeprefix("models/") if path.startswith("models/") else None
        return await gateway.handle(request, route=f"openai/{path.split('/')[0]}",
                                    openai=True, model=model)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        try:
            usable = await anyio.to_thread.run_sync(gateway.access.keys_usable)
        except Exception:  # noqa: BLE001 - metrics still answer without the database
            usable = None
        return PlainTextResponse(gateway.metrics.render(usable),
                                 media_type="text/plain; version=0.0.4")

    routes = [Route("/healthz", healthz), Route("/metrics", metrics)]
    for version in ("v1beta", "v1"):
        routes += [
            Route(f"/{version}/models", native_get, methods=["GET"]),
            Route(f"/{version}/models/{{model_method}}", native_model, methods=["POST"]),
            Route(f"/{version}/models/{{model}}", native_get, methods=["GET"]),
            Route(f"/{version}/openai/{{path:path}}", openai_route, methods=["GET", "POST"]),
        ]
    return routes


def create_app(config: GatewayConfig | None = None, *, settings: Settings | None = None,
               pool: KeyPool | None = None) -> Starlette:
    """The gateway as an ASGI app. By default everything comes from the app's configuration
    (DATABASE_URL or the embedded server, the master key, GEMINI_API_BASE_URL); the pool,
    the token statements and the one HTTP client are made in the lifespan."""
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        the_pool = pool
        if the_pool is None:
            from lib.runtime import build_runtime
            loaded = settings or Settings.load()
            runtime = await anyio.to_thread.run_sync(
                lambda: build_runtime(settings=loaded, apply_migrations=False))
            the_pool = KeyPool(runtime, connections=DB_THREADS)
            if gateway.config is None:
                gateway.config = GatewayConfig.from_settings(loaded)
        if gateway.config is None:
            raise ValueError("create_app(pool=...) needs a GatewayConfig")
        gateway.attach(the_pool, Access(the_pool.engine, connections=DB_THREADS))
        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=200)
        async with httpx2.AsyncClient(limits=limits, follow_redirects=False,
                                     trust_env=False) as client:
            gateway.client = client
            try:
                yield
            finally:
                gateway.access.close()
                if pool is None:
                    the_pool.close()

    return Starlette(routes=_routes(gateway), lifespan=lifespan)
