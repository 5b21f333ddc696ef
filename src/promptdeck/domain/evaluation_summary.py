"""An evaluation's figures from its per-case results, and two or more evaluations side by side.

Pure: results are the mappings the store keeps per case (`status`, `scores`, `cost`,
`latency_ms`, ...), so the API, the CLI and the release gates read the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score

PASSED, FAILED, ERRORED = "passed", "failed", "errored"
# How a case changed from the first evaluation compared to a later one, in the order shown.
REGRESSED, FIXED, CHANGED, SAME = "regressed", "fixed", "changed", "same"
CHANGE_ORDER = {REGRESSED: 0, CHANGED: 1, FIXED: 2, SAME: 3}


def case_status(outcome: CaseOutcome, scores: Sequence[Score]) -> str:
    """`errored` when the call or an evaluator failed, else `passed` when every evaluator passed."""
    if outcome.error is not None or any(score.error is not None for score in scores):
        return ERRORED
    return PASSED if all(score.passed for score in scores) else FAILED


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` in 0..1) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarize(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Pass rate, per evaluator its pass rate and mean score, cost, latency p50/p95, errors."""
    counts = {PASSED: 0, FAILED: 0, ERRORED: 0}
    cost, input_tokens, output_tokens = 0.0, 0, 0
    latencies: list[float] = []
    evaluators: dict[str, dict[str, Any]] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        cost += result.get("cost") or 0.0
        input_tokens += result.get("input_tokens") or 0
        output_tokens += result.get("output_tokens") or 0
        if result.get("latency_ms") is not None:
            latencies.append(float(result["latency_ms"]))
        for score in result.get("scores") or ():
            figures = evaluators.setdefault(
                score["evaluator"], {"passed": 0, "judged": 0, "errors": 0, "sum": 0.0}
            )
            if score.get("error") is not None or score.get("score") is None:
                figures["errors"] += 1
                continue
            figures["judged"] += 1
            figures["passed"] += bool(score["passed"])
            figures["sum"] += float(score["score"])
    cases = sum(counts.values())
    return {
        "cases": cases,
        **counts,
        "pass_rate": counts[PASSED] / cases if cases else None,
        "evaluators": {
            name: {
                "pass_rate": f["passed"] / f["judged"] if f["judged"] else None,
                "mean_score": f["sum"] / f["judged"] if f["judged"] else None,
                "errors": f["errors"],
            }
            for name, f in evaluators.items()
        },
        "cost": cost,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p95_ms": percentile(latencies, 0.95),
    }


def change(first: str | None, later: str | None) -> str:
    """How a case's status moved from one evaluation to another."""
    if first == later:
        return SAME
    if first == PASSED:
        return REGRESSED
    if later == PASSED:
        return FIXED
    return CHANGED


def regressions(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> list[int]:
    """Positions of the cases that passed `before` and do not pass `after` (same dataset)."""
    passed = {r["case_id"] for r in before if r["status"] == PASSED}
    return sorted(r["position"] for r in after if r["case_id"] in passed and r["status"] != PASSED)


def compare(evaluations: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]]) -> dict[str, Any]:
    """Evaluations side by side: each one's summary, then every case with its status, score and
    output in each, the cases that went from pass to fail (first against any later) first."""
    by_case: dict[str, dict[str, Any]] = {}
    for index, (_, results) in enumerate(evaluations):
        for result in results:
            row = by_case.setdefault(
                result["case_id"],
                {
                    "case_id": result["case_id"],
                    "position": result["position"],
                    "results": [None] * len(evaluations),
                },
            )
            row["results"][index] = {
                "status": result["status"],
                "output": result.get("output"),
                "scores": result.get("scores") or [],
                "error": result.get("error"),
            }
    for row in by_case.values():
        statuses = [r["status"] if r else None for r in row["results"]]
        moves = [change(statuses[0], later) for later in statuses[1:]]
        row["change"] = min(moves, key=CHANGE_ORDER.__getitem__) if moves else SAME
    cases = sorted(by_case.values(), key=lambda r: (CHANGE_ORDER[r["change"]], r["position"]))
    return {
        "evaluations": [
            {
                "id": meta["id"],
                "target": meta.get("target"),
                "version": meta.get("version"),
                **summarize(results),
            }
            for meta, results in evaluations
        ],
        "changes": {kind: sum(1 for r in cases if r["change"] == kind) for kind in CHANGE_ORDER},
        "cases": cases,
    }
