"""What an admin may set as a budget: a named group, a model id, and rpm / tpm / rpd limits.

Pure functions; every message is safe to show. A text holding something key-shaped is refused
without being echoed. NULL (None) means "no limit", 0 means "no quota for this model in this
group" (the pool then never picks the group's keys for it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from lib.errors import InvalidInput
from lib.key_format import looks_like_key

GROUP_MAX_LENGTH = 100  # gemini_quota_limits.group_label, as gemini_api_keys.group_label
MODEL_MAX_LENGTH = 128  # gemini_quota_limits.model
# Gemini model ids: gemini-2.5-flash, gemini-2.0-flash-lite-001, gemma-3-27b-it,
# gemini-2.5-flash-preview-05-20, text-embedding-004. Lower case, as the API names them.
MODEL_SHAPE = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")

# Upper bounds far above any tier Google sells (tier 3 is in the tens of thousands of requests
# and tens of millions of tokens per minute): a typo with extra digits is refused, and every
# value fits its column (rpm, rpd INTEGER; tpm BIGINT).
LIMIT_MAX = {"rpm": 10_000_000, "tpm": 10_000_000_000, "rpd": 1_000_000_000}
LIMIT_WORDS = {"rpm": "requests per minute", "tpm": "input tokens per minute",
               "rpd": "requests per day"}

@dataclass(frozen=True)
class Limits:
    """rpm, tpm, rpd: None is no limit, 0 is no quota at all."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "tpm": self.tpm, "rpd": self.rpd}

    def describe(self) -> str:
        """e.g. "rpm 10, tpm no limit, rpd 0 (no quota)"."""
        return ", ".join(f"{name} {describe_limit(value)}"
                         for name, value in self.as_dict().items())


def describe_limit(value: int | None) -> str:
    if value is None:
        return "no limit"
    if value == 0:
        return "0 (no quota)"
    return f"{value:,}"


def _unsafe_text(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in value)


def validate_group_name(group_label: Any) -> str:
    """A trimmed, non-empty group label (limits exist only for named groups)."""
    if not isinstance(group_label, str):
        raise InvalidInput("The group must be text.")
    group_label = group_label.strip()
    if not group_label:
        raise InvalidInput("Choose a group: limits are set per group (Google Cloud project); "
                           "keys without a group have no shared quota to budget.")
    if looks_like_key(group_label):
        raise InvalidInput("The group contains an API key; use the Google Cloud project name.")
    if len(group_label) > GROUP_MAX_LENGTH:
        raise InvalidInput(f"The group is too long ({len(group_label)} characters; at most "
                           f"{GROUP_MAX_LENGTH}).")
    if _unsafe_text(group_label):
        raise InvalidInput("The group contains control or invisible characters.")
    return group_label


def normalise_model(model: Any) -> str:
    """A Gemini model id as the pool counts it: trimmed, without a leading `models/`.

    Refused: empty, too long, upper case, spaces, slashes or anything but a-z 0-9 . _ -.
    """
    if not isinstance(model, str):
        raise InvalidInput("The model must be text.")
    model = model.strip().removeprefix("models/")
    if not model:
        raise InvalidInput("Name the model, e.g. gemini-2.5-flash.")
    if looks_like_key(model):
        raise InvalidInput("The model contains an API key; name the model, "
                           "e.g. gemini-2.5-flash.")
    if len(model) > MODEL_MAX_LENGTH:
        raise InvalidInput(f"The model is too long ({len(model)} characters; at most "
                           f"{MODEL_MAX_LENGTH}).")
    if not MODEL_SHAPE.fullmatch(model):
        raise InvalidInput("The model must be a Gemini model id such as gemini-2.5-flash: "
                           "lower-case letters, digits, '.', '_' and '-' only.")
    return model


def validate_limit(name: str, value: Any) -> int | None:
    """One limit: None or "" (no limit), or a whole number from 0 to LIMIT_MAX[name]."""
    words = f"{name} ({LIMIT_WORDS[name]})"
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"The {words} must be a whole number, not true/false.")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidInput(f"The {words} must be a whole number; got {value}.")
        value = int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        if not text:
            return None
        if not re.fullmatch(r"-?[0-9]+", text):
            raise InvalidInput(f"The {words} must be a whole number from 0 to "
                               f"{LIMIT_MAX[name]:,}, or empty for no limit.")
        value = int(text)
    if not isinstance(value, int):
        raise InvalidInput(f"The {words} must be a whole number.")
    if value < 0:
        raise InvalidInput(f"The {words} cannot be negative; use 0 for no quota, or leave it "
                           "empty for no limit.")
    if value > LIMIT_MAX[name]:
        raise InvalidInput(f"The {words} is too large ({value:,}; at most "
                           f"{LIMIT_MAX[name]:,}).")
    return value


def validate_limits(*, rpm: Any = None, tpm: Any = None, rpd: Any = None) -> Limits:
    """All three limits; at least one must be set (clear the limit to remove them all)."""
    limits = Limits(validate_limit("rpm", rpm), validate_limit("tpm", tpm),
                    validate_limit("rpd", rpd))
    if all(value is None for value in limits.as_dict().values()):
        raise InvalidInput("Set at least one of rpm, tpm, rpd (to remove every limit of this "
                           "group and model, clear the limit instead).")
    return limits
