"""Sending webhooks off the request path: one bounded queue and one worker thread per process.

`Notifier.submit(event)` never blocks and never raises: an event that is filtered out, a
duplicate within its window (in this process) or one that finds the queue full returns at
once (drops are counted and logged). The worker then, per event:
1. claims (dedupe_key) in gemini_notification_claims with INSERT … ON CONFLICT DO UPDATE …
   WHERE the previous claim has expired, so of several processes that saw the same event in
   the same window exactly one sends it (if the database cannot be asked, it sends anyway:
   a duplicate beats silence);
2. POSTs it to every URL, signed when a secret is set, retrying network errors, 429 and
   5xx with doubling delays up to max_attempts; other answers are final;
3. releases the claim when no URL took it, so a later occurrence may try again.
Every send and every failure is logged with the URL's secret parts hidden.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine, text

from db.session import Actor, session_scope
from lib.notify.events import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Event,
    body_of,
    redacted_url,
    signature,
)
from lib.redact import remember_secret
from lib.settings import Settings, webhook_url_problem

log = logging.getLogger("gemini_keys.notify")
MAX_RETRY_DELAY = 60.0
EXIT_FLUSH_SECONDS = 10.0  # how long a finishing process (a CLI command) waits for its sends
USER_AGENT = "gemini-key-manager-webhooks/1"
ACTOR = Actor.service("system")
CLAIM = text("""
INSERT INTO gemini_notification_claims AS c (dedupe_key, event_id, claimed_at, expires_at)
VALUES (:key, :event_id, now() AT TIME ZONE 'UTC',
        coalesce(CAST(:until AS timestamp),
                 now() AT TIME ZONE 'UTC' + make_interval(secs => :window)))
ON CONFLICT (dedupe_key) DO UPDATE
  SET event_id = EXCLUDED.event_id, claimed_at = EXCLUDED.claimed_at,
      expires_at = EXCLUDED.expires_at
  WHERE c.expires_at <= EXCLUDED.claimed_at
