"""What a Gemini API key looks like: the one definition used by validation, the paste
parser, the masked hint and the redactor.

Two families are in use (Dec 2026):
- authorization keys, AI Studio's default since 28 May 2026: ``AQ.`` then base64url text
  (letters, digits, ``-``, ``_``; inner dots occur), at least 30 characters after the dot;
- standard (legacy) keys: ``AIza`` then exactly 35 of the same alphabet.

Nothing here logs, and no message repeats the text it was given.
"""

from __future__ import annotations

import re
from typing import Literal, NewType

from lib.errors import InvalidInput

KeyKind = Literal["standard", "authorization"]
STANDARD_PREFIX = "AIza"
AUTHORIZATION_PREFIX = "AQ."
STANDARD_BODY_LENGTH = 35
AUTHORIZATION_MIN_BODY = 30  # characters of [A-Za-z0-9_-] after "AQ."
MAX_KEY_LENGTH = 256
ACCEPTED_FORMATS = ("an authorization key ('AQ.' followed by at least 30 letters, digits, '-', "
                    "'_' or inner dots) or a standard key ('AIza' followed by 35 letters, "
                    "digits, '-' or '_')")

_STANDARD = re.compile(r"AIza[0-9A-Za-z_-]{35}")
_AUTHORIZATION = re.compile(r"AQ\.[0-9A-Za-z_-]+(?:\.[0-9A-Za-z_-]+)*")
# A key anywhere in a text (names, groups and search boxes must not hold one). Standard keys
# are exact; an authorization key is "AQ." and a long base64url run.
GEMINI_KEY_PATTERN = re.compile(
    r"AIza[0-9A-Za-z_-]{35}|AQ\.[0-9A-Za-z_-](?:[0-9A-Za-z_.-]*[0-9A-Za-z_-])?")
# What the redactor replaces: both families, also cut short or run on (a partial key is
# still a secret). Case-sensitive, so ordinary words never match.
# The gateway's access tokens (lib/tokens): "gkat_" and a long urlsafe random secret.
ACCESS_TOKEN_PREFIX = "gkat_"  # noqa: S105 - a prefix, not a secret
ACCESS_TOKEN_PATTERN = re.compile(r"gkat_[0-9A-Za-z_\-]{16,}")
REDACTABLE_KEY_PATTERN = re.compile(r"AIza[0-9A-Za-z_\-]{20,}|AQ\.[0-9A-Za-z_\-.]{20,}|"
                                    + ACCESS_TOKEN_PATTERN.pattern)
# Texts shorter than this are masked completely: 4 + 4 shown characters would give most away.
MIN_MASKABLE_LENGTH = 20

# A key that normalise_api_key accepted: stripped and shaped like a Gemini key.
ApiKeyText = NewType("ApiKeyText", str)


class InvalidKeyFormat(InvalidInput):
    """Submitted text is not shaped like a Gemini API key (message never repeats it)."""


def key_kind(text: str) -> KeyKind | None:
    """The family a well-formed key belongs to, or None when it is neither."""
    if _STANDARD.fullmatch(text):
        return "standard"
    if (len(text) <= MAX_KEY_LENGTH and _AUTHORIZATION.fullmatch(text)
            and len(text[len(AUTHORIZATION_PREFIX):].replace(".", ""))
            >= AUTHORIZATION_MIN_BODY):
        return "authorization"
    return None


def _problem(key: str) -> str:
    """Why `key` is refused, in words that never quote it."""
    if key.startswith(STANDARD_PREFIX):
        if len(key) != len(STANDARD_PREFIX) + STANDARD_BODY_LENGTH:
            return "wrong length: a standard key has 39 characters"
        return "contains other characters than a key has"
    if key.startswith(AUTHORIZATION_PREFIX):
        if len(key) > MAX_KEY_LENGTH:
            return f"wrong length: more than {MAX_KEY_LENGTH} characters"
        if not _AUTHORIZATION.fullmatch(key):
            return "contains other characters than a key has, or a misplaced dot"
        return (f"wrong length: an authorization key has at least {AUTHORIZATION_MIN_BODY} "
                "characters after 'AQ.'")
    return "does not start with 'AQ.' or 'AIza'"


def normalise_api_key(text: str) -> ApiKeyText:
    """Strip whitespace and check the key's shape; errors never echo the text."""
    if not isinstance(text, str):
        raise InvalidKeyFormat(f"expected the API key as text, got {type(text).__name__}")
    key = text.strip()
    if key_kind(key) is not None:
        return ApiKeyText(key)
    raise InvalidKeyFormat(
        f"doesn't look like a Gemini API key: expected {ACCEPTED_FORMATS} (got "
        f"{len(key)} characters; {_problem(key)})")


def looks_like_key(text: str) -> bool:
    """True when a key-shaped run appears anywhere in `text` (it must not be stored or echoed)."""
    return any(key_kind(m.group(0)) is not None
               for m in GEMINI_KEY_PATTERN.finditer(text or ""))


def masked_hint(api_key: ApiKeyText) -> str:
    """Return e.g. 'AIza…k3Q9' or 'AQ.A…x7Zq': at most 4 + 4 characters of the key; texts
    under MIN_MASKABLE_LENGTH characters are fully masked."""
    if len(api_key) < MIN_MASKABLE_LENGTH:
        return "…"
    return f"{api_key[:4]}…{api_key[-4:]}"


def kind_of_hint(hint: str) -> KeyKind | None:
    """The family of a stored key, read off its masked hint (it keeps the prefix)."""
    if hint.startswith(AUTHORIZATION_PREFIX):
        return "authorization"
    if hint.startswith(STANDARD_PREFIX):
        return "standard"
    return None
