"""Gateway access tokens: who may call the gateway (public API).

    from lib.tokens import create_token, list_tokens, revoke_token

A token is "gkat_" + 43 urlsafe random characters (256 bits); only its SHA-256 hash is
stored, with its first characters for recognising it. Every change is audited in its own
transaction; the gateway's per-request statements are VERIFY_SQL and USAGE_SQL.
"""

from lib.tokens.store import (
    MAX_EXPIRES_DAYS,
    USAGE_SQL,
    VERIFY_SQL,
    TokenSummary,
    create_token,
    generate_token,
    hash_token,
    list_tokens,
    normalise_models,
    resolve_token,
    revoke_token,
    token_from_request_value,
)

__all__ = ["MAX_EXPIRES_DAYS", "USAGE_SQL", "VERIFY_SQL", "TokenSummary", "create_token",
           "generate_token", "hash_token", "list_tokens", "normalise_models", "resolve_token",
           "revoke_token", "token_from_request_value"]