RETURNING c.event_id""")
PRUNE = text("DELETE FROM gemini_notification_claims "
             "WHERE expires_at < now() AT TIME ZONE 'UTC' - interval '1 day'")
RELEASE = text("DELETE FROM gemini_notification_claims "
               "WHERE dedupe_key = :key AND event_id = :event_id")


@dataclass(frozen=True)
class WebhookConfig:
    urls: tuple[str, ...]
    format: str
    events: frozenset[str]
    secret: str
    dedupe_seconds: float
    timeout_seconds: float
    max_attempts: int
    retry_seconds: float
    queue_size: int
    min_usable_keys: int  # fewer usable keys than this: pool.few_usable_keys

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        return cls(settings.webhook_urls, settings.webhook_format,
                   frozenset(settings.webhook_events), settings.webhook_secret,
                   settings.webhook_dedupe_seconds, settings.webhook_timeout_seconds,
                   settings.webhook_max_attempts, settings.webhook_retry_seconds,
                   settings.webhook_queue_size, settings.min_usable_keys)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A receiver that redirects gets no second request (nor our signature) elsewhere.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
_STOP = object()


class Notifier:
    """The queue and worker of one process (see the module docstring)."""

    def __init__(self, config: WebhookConfig, engine: Engine | None) -> None:
        for url in config.urls:
            if webhook_url_problem(url):
                raise ValueError(f"webhook URL {redacted_url(url)!r}: "
                                 f"{webhook_url_problem(url)}")
        self.config = config
        self.engine = engine
        # queued, duplicate, dropped, claimed_elsewhere, sent, retried, failed
        self.counts: Counter[str] = Counter()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)
        self._seen: dict[str, float] = {}  # dedupe_key -> monotonic expiry (this process)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def wants(self, kind: str) -> bool:
        return kind in self.config.events

    # -- the caller's side (never blocks, never raises) --------------------------------------

    def submit(self, event: Event) -> bool:
        """Queue `event` for sending; False when filtered, a duplicate, or dropped."""
        if not self.wants(event.kind) or self._stopping.is_set():
            return False
        if not self._first_in_window(event):
            self.counts["duplicate"] += 1
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:  # not sent: a later occurrence in the window may try again
                self._seen.pop(event.dedupe_key, None)
            self.counts["dropped"] += 1
            log.warning("webhook queue full (%d): dropped %s %s (%d dropped so far)",
                        self.config.queue_size, event.kind, event.id, self.counts["dropped"])
            return False
        self.counts["queued"] += 1
        return True

    def _first_in_window(self, event: Event) -> bool:
        now = time.monotonic()
        if event.dedupe_until is not None:
            window = (event.dedupe_until - event.occurred_at).total_seconds()
        else:
            window = self.config.dedupe_seconds
        if window <= 0:
            return True
        with self._lock:
            if self._seen.get(event.dedupe_key, 0.0) > now:
                return False
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            self._seen[event.dedupe_key] = now + window
        return True

    # -- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, Event)
                self._deliver(item)
            except Exception:  # noqa: BLE001 - the worker must outlive any one event
                log.exception("webhook worker failed on an event")
            finally:
                self._queue.task_done()

    def _deliver(self, event: Event) -> None:
        if not self._claim(event):
            self.counts["claimed_elsewhere"] += 1
            log.info("webhook %s %s already sent by another process in this window",
                     event.kind, event.dedupe_key)
            return
        body = body_of(event, self.config.format)
        delivered = [self._send(url, event, body) for url in self.config.urls]
        if not any(delivered):
            self._release(event)

    def _claim(self, event: Event) -> bool:
        if self.engine is None or (self.config.dedupe_seconds <= 0
                                   and event.dedupe_until is None):
            return True
        try:
            with session_scope(ACTOR, engine=self.engine) as session:
                session.execute(PRUNE)
                return session.execute(CLAIM, {
                    "key": event.dedupe_key[:500], "event_id": event.id,
                    "until": event.dedupe_until,
                    "window": self.config.dedupe_seconds}).first() is not None
        except Exception as error:  # noqa: BLE001 - the database must not silence alerts
            log.warning("webhook dedupe claim failed (%s); sending %s anyway",
                        type(error).__name__, event.kind)
            return True

    def _release(self, event: Event) -> None:
        if self.engine is None:
            return
        try:
            with session_scope(ACTOR, engine=self.engine) as session:
                session.execute(RELEASE, {"key": event.dedupe_key[:500],
                                          "event_id": event.id})
        except Exception as error:  # noqa: BLE001
            log.warning("webhook claim release failed (%s)", type(error).__name__)

    def _send(self, url: str, event: Event, body: bytes) -> bool:
        shown = redacted_url(url)
        delay = self.config.retry_seconds
        for attempt in range(1, self.config.max_attempts + 1):
            headers = {"Content-Type": "application/json; charset=utf-8",
                       "User-Agent": USER_AGENT, EVENT_HEADER: event.kind}
            if self.config.secret:
                timestamp = str(int(time.time()))
                headers[TIMESTAMP_HEADER] = timestamp
                headers[SIGNATURE_HEADER] = signature(self.config.secret, timestamp, body)
            # http(s) only: checked in __init__ (urllib would also open file:// and ftp://)
            request = urllib.request.Request(  # noqa: S310
                url, data=body, headers=headers, method="POST")
            problem = ""
            try:
                with _OPENER.open(request, timeout=self.config.timeout_seconds) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
                error.close()
            except (OSError, ValueError) as error:  # URLError, timeouts, refused connections
                status = None
                problem = type(getattr(error, "reason", error)).__name__
            if status is not None and 200 <= status < 300:
                self.counts["sent"] += 1
                log.info("webhook %s %s sent to %s (HTTP %d, attempt %d)",
                         event.kind, event.id, shown, status, attempt)
                return True
            what = f"HTTP {status}" if status is not None else problem
            retry = status is None or status == 429 or status >= 500
            if not retry or attempt == self.config.max_attempts:
                self.counts["failed"] += 1
                log.warning("webhook %s %s to %s failed: %s after %d attempt(s)%s",
                            event.kind, event.id, shown, what, attempt,
                            "" if retry else " (not retried)")
                return False
            self.counts["retried"] += 1
            log.info("webhook %s %s to %s: %s (attempt %d), retrying in %.1fs",
                     event.kind, event.id, shown, what, attempt, delay)
            if self._stopping.wait(delay):
                self.counts["failed"] += 1
                log.warning("webhook %s %s to %s abandoned: the process is exiting",
                            event.kind, event.id, shown)
                return False
            delay = min(delay * 2, MAX_RETRY_DELAY)
        return False

    # -- lifecycle ----------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event has been handled (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = EXIT_FLUSH_SECONDS) -> None:
        """Let queued events go out for up to `timeout`, then stop the worker."""
        if not self.flush(timeout):
            left = self._queue.qsize()
            log.warning("webhooks: stopping with %d event(s) not sent", left)
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._thread.join(timeout=1)


_current: Notifier | None = None
_current_lock = threading.Lock()


def configure(settings: Settings, engine: Engine | None) -> Notifier | None:
    """Start (or replace, or stop) this process's notifier from settings; None when no URL
    is set. lib.runtime calls it once per process start."""
    global _current
    config = WebhookConfig.from_settings(settings)
    for url in config.urls:  # a URL's path and query tokens, wherever they might show up
        parts = urllib.parse.urlsplit(url)
        for part in re.split(r"[/?&=#;]", f"{parts.path}?{parts.query}"):
            remember_secret(part)
    remember_secret(config.secret)
    with _current_lock:
        old = _current
        if old is not None and old.config == config and old.engine is engine:
            return old
        _current = Notifier(config, engine) if config.urls and config.events else None
    if old is not None:
        old.close(timeout=1)
    if _current is not None:
        log.info("webhooks on: %s (%s) for %s", ", ".join(map(redacted_url, config.urls)),
                 config.format, ", ".join(sorted(config.events)))
    return _current


def current() -> Notifier | None:
    return _current


def shutdown(timeout: float = EXIT_FLUSH_SECONDS) -> None:
    """Send what is queued (for up to `timeout`) and stop; also runs at interpreter exit."""
    global _current
    with _current_lock:
        notifier, _current = _current, None
    if notifier is not None:
        notifier.close(timeout)


atexit.register(shutdown)
