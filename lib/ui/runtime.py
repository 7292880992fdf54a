"""The process-wide Runtime, built once per Streamlit server."""

from __future__ import annotations

import os

import streamlit as st

from lib.runtime import Runtime, build_runtime
from lib.signin import CookieSettings, load_cookie_settings


def streamlit_secrets() -> dict[str, str]:
    """st.secrets as a plain dict; empty when no secrets.toml exists (st.secrets would raise)."""
    try:
        return {k: v for k, v in st.secrets.to_dict().items() if isinstance(v, str | int)}
    except (FileNotFoundError, OSError):
        return {}
    except Exception:  # noqa: BLE001 - Streamlit raises its own error for a missing file
        return {}


@st.cache_resource(show_spinner="Connecting to the database…")
def _runtime(database_url: str) -> Runtime:
    # Keyed by DATABASE_URL so tests that switch databases get their own runtime.
    return build_runtime(secrets=streamlit_secrets())


def get_runtime() -> Runtime:
    return _runtime(os.environ.get("DATABASE_URL", ""))


@st.cache_resource(show_spinner=False)
def _cookie_settings(database_url: str, _runtime: Runtime) -> CookieSettings:
    return load_cookie_settings(_runtime.settings)


def get_cookie_settings(runtime: Runtime) -> CookieSettings:
    """Cookie name, signing key (a dev key is generated once), expiry, login sleep."""
    return _cookie_settings(os.environ.get("DATABASE_URL", ""), runtime)
