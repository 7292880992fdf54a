"""The one shared database module: engine, session scope, models, migrations."""

from db.engine import get_engine, resolve_database_url
from db.session import Actor, actor_of, session_scope

__all__ = ["Actor", "actor_of", "get_engine", "resolve_database_url", "session_scope"]
