"""The built-in evaluators (domain/evaluators.py): each passes a good output and fails a bad one,
and whatever cannot be judged is an errored score with its message, never an exception."""

from __future__ import annotations

import json
import re
from typing import Any, get_args

import pytest
import yaml
from pydantic import ValidationError

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score
from promptdeck.domain.evaluators import (
    EvaluatorSpec,
    EvaluatorType,
    parse_evaluators,
    score,
    spec_problems,
)
from promptdeck.domain.judge_verdicts import judge_inputs, judge_score
from tests.support.doc_examples import ROOT, blocks

CASE = DatasetCase(inputs={"question": "What is 6 x 7?"}, expected="The answer is 42.")
NO_EXPECTED = DatasetCase(inputs={"question": "What is 6 x 7?"})
ORDER = '{"order": {"id": 7, "status": "shipped", "items": [{"sku": "A1"}, {"sku": "B2"}]}}'

# (spec, output passing it, output failing it); the case is CASE, latency 120 ms, cost $0.002
PASS_FAIL: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "exact_match"}, "The answer is 42.", "The answer is 42"),
    (
        {"type": "exact_match", "case_sensitive": False, "ignore_whitespace": True},
        "  the ANSWER is\n42. ",
        "the answer is 42",
    ),
    ({"type": "exact_match", "value": "yes"}, "yes", "Yes"),
    ({"type": "contains", "value": "refund"}, "We sent your refund today.", "We sent it today."),
    ({"type": "contains", "value": ["refund", "sorry"]}, "sorry, refund sent.", "Sorry for that."),
    ({"type": "contains", "value": "REFUND", "case_sensitive": False}, "a refund", "a rebate"),
    ({"type": "contains"}, "Well: The answer is 42. Bye", "It is 42."),
    ({"type": "not_contains", "value": "as an AI"}, "42.", "Well, as an AI, 42."),
    ({"type": "not_contains", "value": ["damn", "heck"]}, "All fine.", "What the heck."),
    ({"type": "regex", "pattern": r"^\d{3}-\d{4}$"}, "555-1234", "call 555-1234"),
    ({"type": "regex", "pattern": "^hello", "case_sensitive": False}, "HELLO there", "oh hello"),
    ({"type": "valid_json"}, '{"a": [1, 2]}', "{'a': 1}"),
    (
        {
            "type": "json_schema",
            "schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        },
        '{"name": "Ada"}',
        '{"name": 3}',
    ),
    ({"type": "json_schema", "schema": {"type": "array"}}, "[]", "not json"),
    (
        {"type": "json_path", "path": "$.order.status", "value": "shipped"},
        ORDER,
        ORDER.replace("shipped", "lost"),
    ),
    ({"type": "json_path", "path": "$.order.items[*].sku", "value": "B2"}, ORDER, ORDER.replace("B2", "C3")),
    ({"type": "json_path", "path": "$.order.id", "value": 7}, ORDER, ORDER.replace(": 7", ': "7"')),
    ({"type": "json_path", "path": "$.order.id", "value": 7}, ORDER, "7"),
    ({"type": "number_within", "value": 42, "tolerance": 0.5}, "It is 41.6", "It is 43"),
    ({"type": "number_within", "value": 3.14, "tolerance": 0.01}, "3.141", "about three"),
    ({"type": "number_within", "value": 1000}, "1,000 exactly", "1,001"),
    ({"type": "length", "min_length": 3, "max_length": 10}, "abcdef", "ab"),
    ({"type": "length", "max_length": 5}, "short", "much too long"),
    ({"type": "similarity"}, "The answer is 42!", "I do not know."),
    (
        {"type": "similarity", "value": "red green blue", "method": "token_sort_ratio"},
        "blue green red",
        "yellow",
    ),
    ({"type": "similarity", "threshold": 0.95}, "The answer is 42.", "The answer is 41."[:-3]),
]


