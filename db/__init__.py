"""The one shared database module: engine, session scope, models, migrations."""

from db.engine import DatabaseUrls, get_engine, resolve_database_urls
from db.session import Actor, actor_of, session_scope

__all__ = ["Actor", "DatabaseUrls", "actor_of", "get_engine", "resolve_database_urls",
           "session_scope"]
