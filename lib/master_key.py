"""Where the master key comes from: env, Streamlit secrets, or a dev-only key file."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lib.crypto import (
    GENERATE_HINT,
    MASTER_KEY_ENV,
    MasterKey,
    MasterKeyError,
    generate_master_key_b64,
)
from lib.secret_files import publish_secret_file

DEV_KEY_FILENAME = "master.key"
# 32 random bytes hold ~30 distinct values; fewer than this is a hand-made or patterned key.
MIN_DISTINCT_BYTES = 16

log = logging.getLogger("gemini_keys")


def _secret(secrets: Mapping[str, Any] | None, name: str) -> Any:
    # st.secrets raises a FileNotFoundError subclass when no secrets.toml exists; any other
    # error (e.g. a broken secrets.toml) must surface rather than fall back to the dev key.
    if secrets is None:
        return None
    try:
        return secrets.get(name)
    except FileNotFoundError:
        return None


def _create_dev_key(path: Path) -> None:
    if publish_secret_file(path, generate_master_key_b64()):
        log.warning(
            "DEVELOPMENT master key generated at %s; set %s in production "
            "(keys encrypted with this file are unreadable without it)",
            path,
            MASTER_KEY_ENV,
        )


def _read_dev_key(path: Path) -> MasterKey:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise MasterKeyError(f"development master key {path} is not a regular file")
    if os.name != "nt" and mode & 0o077:
        raise MasterKeyError(
            f"development master key {path} has permissions {stat.S_IMODE(mode):04o}; "
            f"it must be readable by its owner only: chmod 600 {path}"
        )
    return MasterKey.from_base64(path.read_text(encoding="ascii"), source=str(path))


def refuse_weak_key(master: MasterKey, data_dir: Path, source: str) -> None:
    """Production only: refuse a patterned key or the generated development key."""
    if len(set(master.key)) < MIN_DISTINCT_BYTES:
        raise MasterKeyError(f"{source} is not random enough to be a master key; {GENERATE_HINT}")
    path = data_dir / DEV_KEY_FILENAME
    try:
        dev = MasterKey.from_base64(path.read_text(encoding="ascii"), source=str(path))
    except (OSError, MasterKeyError):
        return
    if dev.key == master.key:
        raise MasterKeyError(
            f"{source} is the generated DEVELOPMENT key from {path}; production needs its "
            f"own key; {GENERATE_HINT}")


def load_master_key(
    *,
    env: Mapping[str, str],
    secrets: Mapping[str, Any] | None,
    data_dir: Path,
    allow_dev_default: bool,
) -> tuple[MasterKey, bool]:
    """Return (master key, is_dev_default) from env, secrets, or data_dir/master.key.

    The dev file is used (and created) only when allow_dev_default is true; without it
    (production) a patterned key, or one equal to the development key file, is refused.

    The returned key has version 1: the database's gemini_master_key_check row holds the
    version in force, and lib.runtime.verify_master_key applies it.
    """
    for source, lookup in (
        ("environment", env.get),
        ("secrets", lambda n: _secret(secrets, n)),
    ):
        value = lookup(MASTER_KEY_ENV)
        # Empty means unset (Settings lists every name, with "" for the unset ones).
        if value is not None and str(value).strip():
            master = MasterKey.from_base64(value, source=f"{MASTER_KEY_ENV} ({source})")
            if not allow_dev_default:
                refuse_weak_key(master, data_dir, f"{MASTER_KEY_ENV} ({source})")
            return master, False
    if not allow_dev_default:
        raise MasterKeyError(
            f"no master key configured: set {MASTER_KEY_ENV} in the environment or in "
            f".streamlit/secrets.toml; {GENERATE_HINT}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_KEY_FILENAME
    if not path.exists():
        _create_dev_key(path)
    else:
        log.warning(
            "using DEVELOPMENT master key from %s; set %s in production",
            path,
            MASTER_KEY_ENV,
        )
    return _read_dev_key(path), True
