"""A real local HTTP receiver for webhooks (http.server in a daemon thread).

It records every POST (path, headers, body) and answers with the statuses it was told to
(`answer(500, 500, 200)`: one per request, the last repeats). `hold()` makes handlers wait
until `release()`, to fill the sender's queue. The tests wait for requests with `wait_for`
(a bound, not a timing assertion) and flush the sender before asserting that nothing came.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self

WAIT_SECONDS = 20.0
SECRET = "receiver-shared-hmac-0123456789"
# Settings for a sender pointed at a receiver: signed, quick retries.
FAST = {"GEMINI_KEYS_WEBHOOK_SECRET": SECRET, "GEMINI_KEYS_WEBHOOK_RETRY_SECONDS": "0.01",
        "GEMINI_KEYS_WEBHOOK_TIMEOUT_SECONDS": "5"}


class Delivery(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self._answers: deque[int] = deque([200])
        self._received: list[Delivery] = []
        self._arrived = 0  # requests read, answered or still held
        self._changed = threading.Condition()
        self._gate = threading.Event()
        self._gate.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def answer(self, *statuses: int) -> None:
        with self._changed:
            self._answers = deque(statuses)

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def received(self) -> list[Delivery]:
        with self._changed:
            return list(self._received)

    def accepted(self) -> list[Delivery]:
        return [d for d in self.received if 200 <= d.status < 300]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The generic payloads accepted so far (optionally of one kind)."""
        found = [d.json() for d in self.accepted()]
        return [e for e in found if kind is None or e.get("event") == kind]

    def wait_for(self, count: int, *, kind: str | None = None) -> list[Delivery]:
        """Block until `count` requests (of event header `kind`) have arrived; return all."""
        def matching() -> list[Delivery]:
            return [d for d in self._received
                    if kind is None or d.headers.get("x-gemini-keys-event") == kind]
        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= count, WAIT_SECONDS):
                raise AssertionError(f"expected {count} webhook(s) of {kind or 'any kind'}, "
                                     f"got {len(matching())}: {self._received!r}")
            return matching()

    def wait_arrived(self, count: int) -> None:
        """Block until `count` requests have arrived (held ones included)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._arrived >= count, WAIT_SECONDS):
                raise AssertionError(f"expected {count} request(s), got {self._arrived}")

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/T000/B000/s3cr3tpathpart"

    def _next_status(self) -> int:
        with self._changed:
            return self._answers.popleft() if len(self._answers) > 1 else self._answers[0]

    def _record(self, delivery: Delivery) -> None:
        with self._changed:
            self._received.append(delivery)
            self._changed.notify_all()

    def __enter__(self) -> Self:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._changed:
                    owner._arrived += 1
                    owner._changed.notify_all()
                owner._gate.wait(WAIT_SECONDS)
                status = owner._next_status()
                # Recorded before answering: once the sender has its answer, tests see it.
                owner._record(Delivery(self.path, {k.lower(): v for k, v in
                                                   self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._server is not None and self._thread is not None
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
