"""An evaluation's figures and the comparison of several, from per-case results alone."""

from __future__ import annotations

from typing import Any

import pytest

from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score
from promptdeck.domain.evaluation_summary import case_status, compare, percentile, regressions, summarize
from promptdeck.domain.gates import Gate, gate_problems
from promptdeck.domain.reliability import parse_variant_config


def result(position: int, status: str, score: float | None = 1.0, latency: float = 10.0) -> dict[str, Any]:
    error = "boom" if score is None else None
    scores = [{"evaluator": "e", "score": score, "passed": status == "passed", "error": error}]
    return {
        "case_id": f"c{position}",
        "position": position,
        "status": status,
        "scores": scores,
        "cost": 0.5,
        "latency_ms": latency,
        "input_tokens": 3,
        "output_tokens": 2,
        "output": str(position),
    }


def test_a_case_passes_only_when_every_evaluator_passes_and_errors_win() -> None:
    ok = CaseOutcome("x", 1.0)
    assert case_status(ok, [Score("a", 1.0, True), Score("b", 0.9, True)]) == "passed"
    assert case_status(ok, [Score("a", 1.0, True), Score("b", 0.1, False)]) == "failed"
    assert case_status(ok, [Score("a", None, False, error="no")]) == "errored"
    assert case_status(CaseOutcome("", 1.0, error="upstream 500"), []) == "errored"


def test_summary_figures() -> None:
    found = summarize(
        [result(1, "passed", latency=10), result(2, "failed", 0.0, 30), result(3, "errored", None, 20)]
    )
    assert (found["cases"], found["passed"], found["failed"], found["errored"]) == (3, 1, 1, 1)
    assert found["pass_rate"] == pytest.approx(1 / 3) and found["cost"] == 1.5 and found["input_tokens"] == 9
    assert found["evaluators"]["e"] == {"pass_rate": 0.5, "mean_score": 0.5, "errors": 1}
    assert (found["latency_p50_ms"], found["latency_p95_ms"]) == (20.0, 30.0)
    assert summarize([])["pass_rate"] is None and percentile([], 0.5) is None


def test_comparison_puts_pass_to_fail_first() -> None:
    before = [result(1, "failed", 0.0), result(2, "passed"), result(3, "passed"), result(4, "errored", None)]
    after = [result(1, "passed"), result(2, "passed"), result(3, "failed", 0.0), result(4, "failed", 0.0)]
    compared = compare([({"id": "a"}, before), ({"id": "b"}, after)])
    assert [(c["position"], c["change"]) for c in compared["cases"]] == [
        (3, "regressed"),
        (4, "changed"),
        (1, "fixed"),
        (2, "same"),
    ]
    assert [e["pass_rate"] for e in compared["evaluations"]] == [0.5, 0.5]
    assert regressions(before, after) == [3]


def test_gates_judge_pass_rate_and_regressions_and_live_in_the_variant_config() -> None:
    gate = Gate(name="quality", dataset="golden", min_pass_rate=0.9, no_regressions=True)
    assert gate_problems(gate, 0.95, [], 1) == []
    (low, regressed) = gate_problems(gate, 0.5, [2, 5], 1)
    assert "50% of the cases" in low and "90%" in low and "#2, #5" in regressed and "version 1" in regressed
    config = parse_variant_config({"gates": [gate.to_dict()]})
    assert config.gates == (gate,) and config.to_dict()["gates"] == [gate.to_dict()]
    with pytest.raises(ValidationFailed, match="given twice"):
        parse_variant_config({"gates": [gate.to_dict(), gate.to_dict()]})
    with pytest.raises(ValidationFailed, match="min_pass_rate"):
        parse_variant_config({"gates": [{"name": "q", "dataset": "d", "min_pass_rate": 1.5}]})
