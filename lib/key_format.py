"""What a Gemini API key looks like: the one definition used by validation, the paste
parser, the masked hint and the redactor.

Nothing here logs, and no message repeats the text it was given.
"""

from __future__ import annotations

import re
from typing import NewType

from lib.errors import InvalidInput

GEMINI_KEY_PATTERN = re.compile(r"AIza[0-9A-Za-z_-]{35}")
# Texts shorter than this are masked completely: 4 + 4 shown characters would give most away.
MIN_MASKABLE_LENGTH = 20

# A key that normalise_api_key accepted: stripped and shaped like a Gemini key.
ApiKeyText = NewType("ApiKeyText", str)


class InvalidKeyFormat(InvalidInput):
    """Submitted text is not shaped like a Gemini API key (message never repeats it)."""


def normalise_api_key(text: str) -> ApiKeyText:
    """Strip whitespace and check the Gemini key shape; errors never echo the text."""
    if not isinstance(text, str):
        raise InvalidKeyFormat(
            f"expected the API key as text, got {type(text).__name__}"
        )
    key = text.strip()
    if GEMINI_KEY_PATTERN.fullmatch(key):
        return ApiKeyText(key)
    if not key.startswith("AIza"):
        problem = "does not start with 'AIza'"
    elif len(key) != 39:
        problem = "wrong length"
    else:
        problem = "contains other characters"
    raise InvalidKeyFormat(
        "doesn't look like a Gemini API key: expected 'AIza' followed by 35 letters, "
        f"digits, '-' or '_' (got {len(key)} characters; {problem})"
    )


def looks_like_key(text: str) -> bool:
    """True when a key-shaped run appears anywhere in `text` (it must not be stored or echoed)."""
    return GEMINI_KEY_PATTERN.search(text or "") is not None


def masked_hint(api_key: ApiKeyText) -> str:
    """Return e.g. 'AIza…k3Q9'; texts under MIN_MASKABLE_LENGTH characters are fully masked."""
    if len(api_key) < MIN_MASKABLE_LENGTH:
        return "…"
    return f"{api_key[:4]}…{api_key[-4:]}"
