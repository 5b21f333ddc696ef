"""What one case of an evaluation produced, and how one evaluator judged it: the shapes the
evaluators, the evaluation runner and the comparison share (docs/evaluations.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """The call's result for one case: its text output (tool calls as JSON text), or its error."""

    output: str
    latency_ms: float
    cost: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None  # the call failed: every evaluator then reports an error
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """One evaluator's verdict on one case: a score in [0, 1] that passes at or above the
    evaluator's threshold; an evaluator that could not judge gives `error` and no score."""

    evaluator: str  # the evaluator's name
    score: float | None
    passed: bool
    error: str | None = None
    reason: str | None = None  # why, when the evaluator says (an LLM judge's `reason`)
