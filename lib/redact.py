"""Redaction, the second line of defence: text that may hold a secret is scrubbed before it
reaches a log, an error message, an audit row or a page.

The code never puts key material into text on purpose; this catches the accident (a key inside
an exception message, a URL with key=..., a DATABASE_URL with its password). Two nets:
- patterns: both Gemini key families (lib.key_format), bearer tokens, key=... parameters,
  x-goog-api-key headers, URL passwords;
- exact matches of every secret this process has handled (remember_secret: each key it
  decrypts), whatever its shape.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

from lib.key_format import REDACTABLE_KEY_PATTERN

REDACTED = "[REDACTED]"
MESSAGE_LIMIT = 300  # the longest error message kept (audit rows, health results)
MAX_REMEMBERED = 100_000  # secrets kept for exact-match redaction, least recently used out
MIN_REMEMBERED_LENGTH = 12  # shorter texts are too likely to occur innocently

# One pass over the text; the named groups keep the label ("Bearer ", "key=") so redacted
# logs still read sensibly.
_SECRET = re.compile(
    REDACTABLE_KEY_PATTERN.pattern
    + r"|(?P<bearer>(?i:\bbearer\s+))[A-Za-z0-9\-._~+/]+=*"
    r"|(?P<header>(?i:\bx-goog-api-key[\"']?\s*[:=]\s*[\"']?))[^\s\"',;}&]+"
    r"|(?P<param>(?i:\b(?:api[_-]?key|key|access_token)=))[^\s&\"'#]+"
)
# scheme://user:password@host -> scheme://user:[REDACTED]@host (DATABASE_URL and friends).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)[^@/\s]+(?=@)",
                           re.IGNORECASE)
# Runs of the characters secrets are made of: the candidates for an exact match.
_TOKEN = re.compile(r"[A-Za-z0-9_\-.]{12,}")

_remembered: OrderedDict[str, None] = OrderedDict()
_remembered_lock = threading.Lock()


def remember_secret(secret: str) -> None:
    """Redact `secret` wherever it appears from now on in this process."""
    if len(secret) < MIN_REMEMBERED_LENGTH:
        return
    with _remembered_lock:
        _remembered[secret] = None
        _remembered.move_to_end(secret)
        while len(_remembered) > MAX_REMEMBERED:
            _remembered.popitem(last=False)


def _redact_match(m: re.Match[str]) -> str:
    return (m.group("bearer") or m.group("header") or m.group("param") or "") + REDACTED


def _redact_remembered(text: str) -> str:
    if not _remembered:
        return text

    def replace(m: re.Match[str]) -> str:
        token = m.group(0)
        for candidate in (token, token.strip(".")):
            if candidate in _remembered:
                return token.replace(candidate, REDACTED)
        return token

    return _TOKEN.sub(replace, text)


def redact(text: str) -> str:
    """Gemini keys, bearer tokens, key=... parameters, URL passwords and every remembered
    secret -> [REDACTED]."""
    text = _redact_remembered(text)
    text = _SECRET.sub(_redact_match, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def clip_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line, redacted, at most `limit` characters (redacted before it is cut: a cut key
    could otherwise leave a prefix too short to match)."""
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
