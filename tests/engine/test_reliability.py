"""A variant's reliability rules through a live server and a scripted upstream: retries with
backoff and Retry-After, fallbacks (also to a named upstream and a tuned version), the circuit
breaker, per-variant time limits, a caller that hangs up, and usage estimated when an upstream
reports none. Each test checks what the caller gets and what the run records."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import (
    INPUTS,
    FakeOpenAI,
    Script,
    StartDeck,
    invoke_streamed,
    push_prompt,
    run_of,
)
from tests.support.invoking import invoke

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

ANSWER = Script().text
QUICK = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05}  # the default backoff is 0.5 s


@pytest.fixture
def backup() -> Iterator[FakeOpenAI]:
    """A second fake upstream, served to promptdeck as the named upstream `backup`."""
    with FakeOpenAI() as server:
        yield server


def deployed(
    start_deck: StartDeck, model: str, config: dict[str, Any] | None = None, **settings: Any
) -> Deck:
    """A live server with deployment `d` serving `model`, its default variant set to `config`."""
    deck = start_deck(**settings)
    push_prompt(deck.url, deck.admin_key, "d", model)
    if config is not None:
        response = configure(deck, config)
        assert response.status_code == 200, response.text
    return deck


def configure(deck: Deck, config: dict[str, Any], variant: str = "default") -> httpx.Response:
    with deck.client() as client:
        return client.put(f"/api/deployments/d/variants/{variant}/config", json=config)


def retries(**overrides: Any) -> dict[str, Any]:
    return {"retries": QUICK | overrides}


def answered(deck: Deck, stream: bool) -> dict[str, Any]:
    """Invoke `d`, check the caller got the whole answer, and return the logged run."""
    if stream:
        events = invoke_streamed(deck, "d")
        assert [e["type"] for e in events] == ["response"] * 4 + ["usage"], events
        assert "".join(e["response"] for e in events[:-1]) == ANSWER
        request_id = events[0]["request_id"]
    else:
        response = invoke(deck, "d")
        assert response.status_code == 200, response.text
        assert response.json()["response"] == ANSWER
        request_id = response.json()["request_id"]
    run = run_of(deck, request_id)
    assert (run["status"], run["error_code"], run["output"]) == ("success", None, ANSWER)
    return run


def failed(deck: Deck, status: int = 502, code: str = "provider_error") -> dict[str, Any]:
    """Invoke `d` (not streamed), check the caller got a clean 502 (or `status`), and return the
    logged run."""
    response = invoke(deck, "d")
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code
    run = run_of(deck, response.json()["request_id"])
    assert run["status"] == "error" and run["error_message"] == response.json()["message"]
    return run


def tries(run: dict[str, Any]) -> list[tuple[str, str, int, int, str | None]]:
    """Each attempt as (model, status, fallback position, attempt number, error code)."""
    return [
        (a["model"], a["status"], a["fallback"], a["attempt"], a["error_code"]) for a in run["attempts"] or []
    ]


def recorded(run: dict[str, Any], *fields: str) -> tuple[Any, ...]:
    return tuple(run[name] for name in fields)


# ── retries ──────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_503_then_success_is_one_answer_from_two_attempts(
    upstream: FakeOpenAI, start_deck: StartDeck, stream: bool
) -> None:
    upstream.queue("flaky", Script(status=503))
    deck = deployed(start_deck, "openai/flaky", retries())

    run = answered(deck, stream)

    assert upstream.count("flaky") == 2
    assert tries(run) == [
        ("openai/flaky", "error", 0, 1, "upstream_error"),
        ("openai/flaky", "success", 0, 2, None),
    ]
    assert "503" in run["attempts"][0]["error"] and run["attempts"][0]["provider"] == "openai"
    assert all(a["duration_ms"] >= 0 for a in run["attempts"])
    assert recorded(run, "provider", "model", "version_number", "streamed") == (
        "openai",
        "openai/flaky",
        1,
        stream,
    )
    assert recorded(run, "input_tokens", "output_tokens", "usage_estimated") == (11, 4, False)
    assert recorded(run, "cost", "price_known") == (None, False)  # no price for a made-up model


def test_retry_after_is_waited_for(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.queue("limited", Script(status=429, headers=(("Retry-After", "0.2"),)))
    deck = deployed(start_deck, "openai/limited", retries(max_backoff_seconds=2))

    began = time.monotonic()
    run = answered(deck, stream=False)
    elapsed = time.monotonic() - began

    assert elapsed >= 0.2  # the jittered backoff alone would wait at most 0.01 s
    assert upstream.count("limited") == 2
    assert tries(run) == [
        ("openai/limited", "error", 0, 1, "upstream_rate_limited"),
        ("openai/limited", "success", 0, 2, None),
    ]


def test_retry_after_beyond_the_variants_max_backoff_is_not_waited_for(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["limited"] = Script(status=429, headers=(("Retry-After", "30"),))
    deck = deployed(start_deck, "openai/limited", retries(max_attempts=3, max_backoff_seconds=1))

    began = time.monotonic()
    run = failed(deck, 429, "too_many_requests")  # the upstream's rate limit is the caller's

    assert time.monotonic() - began < 5
    assert upstream.count("limited") == 1
    assert tries(run) == [("openai/limited", "error", 0, 1, "upstream_rate_limited")]
    assert run["error_code"] == "upstream_rate_limited" and "429" in run["error_message"]


def test_a_400_is_not_retried(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.scripts["picky"] = Script(status=400)
    deck = deployed(start_deck, "openai/picky", retries(max_attempts=3))

    run = failed(deck)

    assert upstream.count("picky") == 1
    assert tries(run) == [("openai/picky", "error", 0, 1, "upstream_rejected")]
    assert recorded(run, "error_code", "provider", "model", "version_number") == (
        "upstream_rejected",
        "openai",
        "openai/picky",
        1,
    )


def test_max_attempts_1_disables_retries(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.scripts["down"] = Script(status=503)
    deck = deployed(start_deck, "openai/down", retries())

    assert len(tries(failed(deck))) == 2  # the default: one retry
    assert upstream.count("down") == 2

    assert configure(deck, retries(max_attempts=1)).status_code == 200
    run = failed(deck)

    assert upstream.count("down") == 3
    assert tries(run) == [("openai/down", "error", 0, 1, "upstream_error")]
    assert run["error_code"] == "upstream_error" and "503" in run["error_message"]


def test_a_failure_after_text_was_streamed_is_never_retried(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["cut"] = Script(chunks=("partial ", "answer ", "never ", "finished"), cut_after=2)
    deck = deployed(start_deck, "openai/cut", retries(max_attempts=5))

    events = invoke_streamed(deck, "d")

    assert [e["type"] for e in events] == ["response", "response", "error"]
    assert upstream.count("cut") == 1
    run = run_of(deck, events[0]["request_id"])
    assert tries(run) == [("openai/cut", "error", 0, 1, "upstream_stream_cut")]
    assert recorded(run, "status", "error_code", "output") == (
        "error",
        "upstream_stream_cut",
        "partial answer ",
    )
    assert run["error_message"] == events[-1]["message"]


# ── fallbacks ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_fallback_model_answers_when_the_primary_always_fails(
    upstream: FakeOpenAI, start_deck: StartDeck, stream: bool
) -> None:
    upstream.scripts["primary"] = Script(status=500)
    deck = deployed(start_deck, "openai/primary", retries() | {"fallbacks": [{"model": "openai/second"}]})

    run = answered(deck, stream)

    assert (upstream.count("primary"), upstream.count("second")) == (2, 1)
    assert tries(run) == [
        ("openai/primary", "error", 0, 1, "upstream_error"),
        ("openai/primary", "error", 0, 2, "upstream_error"),
        ("openai/second", "success", 1, 1, None),
    ]
    assert recorded(run, "provider", "model", "version_number") == ("openai", "openai/second", 1)
    assert recorded(run, "input_tokens", "output_tokens", "usage_estimated") == (11, 4, False)


def test_a_fallback_on_a_named_upstream_answers(
    upstream: FakeOpenAI, backup: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["primary"] = Script(status=500)
    backup.scripts["rescue"] = Script(chunks=("Saved", "!"))
    config = retries(max_attempts=1) | {"fallbacks": [{"model": "backup/rescue"}]}
    deck = deployed(start_deck, "openai/primary", config, upstreams=f"backup={backup.url}")

    response = invoke(deck, "d")

    assert response.status_code == 200 and response.json()["response"] == "Saved!"
    assert (upstream.count("primary"), backup.count("rescue"), upstream.count("rescue")) == (1, 1, 0)
    assert backup.seen[0].path == "/v1/chat/completions"
    run = run_of(deck, response.json()["request_id"])
    assert tries(run) == [
        ("openai/primary", "error", 0, 1, "upstream_error"),
        ("backup/rescue", "success", 1, 1, None),
    ]
    assert [a["provider"] for a in run["attempts"]] == ["openai", "backup"]
    assert recorded(run, "status", "provider", "model", "output") == (
        "success",
        "backup",
        "backup/rescue",
        "Saved!",
    )


def test_a_fallback_with_its_own_version_sends_that_versions_messages(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["primary"] = Script(status=500)
    deck = deployed(start_deck, "openai/primary")
    tuned = {
        "model": "openai/second",
        "messages": [
            {"role": "system", "content": "Answer like a pirate."},
            {"role": "user", "content": "Tell {{audience}} the gist of: {{text}}"},
        ],
        "params": {"temperature": 0.9},
        "inputs": {"text": {"type": "string"}, "audience": {"type": "string"}},
    }
    with deck.client() as client:
        # pushed as "latest", the variant would follow version 2: pin it to version 1 first
        assert client.put("/api/deployments/d/variants/default", json={"version": 1}).status_code == 200
        created = client.post("/api/prompts/d/versions", json=tuned)
        assert created.status_code == 201, created.text
        assert created.json()["number"] == 2
        assert client.get("/api/deployments/d").json()["variants"]["default"]["version"] == 1
    config = retries(max_attempts=1) | {"fallbacks": [{"model": "openai/second", "version": 2}]}
    assert configure(deck, config).status_code == 200

    run = answered(deck, stream=False)

    (primary,) = [s.body for s in upstream.seen if s.model == "primary"]
    (second,) = [s.body for s in upstream.seen if s.model == "second"]
    assert primary["messages"][1]["content"] == f"Summarize for kids: {INPUTS['text']}"
    expected = [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": f"Tell kids the gist of: {INPUTS['text']}"},
    ]
    assert second["messages"] == expected
    assert second["temperature"] == 0.9
    assert recorded(run, "version_number", "provider", "model", "messages") == (
        2,
        "openai",
        "openai/second",
        expected,
    )
    assert tries(run) == [
        ("openai/primary", "error", 0, 1, "upstream_error"),
        ("openai/second", "success", 1, 1, None),
    ]


def test_a_fallback_that_cannot_be_called_is_refused_by_the_config_endpoint(
    start_deck: StartDeck,
) -> None:
    deck = deployed(start_deck, "openai/primary")

    unknown = configure(deck, {"fallbacks": [{"model": "nowhere/model-x"}]})
    missing_version = configure(deck, {"fallbacks": [{"model": "openai/second", "version": 9}]})

    assert unknown.status_code == 422, unknown.text
    error = unknown.json()["error"]
    assert error["code"] == "validation_error"
    assert "nowhere/model-x" in error["message"] and "no configured provider" in error["message"]
    assert "openai" in error["message"]  # the providers that do exist
    assert missing_version.status_code == 404, missing_version.text
    assert "9" in missing_version.json()["error"]["message"]
    with deck.client() as client:
        variant = client.get("/api/deployments/d").json()["variants"]["default"]
    assert variant["config"]["fallbacks"] == []


# ── circuit breaker ──────────────────────────────────────────────────────────────


def test_five_failures_open_the_circuit_and_the_next_call_fails_fast(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["down"] = Script(status=503)
    deck = deployed(start_deck, "openai/down", retries(max_attempts=1))
    for _ in range(5):
        last = failed(deck)
        assert last["error_code"] == "upstream_error"
    assert upstream.count("down") == 5

    began = time.monotonic()
    run = failed(deck)

    assert time.monotonic() - began < 1
    assert upstream.count("down") == 5  # nothing reached the upstream
    assert run["error_code"] == "circuit_open"
    assert last["error_message"] in run["error_message"]  # the last real failure, in its own words
    assert "503" in run["error_message"] and "30 s" in run["error_message"]
    assert tries(run) == [("openai/down", "error", 0, 1, "circuit_open")]
    assert recorded(run, "provider", "model", "version_number") == ("openai", "openai/down", 1)


def test_a_success_resets_the_count_of_failures_in_a_row(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    deck = deployed(start_deck, "openai/flaky", retries(max_attempts=1))
    for _ in range(2):
        upstream.queue("flaky", *[Script(status=503)] * 4)
        for _ in range(4):
            assert failed(deck)["error_code"] == "upstream_error"
        answered(deck, stream=False)

    assert upstream.count("flaky") == 10  # eight failures, never five in a row: always called


def open_circuit(upstream: FakeOpenAI, start_deck: StartDeck) -> Deck:
    """A deck whose circuit to `openai/flaky` is open, with a cooldown of 0.3 s instead of 30 s."""
    upstream.queue("flaky", *[Script(status=503)] * 5)
    deck = deployed(start_deck, "openai/flaky", retries(max_attempts=1))
    deck.services.engine.breakers.cooldown = 0.3
    for _ in range(5):
        failed(deck)
    assert failed(deck)["error_code"] == "circuit_open"
    time.sleep(0.4)
    return deck


def test_after_the_cooldown_one_successful_trial_closes_the_circuit(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = open_circuit(upstream, start_deck)

    trial = answered(deck, stream=False)

    assert tries(trial) == [("openai/flaky", "success", 0, 1, None)]
    for _ in range(2):
        answered(deck, stream=True)
    assert upstream.count("flaky") == 8


def test_a_trial_refused_for_its_request_does_not_leave_the_circuit_stuck_open(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = open_circuit(upstream, start_deck)
    upstream.queue("flaky", Script(status=400))

    assert failed(deck)["error_code"] == "upstream_rejected"  # the trial: not the upstream's fault
    run = answered(deck, stream=False)

    assert tries(run) == [("openai/flaky", "success", 0, 1, None)]
    assert upstream.count("flaky") == 7


def test_a_trial_whose_caller_hangs_up_does_not_leave_the_circuit_stuck_open(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    deck = open_circuit(upstream, start_deck)
    upstream.queue("flaky", Script(chunks=("first",) + ("more",) * 40, delay=0.1))
    body = {"deployment": "d", "inputs": INPUTS, "streaming": True}
    with deck.client() as client, client.stream("POST", "/v1/prompt/invoke", json=body) as response:
        request_id = orjson.loads(next(response.iter_lines()).removeprefix("data: "))["request_id"]
    assert run_of(deck, request_id)["error_code"] == "cancelled"

    run = answered(deck, stream=False)

    assert tries(run) == [("openai/flaky", "success", 0, 1, None)]


def test_an_open_circuit_moves_straight_to_the_fallback(
    upstream: FakeOpenAI, backup: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["down"] = Script(status=503)
    config = retries(max_attempts=1) | {"fallbacks": [{"model": "backup/rescue"}]}
    deck = deployed(start_deck, "openai/down", config, upstreams=f"backup={backup.url}")
    for _ in range(5):
        assert tries(answered(deck, stream=False))[0][-1] == "upstream_error"

    run = answered(deck, stream=True)

    assert (upstream.count("down"), backup.count("rescue")) == (5, 6)
    assert tries(run) == [
        ("openai/down", "error", 0, 1, "circuit_open"),
        ("backup/rescue", "success", 1, 1, None),
    ]
    assert run["attempts"][0]["duration_ms"] == 0
    assert recorded(run, "provider", "model") == ("backup", "backup/rescue")


# ── time limits per variant ──────────────────────────────────────────────────────


def test_a_first_byte_limit_ends_a_silent_stream_quickly(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.scripts["sleepy"] = Script(chunks=("late",), delay=3.0)
    config = {"timeouts": {"first_byte": 0.3}} | retries(max_attempts=1)
    deck = deployed(start_deck, "openai/sleepy", config)

    began = time.monotonic()
    events = invoke_streamed(deck, "d")

    assert time.monotonic() - began < 2
    assert [e["type"] for e in events] == ["error"]
    assert "first byte" in events[0]["message"]
    run = run_of(deck, events[0]["request_id"])
    assert recorded(run, "status", "error_code", "output") == ("error", "upstream_timeout", "")
    assert tries(run) == [("openai/sleepy", "error", 0, 1, "upstream_timeout")]


def test_a_first_byte_timeout_is_retried(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.queue("sleepy", Script(chunks=("late",), delay=3.0))
    deck = deployed(start_deck, "openai/sleepy", {"timeouts": {"first_byte": 0.3}} | retries())

    run = answered(deck, stream=True)

    assert tries(run) == [
        ("openai/sleepy", "error", 0, 1, "upstream_timeout"),
        ("openai/sleepy", "success", 0, 2, None),
    ]


def test_a_total_limit_ends_a_slow_trickle(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.scripts["trickle"] = Script(chunks=("drip ",) * 20, delay=0.15)
    deck = deployed(start_deck, "openai/trickle", {"timeouts": {"total": 0.6}} | retries(max_attempts=3))

    began = time.monotonic()
    events = invoke_streamed(deck, "d")

    assert time.monotonic() - began < 2
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "error" and 1 <= kinds.count("response") < 20, kinds
    assert "total" in events[-1]["message"]
    assert upstream.count("trickle") == 1  # text had reached the caller: no retry
    run = run_of(deck, events[0]["request_id"])
    assert recorded(run, "status", "error_code") == ("error", "upstream_timeout")
    assert run["output"] == "drip " * kinds.count("response")
    assert tries(run) == [("openai/trickle", "error", 0, 1, "upstream_timeout")]


def test_config_errors_are_all_listed_and_nothing_is_saved(start_deck: StartDeck) -> None:
    deck = deployed(start_deck, "openai/primary", retries(max_attempts=4))
    config = {
        "timeouts": {"first_byte": -1, "total": 0, "read": 5},
        "retries": {"max_attempts": 0, "backoff_seconds": -0.5},
        "fallbacks": [{"model": "no-provider"}],
        "extra": True,
    }

    response = configure(deck, config)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    details = error["details"]
    for fragment in (
        "extra: unknown field",
        "timeouts.read: unknown field",
        "timeouts.first_byte:",
        "timeouts.total:",
        "retries.max_attempts:",
        "retries.backoff_seconds:",
        "fallbacks[0].model:",
    ):
        assert sum(fragment in problem for problem in details) == 1, (fragment, details)
    assert all(problem in error["message"] for problem in details)
    with deck.client() as client:
        saved = client.get("/api/deployments/d").json()["variants"]["default"]["config"]
    assert saved["retries"]["max_attempts"] == 4


# ── a caller that hangs up ───────────────────────────────────────────────────────


def test_a_caller_that_hangs_up_closes_the_upstream_call_and_the_run_is_cancelled(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    chunks = ("first",) + ("more",) * 40
    upstream.scripts["long"] = Script(chunks=chunks, delay=0.1)
    deck = deployed(start_deck, "openai/long")

    body = {"deployment": "d", "inputs": INPUTS, "streaming": True}
    with deck.client() as client, client.stream("POST", "/v1/prompt/invoke", json=body) as response:
        first = next(response.iter_lines())
    request_id = orjson.loads(first.removeprefix("data: "))["request_id"]

    (seen,) = upstream.seen
    deadline = time.monotonic() + 5
    while not seen.hung_up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.hung_up, "the upstream call was left running"
    assert seen.chunks_sent < len(chunks)
    run = run_of(deck, request_id)
    assert recorded(run, "status", "error_code", "streamed") == ("error", "cancelled", True)
    assert run["output"].startswith("first") and len(run["output"]) < len("".join(chunks))
    assert tries(run) == [("openai/long", "error", 0, 1, "cancelled")]


# ── usage ────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_usage_is_estimated_when_the_upstream_reports_none(
    upstream: FakeOpenAI, start_deck: StartDeck, stream: bool
) -> None:
    upstream.scripts["quiet"] = Script(usage=None)
    deck = deployed(start_deck, "openai/quiet")

    if stream:
        events = invoke_streamed(deck, "d")
        usage, request_id = events[-1]["usage"], events[-1]["request_id"]
    else:
        response = invoke(deck, "d")
        usage, request_id = response.json()["usage"], response.json()["request_id"]

    run = run_of(deck, request_id)
    prompt = sum(len(m["content"]) for m in run["messages"])
    expected = (math.ceil(prompt / 4), math.ceil(len(ANSWER) / 4))
    assert expected[0] > 0 and expected[1] > 0
    assert (usage["prompt_tokens"]["total_tokens"], usage["completion_tokens"]["total_tokens"]) == expected
    assert recorded(run, "input_tokens", "output_tokens", "usage_estimated") == (*expected, True)
    assert recorded(run, "status", "output") == ("success", ANSWER)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_reported_usage_is_not_marked_estimated(
    upstream: FakeOpenAI, start_deck: StartDeck, stream: bool
) -> None:
    upstream.scripts["chatty"] = Script(usage=(123, 45))
    deck = deployed(start_deck, "openai/chatty")

    run = answered(deck, stream)

    assert recorded(run, "input_tokens", "output_tokens", "usage_estimated") == (123, 45, False)
