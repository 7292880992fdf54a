"""Errors a user can act on: the CLI prints them as one line, pages as st.error."""


class GeminiKeysError(Exception):
    """Base for every error whose message is safe and useful to show to the user."""


class InvalidInput(GeminiKeysError, ValueError):
    """Bad input; nothing was stored."""


class NotFound(GeminiKeysError, LookupError):
    """No such key or user (or RLS hides it)."""


class Forbidden(GeminiKeysError, PermissionError):
    """The actor may not do this (not an admin, last admin, locked account...)."""


class ConfigurationError(GeminiKeysError):
    """The deployment is misconfigured (secrets, database URL)."""


def refuse_nul(text: str, what: str) -> str:
    """`text`, unless it holds a NUL character: PostgreSQL can neither store nor compare one,
    and the driver's own error would surface as a crash."""
    if "\x00" in text:
        raise InvalidInput(f"The {what} contains a NUL character (\\0); remove it and try "
                           "again.")
    return text
