"""One settings object: environment first, then st.secrets (passed in by the app)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.engine import data_dir
from lib.errors import ConfigurationError

# Every setting the product reads, with its default; the README's configuration table.
DEFAULTS: dict[str, str] = {
    "DATABASE_URL": "",                   # empty: embedded PostgreSQL under .data/pg
    "GEMINI_KEYS_ENV": "development",     # "production" refuses generated dev secrets
    "GEMINI_KEYS_DATA_DIR": "",           # empty: ./.data
    "GEMINI_KEYS_MASTER_KEY": "",         # base64 of 32 bytes
    "GEMINI_KEYS_NEW_MASTER_KEY": "",     # only for rotate-master-key
    "GEMINI_KEYS_COOKIE_KEY": "",         # >= 32 random bytes, signs the sign-in cookie
    "GEMINI_KEYS_COOKIE_EXPIRY_DAYS": "1",
    "GEMINI_KEYS_LOGIN_SLEEP_SECONDS": "0.7",
    "GEMINI_KEYS_BCRYPT_ROUNDS": "12",    # cost of new password hashes (10-16 in production)
    "GEMINI_API_BASE_URL": "https://generativelanguage.googleapis.com",
    "GEMINI_KEYS_LOG_LEVEL": "INFO",
    "GEMINI_KEYS_MIN_USABLE_KEYS": "2",   # Overview alerts when fewer keys are usable
}
ENVIRONMENTS = ("development", "production")
MIN_COOKIE_KEY_BYTES = 32
# Substrings of values copied from examples or docs instead of a real secret (lower-cased).
# All are 5+ characters so a truly random value almost never contains one by chance.
PLACEHOLDER_MARKERS = ("changeme", "change-me", "change_me", "placeholder", "example",
                       "replace", "your-", "your_", "secret", "password", "sample")
# The example secrets.toml's DATABASE_URL, pasted unchanged.
_URL_PLACEHOLDERS = (":password@", "[your-password]", "db.project.supabase.co")


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, str] = field(repr=False)

    @classmethod
    def load(cls, env: Mapping[str, str] = os.environ,
             secrets: Mapping[str, Any] | None = None) -> Settings:
        """Environment beats secrets beats defaults."""
        values = dict(DEFAULTS)
        for name in DEFAULTS:
            if secrets is not None and name in secrets and str(secrets[name]).strip():
                values[name] = str(secrets[name]).strip()
            if env.get(name, "").strip():
                values[name] = env[name].strip()
        # A typo ("prod") must not quietly mean development mode and its generated secrets.
        if values["GEMINI_KEYS_ENV"].lower() not in ENVIRONMENTS:
            raise ConfigurationError(
                f"GEMINI_KEYS_ENV must be one of {', '.join(ENVIRONMENTS)} "
                f"(got {values['GEMINI_KEYS_ENV'][:20]!r})")
        return cls(values)

    def get(self, name: str) -> str:
        return self.values[name]

    @property
    def production(self) -> bool:
        return self.values["GEMINI_KEYS_ENV"].lower() == "production"

    @property
    def data_dir(self) -> Path:
        return data_dir(self.values)

    @property
    def env_for_db(self) -> dict[str, str]:
        """What db.engine.resolve_database_url reads."""
        return {k: self.values[k] for k in ("DATABASE_URL", "GEMINI_KEYS_DATA_DIR")}


def looks_like_placeholder(value: str) -> bool:
    """Text pasted from an example, or too repetitive to be random."""
    lowered = value.strip().lower()
    return (any(marker in lowered for marker in PLACEHOLDER_MARKERS)
            or (lowered.startswith("<") and lowered.endswith(">"))
            or len(set(value)) < 8)


def check_production_secrets(settings: Settings) -> None:
    """In production, refuse placeholder or short secrets; messages never echo a value.

    The master key itself is checked where it is loaded (lib.master_key), since it may also
    come from the development key file; here: cookie key, master key shape, DATABASE_URL.
    """
    if not settings.production:
        return
    master = settings.get("GEMINI_KEYS_MASTER_KEY")
    if not master:
        raise ConfigurationError(
            "GEMINI_KEYS_ENV=production needs GEMINI_KEYS_MASTER_KEY (the development key "
            "generated under the data directory is refused in production)")
    if looks_like_placeholder(master):
        raise ConfigurationError(
            "GEMINI_KEYS_MASTER_KEY looks like a placeholder, not 32 random bytes in base64")
    cookie = settings.get("GEMINI_KEYS_COOKIE_KEY")
    if not cookie:
        raise ConfigurationError(
            "GEMINI_KEYS_ENV=production needs GEMINI_KEYS_COOKIE_KEY (at least "
            f"{MIN_COOKIE_KEY_BYTES} random bytes; it signs the sign-in cookie)")
    if len(cookie.encode("utf-8")) < MIN_COOKIE_KEY_BYTES:
        raise ConfigurationError(
            f"GEMINI_KEYS_COOKIE_KEY is too short ({len(cookie)} characters); use at least "
            f"{MIN_COOKIE_KEY_BYTES} random bytes, e.g. "
            'python -c "import secrets;print(secrets.token_urlsafe(48))"')
    if looks_like_placeholder(cookie):
        raise ConfigurationError(
            "GEMINI_KEYS_COOKIE_KEY looks like a placeholder, not random bytes")
    if cookie in _dev_secret_files(settings):
        raise ConfigurationError(
            "GEMINI_KEYS_COOKIE_KEY is a generated DEVELOPMENT key from the data directory; "
            "production needs its own")
    if cookie == master:
        raise ConfigurationError(
            "GEMINI_KEYS_COOKIE_KEY must differ from GEMINI_KEYS_MASTER_KEY (one secret, "
            "one purpose)")
    url = settings.get("DATABASE_URL").lower()
    if any(marker in url for marker in _URL_PLACEHOLDERS):
        raise ConfigurationError(
            "DATABASE_URL still holds the example's placeholders (PASSWORD / PROJECT): "
            "paste the connection string from your database provider")


def _dev_secret_files(settings: Settings) -> set[str]:
    """Contents of the development key files (master.key, cookie.key) under the data dir."""
    found = set()
    for name in ("master.key", "cookie.key"):
        try:
            found.add((settings.data_dir / name).read_text(encoding="ascii").strip())
        except (OSError, UnicodeDecodeError):
            continue
    return found
