"""Every setting the product reads, typed and checked once: environment first, then
`.streamlit/secrets.toml` (passed in by the app), then the defaults below.

Nothing else reads os.environ for configuration: a process loads Settings once (through
lib.runtime) and passes the typed values down.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from lib.errors import ConfigurationError
from lib.redact import redact

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
ENVIRONMENTS = ("development", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MIN_COOKIE_KEY_BYTES = 32
GENERATE_COOKIE_KEY_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
# Substrings of values copied from examples or docs instead of a real secret (lower-cased).
# All are 5+ characters so a truly random value almost never contains one by chance.
PLACEHOLDER_MARKERS = ("changeme", "change-me", "change_me", "placeholder", "example",
                       "replace", "your-", "your_", "secret", "password", "sample")
# The example secrets.toml's DATABASE_URL, pasted unchanged.
_URL_PLACEHOLDERS = (":password@", "[your-password]", "db.project.supabase.co")
DEV_SECRET_FILES = ("master.key", "cookie.key")  # generated under the data dir in development
# What webhooks may announce (lib/notify/events.py builds them); GEMINI_KEYS_WEBHOOK_EVENTS
# picks some, "all" (the default) means every one.
WEBHOOK_EVENTS = ("key.auto_disabled", "group.cooling_down", "tier.cooling_down",
                  "pool.few_usable_keys", "quota.near_limit", "master_key.rotated")
WEBHOOK_FORMATS = ("generic", "slack")
MIN_WEBHOOK_SECRET_LENGTH = 16


def _text(raw: str, name: str) -> str:
    del name  # every parser takes the setting's name, for its messages
    return raw


def _number(kind: Callable[[str], Any], minimum: float, maximum: float
            ) -> Callable[[str, str], Any]:
    def parse(raw: str, name: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ConfigurationError(f"{name} must be {what} (got {raw[:20]!r})") from None
        if not minimum <= value <= maximum:  # also refuses nan
            raise ConfigurationError(f"{name} must be between {minimum:g} and {maximum:g} "
                                     f"(got {raw[:20]!r})")
        return value
    return parse


def _environment(raw: str, name: str) -> str:
    # A typo ("prod") must not quietly mean development mode and its generated secrets.
    value = raw.lower()
    if value not in ENVIRONMENTS:
        raise ConfigurationError(f"{name} must be one of {', '.join(ENVIRONMENTS)} "
                                 f"(got {raw[:20]!r})")
    return value


def _log_level(raw: str, name: str) -> int:
    if raw.upper() not in LOG_LEVELS:
        raise ConfigurationError(f"{name} must be one of {', '.join(LOG_LEVELS)} "
                                 f"(got {raw[:20]!r})")
    return logging.getLevelName(raw.upper())


def http_base_url(url: str, name: str = "GEMINI_API_BASE_URL") -> str:
    """An http(s) base URL without its trailing slash (urllib would open file:// and friends;
    only HTTP(S) may carry a key). The message never shows credentials in the URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {redact(url)!r}")
    return url.rstrip("/")


def _base_url(raw: str, name: str) -> str:
    try:
        return http_base_url(raw, name)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def normalise_origin(origin: str) -> str | None:
    """scheme://host[:port] lower-cased, without a default port; None unless it is a plain
    http(s) origin (no path, query, user or fragment)."""
    try:
        parsed = urllib.parse.urlsplit(origin.strip())
        port = parsed.port
    except ValueError:
        return None
    if (parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username
            or parsed.password or parsed.path not in ("", "/") or parsed.query
            or parsed.fragment):
        return None
    host = parsed.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parsed.scheme]
    return f"{parsed.scheme}://{host}" + (f":{port}" if port and port != default else "")


def webhook_url_problem(url: str) -> str | None:
    """Why `url` cannot receive webhooks, or None (http(s) with a host, no user:password)."""
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "must be an http(s) URL"
    if parsed.username or parsed.password:
        return "must not carry user:password (sign with GEMINI_KEYS_WEBHOOK_SECRET instead)"
    return None


def _webhook_urls(raw: str, name: str) -> tuple[str, ...]:
    urls = []
    for item in raw.replace(",", " ").split():
        problem = webhook_url_problem(item)
        if problem:
            # The path and query of a Slack-style URL are its secret: name the host only.
            host = urllib.parse.urlsplit(item).netloc.rpartition("@")[2][:60]
            raise ConfigurationError(f"{name}: each URL {problem} (got one for {host!r})")
        urls.append(item)
    return tuple(urls)


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(raw: str, name: str) -> str:
        if raw.lower() not in choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(choices)} "
                                     f"(got {raw[:20]!r})")
        return raw.lower()
    return parse