@pytest.mark.parametrize(("data", "good", "bad"), PASS_FAIL, ids=[str(row[0]) for row in PASS_FAIL])
def test_each_evaluator_passes_a_good_output_and_fails_a_bad_one(
    data: dict[str, Any], good: str, bad: str
) -> None:
    spec = EvaluatorSpec.model_validate(data)

    passed = score(spec, CASE, CaseOutcome(good, latency_ms=120.0, cost=0.002))
    failed = score(spec, CASE, CaseOutcome(bad, latency_ms=120.0, cost=0.002))

    assert passed.passed and passed.error is None and passed.score is not None, passed
    assert passed.score >= spec.threshold
    assert not failed.passed and failed.error is None and failed.score is not None, failed
    assert 0.0 <= failed.score < spec.threshold
    assert passed.evaluator == failed.evaluator == spec.name


@pytest.mark.parametrize(
    ("data", "good", "bad"),
    [
        ({"type": "latency_below", "max_ms": 500}, CaseOutcome("x", 499.9), CaseOutcome("x", 500.1)),
        (
            {"type": "cost_below", "max_usd": 0.01},
            CaseOutcome("x", 1, cost=0.01),
            CaseOutcome("x", 1, cost=0.02),
        ),
    ],
)
def test_latency_and_cost_judge_the_call_even_when_it_failed(
    data: dict[str, Any], good: CaseOutcome, bad: CaseOutcome
) -> None:
    spec = EvaluatorSpec.model_validate(data)
    for outcome, verdict in ((good, True), (bad, False)):
        assert score(spec, CASE, outcome) == Score(spec.name, float(verdict), verdict)
        failed_call = CaseOutcome("", outcome.latency_ms, cost=outcome.cost, error="upstream 500")
        assert score(spec, CASE, failed_call) == Score(spec.name, float(verdict), verdict)


def test_contains_a_list_scores_the_share_found() -> None:
    spec = EvaluatorSpec.model_validate({"type": "contains", "value": ["a", "b", "c", "d"], "threshold": 0.5})
    verdict = score(spec, CASE, CaseOutcome("a or b", 1.0))
    assert (verdict.score, verdict.passed) == (0.5, True)


def test_similarity_scores_between_zero_and_one() -> None:
    spec = EvaluatorSpec.model_validate({"type": "similarity"})
    verdict = score(spec, CASE, CaseOutcome("The answer is 42", 1.0))
    assert verdict.score is not None and 0.9 < verdict.score < 1.0 and verdict.passed


def test_default_names_and_thresholds() -> None:
    names = {
        spec.name: spec.threshold
        for spec in parse_evaluators(
            [
                {"type": "contains", "value": "refund"},
                {"type": "not_contains", "value": ["x", "y"]},
                {"type": "exact_match"},
                {"type": "regex", "pattern": "^ok"},
                {"type": "json_path", "path": "$.a", "value": 1},
                {"type": "similarity"},
                {"type": "latency_below", "max_ms": 2000},
                {"type": "cost_below", "max_usd": 0.01},
                {"type": "llm_judge", "deployment": "judge", "rubric": "polite?"},
                {"type": "length", "min_length": 1, "max_length": 80, "name": "short", "threshold": 0.5},
            ]
        )
    }
    assert names == {
        'contains "refund"': 1.0,
        'does not contain "x", "y"': 1.0,
        "exact match expected": 1.0,
        "matches /^ok/": 1.0,
        "$.a == 1": 1.0,
        "similar to expected": 0.8,
        "latency ≤ 2000 ms": 1.0,
        "cost ≤ $0.01": 1.0,
        "judged by judge": 0.7,
        "short": 0.5,
    }


def test_a_spec_round_trips_through_its_stored_data() -> None:
    data = {"type": "json_schema", "schema": {"type": "object"}, "threshold": 1}
    spec = EvaluatorSpec.model_validate(data)
    stored = spec.as_data()
    assert stored == {
        "type": "json_schema",
        "name": "matches JSON schema",
        "threshold": 1.0,
        "schema": {"type": "object"},
    }
    assert EvaluatorSpec.model_validate(stored) == spec


