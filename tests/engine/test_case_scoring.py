"""The LLM judge (engine/case_scoring.py) through a live server's own engine: a deployment on a
scripted OpenAI-compatible upstream on loopback answers the verdict; the call is a run in the
log, tagged with the evaluator; a judge that cannot judge gives an errored score, never an
exception. And once on the embedded model, offline."""

from __future__ import annotations

import time
from typing import Any

from promptdeck.domain.datasets import DatasetCase
from promptdeck.domain.evaluation_outcomes import CaseOutcome, Score
from promptdeck.domain.evaluators import EvaluatorSpec, parse_evaluators
from promptdeck.engine.case_scoring import CaseScorer
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import FakeOpenAI, Script, StartDeck

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

CASE = DatasetCase(inputs={"question": "Where is my refund?"}, expected="It was sent on Monday.")
OUTCOME = CaseOutcome("Your refund went out on Monday.", latency_ms=80.0, cost=0.0001)
RUBRIC = "Does the answer say when the refund was sent?"
VERDICT = '{"score": 0.9, "reason": "It names the day."}'


def judge_document(deployment: str, model: str, max_tokens: int = 64) -> dict[str, Any]:
    """A judge prompt: the four inputs every judge gets, deployed as `deployment`."""
    text = {"type": "string", "required": True}
    return {
        "prompt": deployment,
        "model": model,
        "params": {"temperature": 0.0, "max_tokens": max_tokens, "seed": 7},
        "messages": [
            {
                "role": "system",
                "content": 'You grade answers. Reply only with JSON: {"score": 0..1, "reason": "..."}',
            },
            {
                "role": "user",
                "content": "Rubric: {{rubric}}\nInputs: {{inputs}}\n"
                "Expected: {{expected}}\nAnswer: {{output}}",
            },
        ],
        "inputs": {
            "rubric": text,
            "inputs": text,
            "output": text,
            "expected": {"type": "string", "required": False},
        },
        "deploy": {deployment: {"default": 1}},
    }


def push_judge(deck: Deck, deployment: str, model: str, max_tokens: int = 64) -> None:
    with deck.client() as client:
        response = client.post("/api/push", json=judge_document(deployment, model, max_tokens))
    assert response.status_code == 200, response.text


def judge(deployment: str, **extra: Any) -> EvaluatorSpec:
    return EvaluatorSpec.model_validate(
        {"type": "llm_judge", "deployment": deployment, "rubric": RUBRIC, **extra}
    )


def score_all(
    deck: Deck, specs: list[EvaluatorSpec], outcome: CaseOutcome = OUTCOME, scorer: CaseScorer | None = None
) -> list[Score]:
    """`CaseScorer.score_all` on the server's own loop, with the server's engine."""
    scorer = scorer or CaseScorer(deck.services.engine)

    async def go() -> list[Score]:
        return await scorer.score_all(
            deck.workspace_id, specs, CASE, outcome, metadata={"evaluation": "ev-1"}
        )

    result: list[Score] = deck.live.call(go)
    return result


def judge_runs(deck: Deck, deployment: str) -> list[dict[str, Any]]:
    return [run for run in deck.runs() if run["deployment"] == deployment]


def test_a_judge_deployment_scores_a_case_through_the_engine(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["judge"] = Script(chunks=(VERDICT,))
    deck = start_deck()
    push_judge(deck, "judge", "openai/judge")
    specs = list(parse_evaluators([judge("judge").as_data(), {"type": "contains", "value": "Monday"}]))

    scores = score_all(deck, specs)

    assert scores == [
        Score("judged by judge", 0.9, True, reason="It names the day."),
        Score('contains "Monday"', 1.0, True),
    ]
    sent = upstream.requests[-1]
    assert sent["response_format"]["type"] == "json_schema", "asked for structured output"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["score", "reason"]
    asked = sent["messages"][-1]["content"]
    assert (
        RUBRIC in asked and "Your refund went out on Monday." in asked and "It was sent on Monday." in asked
    )
    assert '"question": "Where is my refund?"' in asked
    [run] = judge_runs(deck, "judge")
    assert run["status"] == "success" and run["dialect"] == "evaluation"
    assert run["metadata"] == {"evaluation": "ev-1", "evaluator": "judged by judge"}
    with deck.client() as client:
        logged = client.get(f"/api/runs/{run['request_id']}").json()
    assert logged["inputs"]["rubric"] == RUBRIC and logged["inputs"]["expected"] == CASE.expected


def test_a_judge_that_cannot_judge_gives_an_errored_score(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["rambler"] = Script(chunks=("I quite liked ", "this answer."))
    upstream.scripts["broken"] = Script(status=400)
    deck = start_deck()
    push_judge(deck, "rambler", "openai/rambler")
    push_judge(deck, "broken", "openai/broken")
    specs = [
        judge("rambler"),
        judge("broken"),
        judge("nobody"),
        judge("rambler", threshold=0.2, name="again"),
    ]

    scores = score_all(deck, specs)

    assert [(s.evaluator, s.score, s.passed) for s in scores] == [
        ("judged by rambler", None, False),
        ("judged by broken", None, False),
        ("judged by nobody", None, False),
        ("again", None, False),
    ]
    assert scores[0].error == "the judge did not answer a JSON object: 'I quite liked this answer.'"
    assert scores[1].error is not None and scores[1].error.startswith("the judge 'broken' failed: ")
    assert scores[2].error == "the judge 'nobody' could not run: no deployment named 'nobody'"
    assert [run["status"] for run in judge_runs(deck, "broken")] == ["error"]


def test_a_failed_call_is_not_sent_to_the_judge(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = start_deck()
    push_judge(deck, "judge", "openai/judge")
    failed = CaseOutcome("", latency_ms=30.0, error="upstream_timeout: no answer")

    scores = score_all(
        deck, [judge("judge"), EvaluatorSpec.model_validate({"type": "latency_below", "max_ms": 100})], failed
    )

    assert scores == [
        Score("judged by judge", None, False, error="the call failed: upstream_timeout: no answer"),
        Score("latency ≤ 100 ms", 1.0, True),
    ]
    assert upstream.count("judge") == 0


def test_judge_calls_are_bounded(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    """Six judges, each answering in 0.3 s, two at a time: three rounds, never all at once."""
    upstream.scripts["slow"] = Script(chunks=(VERDICT,), delay=0.3)
    deck = start_deck()
    push_judge(deck, "slow", "openai/slow")
    specs = [judge("slow", name=f"judge {n}") for n in range(6)]

    began = time.monotonic()
    scores = score_all(deck, specs, scorer=CaseScorer(deck.services.engine, judge_concurrency=2))

    assert time.monotonic() - began >= 0.85
    assert [s.score for s in scores] == [0.9] * 6


def test_a_judge_on_the_embedded_model(start_deck: StartDeck) -> None:
    """Offline: the tiny built-in model is called as a judge and its run is logged. What it
    answers is its own; whatever it is, it becomes a score or an errored score, never a crash."""
    deck = start_deck()
    push_judge(deck, "local-judge", "local/smollm2-135m-instruct", max_tokens=24)

    [verdict] = score_all(deck, [judge("local-judge")])

    assert verdict.evaluator == "judged by local-judge"
    assert (verdict.score is None) == (verdict.error is not None)
    if verdict.error is not None:
        assert verdict.error.startswith("the judge did not answer") or "numeric score" in verdict.error
    [run] = judge_runs(deck, "local-judge")
    assert run["status"] == "success" and run["provider"] == "local"
    assert run["metadata"]["evaluator"] == "judged by local-judge"