def _webhook_events(raw: str, name: str) -> tuple[str, ...]:
    wanted = [item.strip().lower() for item in raw.split(",") if item.strip()]
    if not wanted or wanted == ["all"]:
        return WEBHOOK_EVENTS
    unknown = [item for item in wanted if item not in WEBHOOK_EVENTS]
    if unknown:
        raise ConfigurationError(f"{name} must be 'all' or a comma-separated list of "
                                 f"{', '.join(WEBHOOK_EVENTS)} (unknown: {unknown[0][:40]!r})")
    return tuple(event for event in WEBHOOK_EVENTS if event in wanted)


def _webhook_secret(raw: str, name: str) -> str:
    if raw and len(raw) < MIN_WEBHOOK_SECRET_LENGTH:
        raise ConfigurationError(f"{name} must be at least {MIN_WEBHOOK_SECRET_LENGTH} "
                                 f"characters (got {len(raw)}), or empty for unsigned webhooks")
    return raw


def _origins(raw: str, name: str) -> tuple[str, ...]:
    origins = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        origin = normalise_origin(item)
        if origin is None:
            raise ConfigurationError(f"{name} must list origins like https://keys.example.com "
                                     f"(scheme, host and port only; got {item[:60]!r})")
        origins.append(origin)
    return tuple(origins)


def _header_name(raw: str, name: str) -> str:
    if raw and not all(c.isalnum() or c == "-" for c in raw):
        raise ConfigurationError(f"{name} must be an HTTP header name like X-Forwarded-For "
                                 f"(got {raw[:40]!r})")
    return raw.lower()


def _data_dir(raw: str, name: str) -> Path:
    return Path(raw).expanduser() if raw else REPO_ROOT / ".data"


@dataclass(frozen=True)
class Setting:
    """One setting: its environment name, default (as text) and parser."""

    env: str
    default: str
    parse: Callable[[str, str], Any] = _text
    secret: bool = False


