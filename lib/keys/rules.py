"""Rules for what an admin may store about a key: names, groups, priorities, reasons.

Pure functions; every message is safe to show. A text holding something key-shaped is refused
without being echoed, so a pasted key cannot reach a name, a message or an audit row.
"""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from lib.errors import InvalidInput
from lib.key_format import looks_like_key

PRIORITY_MIN = 1
PRIORITY_MAX = 1000  # higher is preferred (the spec's index is priority DESC)
DEFAULT_PRIORITY = 1
NAME_MAX_LENGTH = 100
GROUP_MAX_LENGTH = 100  # the group_label column's width
REASON_MAX_LENGTH = 500


def has_control_chars(text: str) -> bool:
    """Cc: control characters (\\n, \\t, \\x00...), Cf: invisible formatting (zero-width, bidi
    overrides that make a name display as another), Zl/Zp: line and paragraph separators."""
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in text)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _clean_label(value: Any, what: str, max_length: int, key_hint: str) -> str:
    """Trimmed text of at most max_length printable characters that holds no key."""
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be text.")
    value = value.strip()
    if value and looks_like_key(value):
        raise InvalidInput(f"The {what} contains an API key; {key_hint}.")
    if len(value) > max_length:
        raise InvalidInput(f"The {what} is too long ({len(value)} characters; "
                           f"at most {max_length}).")
    if has_control_chars(value):
        raise InvalidInput(f"The {what} contains control or invisible characters.")
    return value


def validate_name(name: Any) -> str:
    """Trimmed name, 1..NAME_MAX_LENGTH printable characters, not a uuid, not a key."""
    if isinstance(name, str) and not name.strip():
        raise InvalidInput("The key name is empty.")
    name = _clean_label(name, "key name", NAME_MAX_LENGTH,
                        "put the key in the key field, and give it a name like "
                        "'project-a-main'")
    if is_uuid(name):
        raise InvalidInput("The key name cannot be a uuid (ids and names must not be confused).")
    return name


def validate_group(group_label: Any) -> str | None:
    """Trimmed group label (a Google Cloud project); empty means no group."""
    if group_label is None:
        return None
    return _clean_label(group_label, "group", GROUP_MAX_LENGTH,
                        "use the Google Cloud project name") or None


def validate_priority(priority: Any) -> int:
    """An integer in PRIORITY_MIN..PRIORITY_MAX; digit strings (forms, files) are accepted."""
    if isinstance(priority, bool):
        raise InvalidInput("The priority must be a whole number, not true/false.")
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)
    if isinstance(priority, str):
        text = priority.strip()
        if not text.lstrip("+-").isdigit() or not text.isascii():
            raise InvalidInput(f"The priority must be a whole number from {PRIORITY_MIN} "
                               f"to {PRIORITY_MAX}.")
        priority = int(text)
    if not isinstance(priority, int):
        raise InvalidInput(f"The priority must be a whole number from {PRIORITY_MIN} "
                           f"to {PRIORITY_MAX}.")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidInput(f"The priority must be from {PRIORITY_MIN} to {PRIORITY_MAX} "
                           f"(higher is preferred); got {priority}.")
    return priority


def validate_reason(reason: Any) -> str | None:
    """Why a key is switched off (kept in the audit log); empty means none."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInput("The reason must be text.")
    reason = reason.strip()
    if looks_like_key(reason):
        raise InvalidInput("The reason contains an API key; describe the reason instead.")
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(f"The reason is too long (at most {REASON_MAX_LENGTH} characters).")
    return reason or None
