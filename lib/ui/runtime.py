"""The process-wide Runtime and cookie settings, built once per Streamlit server (per set of
settings, so tests that switch databases get their own)."""

from __future__ import annotations

import streamlit as st

from lib.runtime import Runtime, build_runtime
from lib.settings import Settings
from lib.users.cookies import CookieSettings, load_cookie_settings


def streamlit_secrets() -> dict[str, str]:
    """st.secrets as a plain dict; empty when no secrets.toml exists (st.secrets would raise)."""
    try:
        return {k: v for k, v in st.secrets.to_dict().items() if isinstance(v, str | int)}
    except (FileNotFoundError, OSError):
        return {}
    except Exception:  # noqa: BLE001 - Streamlit raises its own error for a missing file
        return {}


@st.cache_resource(show_spinner="Connecting to the database…")
def _runtime(settings_hash: int, _settings: Settings) -> Runtime:
    return build_runtime(settings=_settings)


def get_runtime() -> Runtime:
    settings = Settings.load(secrets=streamlit_secrets())
    return _runtime(hash(settings), settings)


@st.cache_resource(show_spinner=False)
def _cookie_settings(settings_hash: int, _settings: Settings) -> CookieSettings:
    return load_cookie_settings(_settings)


def get_cookie_settings(runtime: Runtime) -> CookieSettings:
    """Cookie name, signing key (a dev key is generated once), expiry, login sleep."""
    return _cookie_settings(hash(runtime.settings), runtime.settings)
