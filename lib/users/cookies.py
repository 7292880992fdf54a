"""The sign-in cookie's settings: its name, signing key (a development key is generated once
under the data directory), lifetime, attributes, and the origins that may use it."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from lib.errors import ConfigurationError
from lib.secret_files import publish_secret_file, read_secret_file
from lib.settings import (
    GENERATE_COOKIE_KEY_HINT,
    MIN_COOKIE_KEY_BYTES,
    Settings,
    cookie_key_problem,
    normalise_origin,
)

log = logging.getLogger("gemini_keys")

COOKIE_NAME = "gemini_keys_auth"
COOKIE_KEY_FILENAME = "cookie.key"


@dataclass(frozen=True)
class CookieSettings:
    """The cookie is always HttpOnly and SameSite=Strict (lib/ui/asgi.py sets it)."""

    name: str
    key: str = field(repr=False)
    expiry_days: float  # 0: a browser-session cookie that never restores a sign-in
    login_sleep_seconds: float  # a pause before each password check
    dev_key: bool  # generated under the data directory
    secure: bool = False  # production: sent over HTTPS only
    allowed_origins: tuple[str, ...] = ()  # besides the app's own origin

    @property
    def remembered(self) -> bool:
        """Whether the cookie outlives the browser session and signs a reload back in."""
        return self.expiry_days > 0

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Whether a browser connection from `origin` may use the cookie.

        A page on another port of the same host is another origin but the same "site": the
        browser sends it our cookie along with its websocket. So the cookie signs a
        connection in only when the browser says the page is ours: its Origin is the
        origin of the Host it connected to (same scheme-less host and port), or one listed
        in GEMINI_KEYS_ALLOWED_ORIGINS (a reverse proxy that rewrites Host). No Origin
        (not a browser) is no.
        """
        normal = normalise_origin(origin) if origin else None
        if normal is None:
            return False
        if normal in self.allowed_origins:
            return True
        if not host or any(c in host for c in "/@?#\\ "):
            return False
        return normal in {normalise_origin(f"{scheme}://{host}") for scheme in ("http", "https")}


def _create_dev_cookie_key(path: Path) -> None:
    if publish_secret_file(path, secrets.token_urlsafe(48)):
        log.warning("DEVELOPMENT cookie key generated at %s; set GEMINI_KEYS_COOKIE_KEY in "
                    "production", path)


def _read_dev_cookie_key(path: Path) -> str:
    key = read_secret_file(path, "development cookie key")
    if len(key.encode()) < MIN_COOKIE_KEY_BYTES:
        raise ConfigurationError(f"development cookie key {path} is too short; delete it "
                                 "and restart to generate a new one")
    return key


def cookie_key(settings: Settings) -> tuple[str, bool]:
    """(key, is_dev): GEMINI_KEYS_COOKIE_KEY, or in development a generated key file."""
    configured = settings.cookie_key
    if configured:
        problem = cookie_key_problem(configured)
        if problem and settings.production:
            raise ConfigurationError(problem)
        if problem:
            log.warning("%s; it would be refused in production", problem)
        return configured, False
    if settings.production:
        raise ConfigurationError("GEMINI_KEYS_ENV=production needs GEMINI_KEYS_COOKIE_KEY; "
                                 f"generate one with {GENERATE_COOKIE_KEY_HINT}")
    directory = settings.data_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / COOKIE_KEY_FILENAME
    if not path.exists():
        _create_dev_cookie_key(path)
    return _read_dev_cookie_key(path), True


def load_cookie_settings(settings: Settings) -> CookieSettings:
    key, is_dev = cookie_key(settings)
    return CookieSettings(name=COOKIE_NAME, key=key, expiry_days=settings.cookie_expiry_days,
                          login_sleep_seconds=settings.login_sleep_seconds, dev_key=is_dev,
                          secure=settings.production,
                          allowed_origins=settings.allowed_origins)
