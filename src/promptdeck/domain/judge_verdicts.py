"""What an LLM judge is asked, and how its answer becomes a `Score` (docs/evaluations.md).

The judge is an ordinary deployment. Its prompt receives four text inputs — `rubric`,
`inputs` (the case's inputs as JSON), `expected` ("" when the case has none) and `output` —
and must answer a JSON object `{"score": 0..1, "reason": "..."}`. The call asks for that shape
as structured output, which providers that support it enforce; the answer is read the same
way either way, so a model that only writes JSON in its text (or inside a code fence) works too.
"""

from __future__ import annotations

import json
import math
from typing import Any

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score
from promptdeck.domain.evaluators import EvaluatorSpec

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "description": "from 0 (fails the rubric) to 1 (meets it fully)"},
        "reason": {"type": "string", "description": "why, in a sentence or two"},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}
JUDGE_RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "name": "verdict",
    "schema": VERDICT_SCHEMA,
    "strict": True,
}
SHOWN_MAX = 200  # how much of a bad answer an error quotes


def judge_inputs(spec: EvaluatorSpec, case: DatasetCase, outcome: CaseOutcome) -> dict[str, str]:
    """The judge deployment's inputs for one case."""
    return {
        "rubric": spec.rubric or "",
        "inputs": json.dumps(dict(case.inputs), ensure_ascii=False, default=str),
        "expected": case.expected or "",
        "output": outcome.output,
    }


def judge_score(spec: EvaluatorSpec, answer: str) -> Score:
    """The judge's answer as a score, or an errored one saying what was wrong with it."""
    verdict = _json_object(answer)
    if verdict is None:
        shown = answer if len(answer) <= SHOWN_MAX else answer[:SHOWN_MAX] + "…"
        return Score(spec.name, None, False, error=f"the judge did not answer a JSON object: {shown!r}")
    value = verdict.get("score")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Score(spec.name, None, False, error=f"the judge's answer has no numeric score: {verdict}")
    if not 0 <= value <= 1:
        return Score(spec.name, None, False, error=f"the judge's score {value} is not between 0 and 1")
    reason = verdict.get("reason")
    return Score(
        spec.name, float(value), value >= spec.threshold, reason=reason if isinstance(reason, str) else None
    )


def _json_object(text: str) -> dict[str, Any] | None:
    """The answer as a JSON object: the whole text, or else its outermost `{...}` (a model may
    wrap it in a code fence or a sentence)."""
    candidates = [text.strip()]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None