@dataclass(frozen=True)
class Settings:
    """The typed settings of one process (see SETTINGS for names, defaults and bounds)."""

    database_url: str = field(repr=False)        # the app's login; empty: embedded server
    owner_database_url: str = field(repr=False)  # migrations only; empty: DATABASE_URL
    environment: Literal["development", "production"]
    data_dir: Path                    # embedded database and development secrets
    master_key: str = field(repr=False)          # base64 of 32 bytes; empty: dev key file
    new_master_key: str = field(repr=False)      # only for rotate-master-key
    cookie_key: str = field(repr=False)          # signs the sign-in cookie
    cookie_expiry_days: float
    allowed_origins: tuple[str, ...]  # besides the app's own: where a browser may use the cookie
    client_address_header: str        # lower-cased; empty: the connection's peer address
    login_sleep_seconds: float
    bcrypt_rounds: int
    gemini_api_base_url: str
    log_level: int
    min_usable_keys: int
    webhook_urls: tuple[str, ...] = field(repr=False)  # empty: no notifications
    webhook_format: Literal["generic", "slack"]
    webhook_events: tuple[str, ...]
    webhook_secret: str = field(repr=False)    # HMAC-SHA256 key for the signature header
    webhook_dedupe_seconds: float     # the same event (per key, group, tier...) once per window
    webhook_timeout_seconds: float
    webhook_max_attempts: int
    webhook_retry_seconds: float      # first retry's delay; doubles per attempt (capped)
    webhook_queue_size: int
    rotation_test_delay: float        # hidden: seconds a rotation sleeps per batch (tests)
    setup_code_minutes: int           # how long the first-admin setup code is valid
    gateway_max_body_bytes: int       # the largest request body the gateway accepts (413)
    gateway_timeout_seconds: float    # a request's whole deadline, all attempts together
    gateway_connect_timeout_seconds: float  # connecting to Gemini, per attempt
    gateway_max_attempts: int         # keys tried per request (429/5xx/network failover)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None,
             secrets: Mapping[str, Any] | None = None) -> Settings:
        """Environment beats secrets beats defaults; every value parsed and checked here."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for attribute, setting in SETTINGS.items():
            raw = setting.default
            if str(_secret(secrets, setting.env) or "").strip():
                raw = str(_secret(secrets, setting.env)).strip()
            if env.get(setting.env, "").strip():
                raw = env[setting.env].strip()
            values[attribute] = setting.parse(raw, setting.env)
        if values["owner_database_url"] and not values["database_url"]:
            raise ConfigurationError(
                "DATABASE_OWNER_URL is set but DATABASE_URL is not: set DATABASE_URL to the "
                "app's login too (the owner's URL is used for migrations only)")
        minimum_rounds = 10 if values["environment"] == "production" else 4
        if values["bcrypt_rounds"] < minimum_rounds:
            raise ConfigurationError(f"GEMINI_KEYS_BCRYPT_ROUNDS must be a whole number from "
                                     f"{minimum_rounds} to 16 in {values['environment']}")
        return cls(**values)

    @property
    def production(self) -> bool:
        return self.environment == "production"


def _secret(secrets: Mapping[str, Any] | None, name: str) -> Any:
    # st.secrets raises a FileNotFoundError subclass when no secrets.toml exists: unset. Any
    # other error (e.g. a broken secrets.toml) must surface rather than fall back to a default.
    if secrets is None:
        return None
    try:
        return secrets.get(name)
    except FileNotFoundError:
        return None


SETTINGS: dict[str, Setting] = {
    "database_url": Setting("DATABASE_URL", "", secret=True),
    "owner_database_url": Setting("DATABASE_OWNER_URL", "", secret=True),
    "environment": Setting("GEMINI_KEYS_ENV", "development", _environment),
    "data_dir": Setting("GEMINI_KEYS_DATA_DIR", "", _data_dir),
    "master_key": Setting("GEMINI_KEYS_MASTER_KEY", "", secret=True),
    "new_master_key": Setting("GEMINI_KEYS_NEW_MASTER_KEY", "", secret=True),
    "cookie_key": Setting("GEMINI_KEYS_COOKIE_KEY", "", secret=True),
    "cookie_expiry_days": Setting("GEMINI_KEYS_COOKIE_EXPIRY_DAYS", "1", _number(float, 0, 365)),
    "allowed_origins": Setting("GEMINI_KEYS_ALLOWED_ORIGINS", "", _origins),
    "client_address_header": Setting("GEMINI_KEYS_CLIENT_ADDRESS_HEADER", "", _header_name),
    "login_sleep_seconds": Setting("GEMINI_KEYS_LOGIN_SLEEP_SECONDS", "0.7",
                                   _number(float, 0, 10)),
    "bcrypt_rounds": Setting("GEMINI_KEYS_BCRYPT_ROUNDS", "12", _number(int, 4, 16)),
    "gemini_api_base_url": Setting("GEMINI_API_BASE_URL", DEFAULT_GEMINI_BASE_URL, _base_url),
    "log_level": Setting("GEMINI_KEYS_LOG_LEVEL", "INFO", _log_level),
    "min_usable_keys": Setting("GEMINI_KEYS_MIN_USABLE_KEYS", "2", _number(int, 0, 100_000)),
    "webhook_urls": Setting("GEMINI_KEYS_WEBHOOK_URLS", "", _webhook_urls, secret=True),
    "webhook_format": Setting("GEMINI_KEYS_WEBHOOK_FORMAT", "generic", _one_of(WEBHOOK_FORMATS)),
    "webhook_events": Setting("GEMINI_KEYS_WEBHOOK_EVENTS", "all", _webhook_events),
    "webhook_secret": Setting("GEMINI_KEYS_WEBHOOK_SECRET", "", _webhook_secret, secret=True),
    "webhook_dedupe_seconds": Setting("GEMINI_KEYS_WEBHOOK_DEDUPE_SECONDS", "900",
                                      _number(float, 0, 7 * 86400)),
    "webhook_timeout_seconds": Setting("GEMINI_KEYS_WEBHOOK_TIMEOUT_SECONDS", "5",
                                       _number(float, 0.1, 60)),
    "webhook_max_attempts": Setting("GEMINI_KEYS_WEBHOOK_MAX_ATTEMPTS", "4", _number(int, 1, 10)),
    "webhook_retry_seconds": Setting("GEMINI_KEYS_WEBHOOK_RETRY_SECONDS", "2",
                                     _number(float, 0, 60)),
    "webhook_queue_size": Setting("GEMINI_KEYS_WEBHOOK_QUEUE_SIZE", "100",
                                  _number(int, 1, 10_000)),
    "setup_code_minutes": Setting("GEMINI_KEYS_SETUP_CODE_MINUTES", "60",
                                  _number(int, 1, 24 * 60)),
    "rotation_test_delay": Setting("GEMINI_KEYS_ROTATION_TEST_DELAY", "0", _number(float, 0, 60)),
    "gateway_max_body_bytes": Setting("GEMINI_GATEWAY_MAX_BODY_BYTES", str(20 << 20),
                                      _number(int, 1024, 1 << 30)),
    "gateway_timeout_seconds": Setting("GEMINI_GATEWAY_TIMEOUT_SECONDS", "600",
                                       _number(float, 0.1, 3600)),
    "gateway_connect_timeout_seconds": Setting("GEMINI_GATEWAY_CONNECT_TIMEOUT_SECONDS", "10",
                                               _number(float, 0.1, 600)),
    "gateway_max_attempts": Setting("GEMINI_GATEWAY_MAX_ATTEMPTS", "3", _number(int, 1, 10)),
}
assert set(SETTINGS) == {f.name for f in fields(Settings)}


# What a database server we start may inherit from us: where programs, libraries, locale and
# temporary files are. Nothing else, so no secret reaches the postmaster's environment.
SERVER_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
                      "XDG_RUNTIME_DIR", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SYSTEMROOT")


def server_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of `env` (default: the process environment) for a child server:
    no master key, cookie key or database URL, whatever else the process holds."""
    env = os.environ if env is None else env
    return {name: value for name, value in env.items()
            if name in SERVER_ENVIRONMENT or name.startswith("LC_")}


