"""Normalized events every provider produces and every dialect encodes.

Providers translate their upstream stream into these; the engine folds them
for non-streaming calls, so streamed and non-streamed answers cannot drift.
A provider fills in what it knows (`Started.model`, `Finished.stop_reason`);
the engine adds what only it knows (the version that answers, usage, cost,
duration) before a dialect sees the event, so a dialect reads nothing else.
"""

from __future__ import annotations

from typing import Any

from promptdeck.domain.values import immutable

# Normalized stop reasons (each dialect maps them to its own words).
STOP = "stop"
LENGTH = "length"
TOOL_CALLS = "tool_calls"
CONTENT_FILTER = "content_filter"


@immutable
class Started:
    """The answer begins. The engine sends it before the first delta, naming who answers."""

    model: str
    provider: str | None = None  # set by the engine
    version_id: str | None = None  # the version that answers (a fallback's may differ); by the engine
    version_number: int | None = None
    elapsed_ms: float | None = None  # since the request came in; by the engine


@immutable
class ReasoningDelta:
    text: str


@immutable
class TextDelta:
    text: str


@immutable
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments_delta: str


@immutable
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


@immutable
class Finished:
    """The answer ended well. The engine adds the run's totals before a dialect sees it."""

    stop_reason: str
    raw: dict[str, Any] | None = None  # the upstream's own answer (top-level keys), when asked for
    usage: Usage | None = None  # the rest set by the engine
    cost: float | None = None  # USD; None when the model's price is unknown
    price_known: bool | None = None
    duration_ms: float | None = None
    ttft_ms: float | None = None  # time to the first text or reasoning


@immutable
class Failed:
    code: str
    message: str
    retryable: bool = False  # true only while nothing has reached the caller
    retry_after: float | None = None  # seconds, when the upstream said (Retry-After)
    duration_ms: float | None = None  # set by the engine


Event = Started | ReasoningDelta | TextDelta | ToolCallDelta | Usage | Finished | Failed
