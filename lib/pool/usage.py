"""Token counts of one call, from Gemini's usageMetadata or an OpenAI-style usage object.

Output tokens exclude thoughts in both shapes (Gemini counts them apart; OpenAI's
completion_tokens include reasoning_tokens, which are subtracted), so the columns add up
the same way whichever API served the call. Unusable values count as 0: a provider's odd
answer must never fail the record of a call that already happened.
"""

from __future__ import annotations

from typing import Any

from lib.token_counts import Tokens

_MAX = 2**62  # stays a BIGINT after summing many calls


NO_TOKENS = Tokens()


def _count(source: Any, *names: str) -> int:
    for name in names:
        value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            continue
        return min(max(number, 0), _MAX)
    return 0


def parse_usage(usage: Any) -> Tokens:
    """Tokens from usageMetadata (camelCase or google-genai's snake_case) or OpenAI usage."""
    if usage is None:
        return NO_TOKENS
    if hasattr(usage, "model_dump") and not isinstance(usage, dict):
        usage = usage.model_dump()
    if not isinstance(usage, dict):
        usage = {k: getattr(usage, k) for k in dir(usage) if not k.startswith("_")}
    if any(k in usage for k in ("prompt_tokens", "completion_tokens")):  # OpenAI
        prompt = _count(usage, "prompt_tokens")
        completion = _count(usage, "completion_tokens")
        thoughts = _count(usage.get("completion_tokens_details") or {}, "reasoning_tokens")
        cached = _count(usage.get("prompt_tokens_details") or {}, "cached_tokens")
        output = max(completion - thoughts, 0)
        total = _count(usage, "total_tokens") or prompt + completion
        return Tokens(prompt, output, thoughts, cached, total)
    prompt = _count(usage, "promptTokenCount", "prompt_token_count")
    output = _count(usage, "candidatesTokenCount", "candidates_token_count")
    thoughts = _count(usage, "thoughtsTokenCount", "thoughts_token_count")
    cached = _count(usage, "cachedContentTokenCount", "cached_content_token_count")
    total = (_count(usage, "totalTokenCount", "total_token_count")
             or prompt + output + thoughts)
    return Tokens(prompt, output, thoughts, cached, total)