def load_settings(env: Mapping[str, str] | None = None,
                  secrets: Mapping[str, Any] | None = None) -> Settings:
    """Settings from `env` (default: the process environment) and optional st.secrets."""
    return Settings.load(env, secrets)


# -- secrets that must not be weak ------------------------------------------------------------

def looks_like_placeholder(value: str) -> bool:
    """Text pasted from an example, or too repetitive to be random."""
    lowered = value.strip().lower()
    return (any(marker in lowered for marker in PLACEHOLDER_MARKERS)
            or (lowered.startswith("<") and lowered.endswith(">"))
            or len(set(value)) < 8)


def cookie_key_problem(value: str) -> str | None:
    """Why a cookie key is too weak for production, or None (the message never echoes it)."""
    if len(value.encode("utf-8")) < MIN_COOKIE_KEY_BYTES:
        return (f"GEMINI_KEYS_COOKIE_KEY is too short ({len(value)} characters); use at least "
                f"{MIN_COOKIE_KEY_BYTES} random bytes, e.g. {GENERATE_COOKIE_KEY_HINT}")
    if looks_like_placeholder(value):
        return "GEMINI_KEYS_COOKIE_KEY looks like a placeholder, not random bytes"
    return None


def dev_secret_file_contents(data_dir: Path) -> set[str]:
    """Contents of the development key files (master.key, cookie.key) under the data dir."""
    found = set()
    for name in DEV_SECRET_FILES:
        try:
            found.add((data_dir / name).read_text(encoding="ascii").strip())
        except (OSError, UnicodeDecodeError):
            continue
    return found


def check_production_secrets(settings: Settings) -> None:
    """In production, refuse placeholder or short secrets; messages never echo a value.

    The master key's bytes are checked where it is decoded (lib.crypto.master_key); here:
    its text, the cookie key and DATABASE_URL.
    """
    if not settings.production:
        return
    master = settings.master_key
    if not master:
        raise ConfigurationError(
            "GEMINI_KEYS_ENV=production needs GEMINI_KEYS_MASTER_KEY (the development key "
            "generated under the data directory is refused in production)")
    if looks_like_placeholder(master):
        raise ConfigurationError(
            "GEMINI_KEYS_MASTER_KEY looks like a placeholder, not 32 random bytes in base64")
    cookie = settings.cookie_key
    if not cookie:
        raise ConfigurationError(
            "GEMINI_KEYS_ENV=production needs GEMINI_KEYS_COOKIE_KEY (at least "
            f"{MIN_COOKIE_KEY_BYTES} random bytes; it signs the sign-in cookie); generate one "
            f"with {GENERATE_COOKIE_KEY_HINT}")
    problem = cookie_key_problem(cookie)
    if problem:
        raise ConfigurationError(problem)
    if cookie in dev_secret_file_contents(settings.data_dir):
        raise ConfigurationError(
            "GEMINI_KEYS_COOKIE_KEY is a generated DEVELOPMENT key from the data directory; "
            "production needs its own")
    if cookie == master:
        raise ConfigurationError(
            "GEMINI_KEYS_COOKIE_KEY must differ from GEMINI_KEYS_MASTER_KEY (one secret, "
            "one purpose)")
    for name, url in (("DATABASE_URL", settings.database_url),
                      ("DATABASE_OWNER_URL", settings.owner_database_url)):
        if any(marker in url.lower() for marker in _URL_PLACEHOLDERS):
            raise ConfigurationError(
                f"{name} still holds the example's placeholders (PASSWORD / PROJECT): "
                "paste the connection string from your database provider")


def pass_to_children(attribute: str, value: Any) -> None:
    """Set a setting for this process's child processes (e.g. the gateway's workers, which
    load Settings themselves): the setting's environment variable, checked by its parser."""
    setting = SETTINGS[attribute]
    setting.parse(str(value), setting.env)
    os.environ[setting.env] = str(value)
