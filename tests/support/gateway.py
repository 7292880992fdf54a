"""A real gateway for tests: uvicorn serving lib.gateway in a thread (create_app, the app's
configuration from the test's environment), or `serve-gateway` in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import uvicorn

from db.session import Actor, session_scope
from lib.gateway import GatewayConfig, create_app
from lib.runtime import build_runtime
from lib.settings import Settings
from lib.tokens import create_token
from tests.support.databases import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_gateway(upstream: str, **config: object) -> Iterator[str]:
    """The gateway on 127.0.0.1:<free port> until the block ends; yields its base URL."""
    settings = Settings.load()
    gateway_config = replace(GatewayConfig.from_settings(settings), upstream=upstream,
                             **config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(gateway_config, settings=settings), host="127.0.0.1", port=port,
        lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def gateway_process(upstream: str, *args: str) -> Iterator[str]:
    """`python -m lib.cli serve-gateway` in its own process (the test's environment)."""
    port = free_port()
    env = {**os.environ, "GEMINI_API_BASE_URL": upstream}
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "lib.cli", "serve-gateway", "--port", str(port), *args],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve-gateway did not start: "
                                   + (process.stderr.read() or b"").decode()[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def new_token(name: str = "svc", models: str | None = None) -> str:
    """A live access token, created as the CLI would."""
    runtime = build_runtime(apply_migrations=False)
    with session_scope(Actor.service("cli"), engine=runtime.engine) as session:
        return create_token(session, name=name, models=models)[1]


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until true or `timeout` seconds pass (for work that happens after
    a response went out, e.g. recording)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
