"""A freshly started server on a free port against its own new database, and headless Debian
Chromium for Playwright. Used by the fixtures in tests/e2e/conftest.py.

The server is `streamlit run app.py` (st.App serving dashboard.py behind the HTTP routes,
headers and lifespan of lib/ui/asgi.py and lib/ui/startup.py), as in production;
run_app(entry="dashboard.py") starts the dashboard script alone."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from db.engine import REPO_ROOT, get_engine
from db.migrate import upgrade
from db.session import Actor, session_scope
from tests.support.databases import TEST_BCRYPT_ROUNDS, app_login_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ADMIN_EMAIL = "e2e-admin@example.com"
ENTRY = "app.py"


@dataclass
class LiveApp:
    """A running app: where it answers, its database (database_url: the owner's, for the
    tests' reads; the app and env's CLI log in as the app's login), and a seeded admin."""

    base_url: str
    database_url: str
    admin_email: str
    admin_password: str = field(repr=False)
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def engine(self) -> Engine:
        return get_engine(self.database_url)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def skip_or_fail(reason: str) -> None:
    """Locally a missing browser skips; in CI (CI=true) browser tests must never be skipped."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the browser tests; .ci/run installs chromium)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base_url: str, process: subprocess.Popen, log_path: Path,
                 timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n"
                               + log_path.read_text(errors="replace")[-3000:])
        try:
            health = f"{base_url}/_stcore/health"  # http://127.0.0.1 only
            with urllib.request.urlopen(health, timeout=2) as response:  # noqa: S310
                if response.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("streamlit did not become healthy:\n"
                       + log_path.read_text(errors="replace")[-3000:])


def seed_admin(database_url: str, email: str, password: str) -> None:
    from lib.users.accounts import create_user

    with session_scope(Actor.service("cli"),
                       engine=get_engine(app_login_url(database_url))) as session:
        create_user(session, email=email, password=password, admin=True,
                    bcrypt_rounds=TEST_BCRYPT_ROUNDS)


@contextmanager
def run_app(database_url: str, data_dir: Path, *, extra_env: dict[str, str] | None = None,
            app_url: str | None = None, entry: str = ENTRY,
            with_admin: bool = True) -> Iterator[LiveApp]:
    """Migrate `database_url` (the owner's), seed an admin (unless not `with_admin`), start
    the server (`entry`); stop it afterwards. The server gets only the app's login
    (DATABASE_URL: `app_url`, by default the app's own login role), as in production."""
    upgrade(get_engine(database_url))
    password = "e2e " + secrets.token_urlsafe(18)
    if with_admin:
        seed_admin(database_url, ADMIN_EMAIL, password)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ,
           "DATABASE_URL": app_url or app_login_url(database_url),
           "DATABASE_OWNER_URL": "",  # the schema is migrated: the app never needs the owner
           "GEMINI_KEYS_ENV": "development",
           "GEMINI_KEYS_DATA_DIR": str(data_dir),
           "GEMINI_KEYS_MASTER_KEY": __import__("base64").b64encode(os.urandom(32)).decode(),
           "GEMINI_KEYS_COOKIE_KEY": secrets.token_urlsafe(48),
           "GEMINI_KEYS_LOGIN_SLEEP_SECONDS": "0",
           **(extra_env or {})}
    log_path = data_dir / "streamlit.log"
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", entry,
             "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_healthy(base_url, process, log_path)
        yield LiveApp(base_url, database_url, ADMIN_EMAIL, password, data_dir, log_path, env)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """Stop the server we started (its own process group, by id)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