# --- what cannot be judged ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"type": "exact_match"},
        {"type": "contains"},
        {"type": "similarity"},
        {"type": "number_within"},
        {"type": "json_path", "path": "$.a"},
    ],
)
def test_a_case_without_expected_output_is_an_errored_score(data: dict[str, Any]) -> None:
    spec = EvaluatorSpec.model_validate(data)
    verdict = score(spec, NO_EXPECTED, CaseOutcome('{"a": 1}', 1.0))
    assert verdict.score is None and not verdict.passed
    assert verdict.error is not None and "expected output" in verdict.error and "has none" in verdict.error


def test_number_within_compares_with_a_numeric_expected_output() -> None:
    spec = EvaluatorSpec.model_validate({"type": "number_within", "tolerance": 1})
    case = DatasetCase(inputs={}, expected=" 98.6 ")
    assert score(spec, case, CaseOutcome("About 99 degrees.", 1.0)).passed
    assert not score(spec, case, CaseOutcome("About 100 degrees.", 1.0)).passed


def test_an_expected_output_that_is_not_a_number_is_an_errored_score() -> None:
    spec = EvaluatorSpec.model_validate({"type": "number_within"})
    verdict = score(spec, CASE, CaseOutcome("42", 1.0))
    assert (
        verdict.score is None
        and verdict.error == "number_within: the expected output 'The answer is 42.' is not a number"
    )


def test_a_failed_call_is_an_errored_score_for_output_evaluators() -> None:
    spec = EvaluatorSpec.model_validate({"type": "contains", "value": "x"})
    verdict = score(spec, CASE, CaseOutcome("", 10.0, error="upstream_timeout: no answer in 30 s"))
    assert verdict == Score(
        'contains "x"', None, False, error="the call failed: upstream_timeout: no answer in 30 s"
    )


def test_an_unknown_cost_is_an_errored_score() -> None:
    spec = EvaluatorSpec.model_validate({"type": "cost_below", "max_usd": 1})
    verdict = score(spec, CASE, CaseOutcome("x", 10.0, cost=None))
    assert verdict.score is None and verdict.error is not None and "cost is not known" in verdict.error


def test_an_evaluator_that_raises_becomes_an_errored_score() -> None:
    """A spec that slipped past validation (built without it): its error is the score's."""
    spec = EvaluatorSpec.model_construct(
        type="regex", name="broken", threshold=1.0, pattern="(", case_sensitive=True
    )
    verdict = score(spec, CASE, CaseOutcome("x", 1.0))
    assert verdict.score is None and not verdict.passed
    assert verdict.error is not None and verdict.error.startswith("regex failed: error: missing )")


def test_the_llm_judge_is_not_scored_without_the_engine() -> None:
    spec = EvaluatorSpec.model_validate({"type": "llm_judge", "deployment": "judge", "rubric": "polite?"})
    verdict = score(spec, CASE, CaseOutcome("x", 1.0))
    assert verdict.score is None and verdict.error is not None and "CaseScorer" in verdict.error


# --- invalid specs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"type": "regex", "pattern": "(unclosed"},
            "regex: pattern '(unclosed' is not a valid regular expression",
        ),
        (
            {"type": "json_schema", "schema": {"type": "text"}},
            "json_schema: schema is not a valid JSON Schema",
        ),
        ({"type": "json_path", "path": "$.[", "value": 1}, "json_path: path '$.[' is not a valid JSON path"),
        ({"type": "regex"}, "regex needs pattern"),
        ({"type": "llm_judge", "deployment": "j"}, "llm_judge needs rubric"),
        (
            {"type": "contains", "pattern": "x"},
            "contains takes case_sensitive, ignore_whitespace, value; not pattern",
        ),
        ({"type": "contains", "value": []}, "contains: value must be text or a non-empty list of texts"),
        ({"type": "number_within", "value": "ten"}, "number_within: value must be a number"),
        ({"type": "length"}, "length needs min_length, max_length or both"),
        (
            {"type": "length", "min_length": 5, "max_length": 2},
            "length: min_length (5) is more than max_length (2)",
        ),
        ({"type": "similarity", "threshold": 1.5}, "threshold: Input should be less than or equal to 1"),
        ({"type": "fuzzy"}, "type: Input should be 'exact_match', 'contains'"),
        ({"type": "valid_json", "strict": True}, "strict: Extra inputs are not permitted"),
        ({"name": "no type"}, "type: Field required"),
    ],
)
def test_an_invalid_spec_is_refused_in_words(data: dict[str, Any], problem: str) -> None:
    problems = spec_problems(data)
    assert len(problems) == 1 and problems[0].startswith(problem), problems
    with pytest.raises(ValidationError):
        EvaluatorSpec.model_validate(data)


