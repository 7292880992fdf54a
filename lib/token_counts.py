"""Token counts of Gemini calls, one shape for the pool that records them and the analytics
that sum them: prompt (cached included), output (thoughts apart), thoughts, cached, total."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tokens:
    prompt: int = 0
    output: int = 0
    thoughts: int = 0
    cached: int = 0
    total: int = 0

    @property
    def quota_tokens(self) -> int:
        """What Gemini's TPM quota counts: input tokens (the prompt, cached included)."""
        return self.prompt

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.prompt + other.prompt, self.output + other.output,
                      self.thoughts + other.thoughts, self.cached + other.cached,
                      self.total + other.total)
