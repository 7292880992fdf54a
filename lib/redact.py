"""Redaction, the second line of defence: text that may hold a secret is scrubbed before it
reaches a log, an error message, an audit row or a page.

The code never puts key material into text on purpose; this catches the accident (a key inside
an exception message, a URL with key=..., a DATABASE_URL with its password).
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"
MESSAGE_LIMIT = 300  # the longest error message kept (audit rows, health results)

# One pass over the text. AIza... stays case-sensitive so ordinary words never match; the
# named groups keep the label ("Bearer ", "key=") so redacted logs still read sensibly.
_SECRET = re.compile(
    r"AIza[0-9A-Za-z_\-]{20,}"
    r"|(?P<bearer>(?i:\bbearer\s+))[A-Za-z0-9\-._~+/]+=*"
    r"|(?P<header>(?i:\bx-goog-api-key[\"']?\s*[:=]\s*[\"']?))[^\s\"',;}&]+"
    r"|(?P<param>(?i:\b(?:api[_-]?key|key|access_token)=))[^\s&\"'#]+"
)
# scheme://user:password@host -> scheme://user:[REDACTED]@host (DATABASE_URL and friends).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)[^@/\s]+(?=@)",
                           re.IGNORECASE)


def _redact_match(m: re.Match[str]) -> str:
    return (m.group("bearer") or m.group("header") or m.group("param") or "") + REDACTED


def redact(text: str) -> str:
    """Gemini keys, bearer tokens, key=... parameters and URL passwords -> [REDACTED]."""
    text = _SECRET.sub(_redact_match, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def clip_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line, redacted, at most `limit` characters (redacted before it is cut: a cut key
    could otherwise leave a prefix too short to match)."""
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
