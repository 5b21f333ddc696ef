"""The release check's evaluation gates (docs/evaluations.md, "Gates"): before a variant serves
another version, every gate of the variant judges an evaluation of that version on the gate's
dataset — the newest finished one of that exact version, dataset and evaluators, or one run now.
A gate with `no_regressions` also needs one of the version the variant serves now."""

from __future__ import annotations

from typing import Any

from promptdeck.domain.datasets import Dataset
from promptdeck.domain.errors import PromptdeckError
from promptdeck.domain.evaluation_summary import regressions
from promptdeck.domain.gates import Gate, gate_problems
from promptdeck.engine.auth import Caller
from promptdeck.engine.evaluations import DEFAULT_CONCURRENCY, EvaluationRunner
from promptdeck.store.evaluations import DONE

GATE_ACTOR = "release gate"  # who an evaluation run by the release check is recorded as


class ReleaseGates:
    """The `GateChecker` of engine/release_check.py, over the evaluation runner."""

    def __init__(self, runner: EvaluationRunner) -> None:
        self.runner = runner

    async def failures(
        self, workspace_id: str, deployment: str, variant: str, version_number: int
    ) -> list[dict[str, Any]]:
        """One entry per gate that the version does not pass: `gate`, `dataset`, `problem` (a
        sentence) and the figures it was judged on. No gates, no failures."""
        loaded = await self.runner.catalog.deployments.load_deployment(workspace_id, deployment)
        gates = loaded.config(variant).gates
        if not gates:
            return []
        slug = next(iter(loaded.variants.values())).prompt_slug
        current = loaded.variants.get(variant)
        served = current.number if current is not None else None
        found: list[dict[str, Any]] = []
        for gate in gates:
            try:
                failure = await self._judge(
                    workspace_id, loaded.prompt_id, slug, gate, version_number, served
                )
            except PromptdeckError as exc:
                failure = {
                    "gate": gate.name,
                    "dataset": gate.dataset,
                    "problem": f"gate {gate.name!r} could not judge version {version_number}: {exc.message}",
                }
            if failure is not None:
                found.append(failure)
        return found

    async def _judge(
        self, workspace_id: str, prompt_id: str, slug: str, gate: Gate, number: int, served: int | None
    ) -> dict[str, Any] | None:
        dataset = await self.runner.datasets.dataset(workspace_id, slug, gate.dataset)
        evaluation, results = await self.evaluation(workspace_id, prompt_id, slug, dataset, number)
        summary = evaluation["summary"] or {}
        regressed: list[int] | None = None
        baseline: str | None = None
        if gate.no_regressions and served is not None and served != number:
            before, before_results = await self.evaluation(workspace_id, prompt_id, slug, dataset, served)
            regressed, baseline = regressions(before_results, results), before["id"]
        problems = gate_problems(gate, summary.get("pass_rate"), regressed, served)
        if not problems:
            return None
        return {
            "gate": gate.name,
            "dataset": gate.dataset,
            "problem": f"gate {gate.name!r}: " + "; ".join(problems),
            "version": number,
            "evaluation": evaluation["id"],
            "pass_rate": summary.get("pass_rate"),
            "min_pass_rate": gate.min_pass_rate,
            "regressed_cases": regressed or [],
            "served_version": served,
            "baseline_evaluation": baseline,
        }

    async def evaluation(
        self, workspace_id: str, prompt_id: str, slug: str, dataset: Dataset, number: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The newest finished evaluation of version `number` on `dataset` with its evaluators,
        run now (and waited for) when there is none; and its results."""
        store = self.runner.store
        evaluators = [dict(spec) for spec in dataset.evaluators]
        found = await store.newest_done(workspace_id, prompt_id, dataset.id, number, evaluators)
        if found is None:
            caller = Caller(None, workspace_id, ("admin",), GATE_ACTOR)
            started = await self.runner.start(
                caller, slug, dataset.name, {"version": number}, evaluators, DEFAULT_CONCURRENCY
            )
            found = await self.runner.wait(workspace_id, started["id"])
            if found["status"] != DONE:
                raise EvaluationEnded(
                    f"its evaluation {found['id']} ended {found['status']}: {found['error']}"
                )
        return found, await store.results(workspace_id, found["id"])


class EvaluationEnded(PromptdeckError):
    """A gate's evaluation was cancelled or failed, so the gate cannot pass."""

    code = "conflict"
