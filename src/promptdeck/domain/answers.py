"""What a dialect encodes: the run as resolved before any provider call, and its events
folded into one answer.

Both are immutable snapshots made by the engine, so a dialect's encoder is a pure function
of them and of the events, testable without a server. The fold lives here once: the engine
uses it for the run log and the non-streamed answer, and a streaming encoder that must send
whole tool calls at the end (Vellum's) uses the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from promptdeck.domain.events import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.domain.values import immutable


@immutable
class ResolvedRun:
    """The run as the engine resolved it before calling a provider. `Started` may change who
    answers (a fallback); `answered_by` gives the run as the caller should see it then."""

    id: str
    request_id: str
    created_at: datetime
    deployment: str
    variant: str | None
    model: str | None
    provider: str | None
    version_id: str | None
    version_number: int | None
    input_chars: int  # the rendered prompt's length, for dialects that report it (Vellum)

    def answered_by(self, started: Started | None) -> ResolvedRun:
        if started is None:
            return self
        return ResolvedRun(  # not `dataclasses.replace`: this is on every run's path, and 5x faster
            self.id,
            self.request_id,
            self.created_at,
            self.deployment,
            self.variant,
            started.model,
            started.provider or self.provider,
            started.version_id,
            started.version_number,
            self.input_chars,
        )


@immutable
class ToolCall:
    id: str | None
    name: str | None
    arguments: str  # JSON text, exactly as the model wrote it

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@immutable
class Answer:
    """A whole run's answer: what a non-streaming caller gets, and what the log keeps."""

    run: ResolvedRun  # as answered (`ResolvedRun.answered_by`)
    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finished: Finished | None = None
    failed: Failed | None = None  # set when the run failed (or was cut short)

    @property
    def usage(self) -> Usage:
        return (self.finished.usage if self.finished else None) or Usage()

    @property
    def duration_ms(self) -> float:
        ended = self.finished or self.failed
        return (ended.duration_ms if ended else None) or 0.0


@dataclass(slots=True)
class AnswerFold:
    """Accumulates events into an `Answer`; the one place deltas are joined."""

    run: ResolvedRun
    started: Started | None = None
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tools: dict[int, list[Any]] = field(default_factory=dict)  # index -> [id, name, argument parts]
    finished: Finished | None = None
    failed: Failed | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self.tools.setdefault(event.index, [None, None, []])
            call[0] = event.id or call[0]
            call[1] = event.name or call[1]
            call[2].append(event.arguments_delta)
        elif isinstance(event, Started):
            self.started = event
        elif isinstance(event, Finished):
            self.finished = event
        elif isinstance(event, Failed):
            self.failed = event

    def tool_call(self, index: int) -> ToolCall:
        call_id, name, parts = self.tools[index]
        return ToolCall(call_id, name, "".join(parts))

    def answer(self) -> Answer:
        return Answer(
            run=self.run.answered_by(self.started),
            text="".join(self.text),
            reasoning="".join(self.reasoning),
            tool_calls=tuple(self.tool_call(i) for i in sorted(self.tools)),
            finished=self.finished,
            failed=self.failed,
        )
