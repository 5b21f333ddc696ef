"""Scoring one case of an evaluation with every evaluator of its dataset (docs/evaluations.md).

The built-in evaluators are pure (`domain/evaluators.score`); the LLM judge is a call, so it
lives here: it invokes the deployment the spec names through the engine — a normal run, in the
log, tagged with the evaluator's name — and reads a `{score, reason}` object from its answer.
Judge calls share one bound across every case being scored, so an evaluation at concurrency 32
does not send 32 cases times their judges at once. Nothing here raises: a judge that cannot judge gives an
errored `Score` with its message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.errors import PromptdeckError
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score
from promptdeck.domain.evaluators import LLM_JUDGE, EvaluatorSpec, failed_call, score
from promptdeck.domain.judge_verdicts import JUDGE_RESPONSE_FORMAT, judge_inputs, judge_score
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import Engine, InvokeRequest

DIALECT = "evaluation"  # what a judge's run is logged under
JUDGE_CALLER = "evaluator"  # the caller a judge's run is recorded as
JUDGE_CONCURRENCY = 8  # judge calls in flight at once, over every case being scored


class CaseScorer:
    """Scores cases: the built-ins at once, the LLM judges through `engine`, at most
    `judge_concurrency` judge calls at a time (shared by every `score_all` of this scorer)."""

    def __init__(self, engine: Engine, judge_concurrency: int = JUDGE_CONCURRENCY) -> None:
        self.engine = engine
        self._judges = asyncio.Semaphore(judge_concurrency)

    async def score_all(
        self,
        workspace_id: str,
        specs: Sequence[EvaluatorSpec],
        case: DatasetCase,
        outcome: CaseOutcome,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Score]:
        """One `Score` per spec, in the specs' order; never raises for an evaluator's trouble.
        `metadata` is added to each judge run's (e.g. the evaluation's id), beside `evaluator`."""
        judged = [
            self._judge(workspace_id, spec, case, outcome, metadata or {})
            for spec in specs
            if spec.type == LLM_JUDGE
        ]
        verdicts = iter(await asyncio.gather(*judged))
        return [next(verdicts) if spec.type == LLM_JUDGE else score(spec, case, outcome) for spec in specs]

    async def _judge(
        self,
        workspace_id: str,
        spec: EvaluatorSpec,
        case: DatasetCase,
        outcome: CaseOutcome,
        metadata: Mapping[str, Any],
    ) -> Score:
        if outcome.error is not None:
            return failed_call(spec, outcome)
        assert spec.deployment is not None  # the spec's validation requires it
        request = InvokeRequest(
            caller=Caller(None, workspace_id, ("invoke",), JUDGE_CALLER),
            dialect=DIALECT,
            deployment=spec.deployment,
            variant=spec.variant,
            inputs=judge_inputs(spec, case, outcome),
            metadata={**metadata, "evaluator": spec.name},
            response_format=JUDGE_RESPONSE_FORMAT,
        )
        try:
            async with self._judges, await self.engine.start(request) as invocation:
                answer = await invocation.answer()
        except PromptdeckError as exc:  # no such deployment, inputs the judge's prompt refuses, ...
            return Score(
                spec.name, None, False, error=f"the judge {spec.deployment!r} could not run: {exc.message}"
            )
        except Exception as exc:  # a judge never stops an evaluation
            return Score(spec.name, None, False, error=f"the judge {spec.deployment!r} failed: {exc}")
        if answer.failed is not None:
            return Score(
                spec.name, None, False, error=f"the judge {spec.deployment!r} failed: {answer.failed.message}"
            )
        text = answer.text or next((call.arguments for call in answer.tool_calls), "")
        return judge_score(spec, text)
