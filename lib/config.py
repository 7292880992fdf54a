"""One settings object: environment first, then st.secrets (passed in by the app)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.engine import data_dir

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
    "GEMINI_API_BASE_URL": "https://generativelanguage.googleapis.com",
}


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