def test_parse_evaluators_lists_every_problem_at_once() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_evaluators(
            [
                {"type": "contains", "value": "a"},
                {"type": "regex", "pattern": "("},
                {"type": "contains", "value": "a"},
                {"type": "nope"},
            ]
        )
    assert refused.value.details == [
        "evaluators[1]: regex: pattern '(' is not a valid regular expression: missing ), unterminated"
        " subpattern at position 0",
        "evaluators[3]: type: Input should be 'exact_match', 'contains', 'not_contains', 'regex',"
        " 'valid_json', 'json_schema', 'json_path', 'number_within', 'length', 'similarity',"
        " 'latency_below', 'cost_below' or 'llm_judge'",
        "evaluators: the name 'contains \"a\"' is used twice",
    ]


# --- the judge's answer ------------------------------------------------------------------------

JUDGE = EvaluatorSpec.model_validate({"type": "llm_judge", "deployment": "judge", "rubric": "Is it right?"})


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"score": 0.9, "reason": "right"}', Score("judged by judge", 0.9, True, reason="right")),
        (
            '```json\n{"score": 0.5, "reason": "half"}\n```',
            Score("judged by judge", 0.5, False, reason="half"),
        ),
        ('{"score": 1, "reason": ""}', Score("judged by judge", 1.0, True, reason="")),
    ],
)
def test_a_judge_answer_becomes_a_score(answer: str, expected: Score) -> None:
    assert judge_score(JUDGE, answer) == expected


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("I think it is fine.", "the judge did not answer a JSON object: 'I think it is fine.'"),
        ('{"score": "high"}', "the judge's answer has no numeric score: {'score': 'high'}"),
        ('{"score": 7, "reason": "out of 10"}', "the judge's score 7 is not between 0 and 1"),
    ],
)
def test_a_bad_judge_answer_is_an_errored_score(answer: str, error: str) -> None:
    assert judge_score(JUDGE, answer) == Score("judged by judge", None, False, error=error)


def test_the_judge_gets_the_rubric_the_case_and_the_output_as_text() -> None:
    inputs = judge_inputs(JUDGE, CASE, CaseOutcome("42", 1.0))
    assert inputs == {
        "rubric": "Is it right?",
        "inputs": '{"question": "What is 6 x 7?"}',
        "expected": "The answer is 42.",
        "output": "42",
    }
    assert judge_inputs(JUDGE, NO_EXPECTED, CaseOutcome("42", 1.0))["expected"] == ""


def test_every_example_in_the_docs_is_a_valid_spec_and_every_type_has_one() -> None:
    """docs/evaluations.md, section "Evaluators": each `evaluators:` example parses."""
    path = ROOT / "docs" / "evaluations.md"
    text = path.read_text()
    section = text.index("## Evaluators")
    end = re.search(r"^## (?!Evaluators)", text[section:], re.MULTILINE)
    stop = section + end.start() if end else len(text)
    examples = [
        (yaml.safe_load(block.code) if block.language == "yaml" else json.loads(block.code))
        for block in blocks(path)
        if block.language in ("yaml", "json") and section < text.index(block.code) < stop
    ]
    specs = [
        spec
        for example in examples
        if "evaluators" in example
        for spec in parse_evaluators(example["evaluators"])
    ]
    assert {spec.type for spec in specs} == set(get_args(EvaluatorType))
