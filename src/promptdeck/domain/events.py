"""Normalized events every provider produces and every dialect encodes.

Providers translate their upstream stream into these; the engine folds them
for non-streaming calls, so streamed and non-streamed answers cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Normalized stop reasons (each dialect maps them to its own words).
STOP = "stop"
LENGTH = "length"
TOOL_CALLS = "tool_calls"
CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class Started:
    model: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments_delta: str


@dataclass(frozen=True, slots=True)
class Usage:
    input: int = 0
    cached_input: int = 0
    cache_write_input: int = 0
    output: int = 0
    reasoning: int = 0
    estimated: bool = False  # counted by promptdeck because the upstream reported none

    @property
    def total(self) -> int:
        return self.input + self.output


@dataclass(frozen=True, slots=True)
class Finished:
    stop_reason: str
    raw: dict[str, Any] | None = None  # the upstream's own answer (top-level keys), when asked for


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    message: str
    retryable: bool = False  # true only while nothing has reached the caller
    retry_after: float | None = None  # seconds, when the upstream said (Retry-After)


Event = Started | ReasoningDelta | TextDelta | ToolCallDelta | Usage | Finished | Failed
