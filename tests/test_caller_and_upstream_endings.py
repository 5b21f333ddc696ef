"""How a call ends when one side stops playing along, as the hostile probe tried it: a caller
that hangs up on a non-streaming request, an upstream that rate-limits, and an upstream that
goes silent. Every upstream is a scripted fake on loopback (tests/support/fake_openai.py)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, expect_hive_error, run_of
from tests.support.invoking import invoke

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

VELLUM_INPUTS = [{"type": "STRING", "name": name, "value": value} for name, value in INPUTS.items()]
# One non-streaming request per dialect (and the console's playground), for deployment `fast`.
NON_STREAMING: dict[str, tuple[str, dict[str, Any]]] = {
    "fetchhive": ("/v1/prompt/invoke", {"deployment": "fast", "inputs": INPUTS}),
    "openai": ("/v1/chat/completions", {"model": "fast", "messages": [], "variables": INPUTS}),
    "traceport": ("/prompt/fast/run", {"variables": INPUTS}),
    "vellum": ("/v1/execute-prompt", {"prompt_deployment_name": "fast", "inputs": VELLUM_INPUTS}),
}


def post(deck: Deck, dialect: str, timeout: float = 30) -> httpx.Response:
    path, body = NON_STREAMING[dialect]
    headers = {"Authorization": f"Bearer {deck.admin_key}", "X-API-KEY": deck.admin_key}
    return httpx.post(deck.url + path, json=body, headers=headers, timeout=timeout)


@pytest.mark.parametrize("dialect", sorted(NON_STREAMING))
def test_a_non_streaming_caller_that_hangs_up_cancels_the_upstream_call(
    upstream: FakeOpenAI, start_deck: StartDeck, dialect: str
) -> None:
    upstream.scripts["fast"] = Script(delay=30.0)  # the whole answer only after 30 s
    deck = start_deck()

    began = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        post(deck, dialect, timeout=0.5)

    deadline = time.monotonic() + 5
    while not (upstream.seen and upstream.seen[0].hung_up) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.seen and upstream.seen[0].hung_up, "the upstream call ran on after the caller left"
    assert time.monotonic() - began < 5
    deck.flush()
    (run,) = [r for r in deck.runs() if r["deployment"] == "fast"]
    assert (run["status"], run["error_code"]) == ("error", "cancelled")


def test_an_upstream_rate_limit_reaches_a_fetch_hive_caller_as_429_with_retry_after(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["fast"] = Script(status=429, headers=(("Retry-After", "30"),))
    deck = start_deck()

    response = invoke(deck, "fast")

    expect_hive_error(response, 429, "too_many_requests")
    assert response.headers["retry-after"] == "30"
    assert "429" in response.json()["message"]
    run = run_of(deck, response.json()["request_id"])
    assert run["error_code"] == "upstream_rate_limited"


@pytest.mark.parametrize("dialect", ["openai", "traceport"])
def test_an_upstream_rate_limit_reaches_an_openai_caller_as_429_with_retry_after(
    upstream: FakeOpenAI, start_deck: StartDeck, dialect: str
) -> None:
    upstream.scripts["fast"] = Script(status=429, headers=(("Retry-After", "2.5"),))
    deck = start_deck()

    response = post(deck, dialect)

    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "3"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "upstream_rate_limited")


def test_any_other_upstream_failure_stays_a_502(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    upstream.scripts["fast"] = Script(status=400)
    deck = start_deck()
    response = invoke(deck, "fast")
    expect_hive_error(response, 502, "provider_error")
    assert "retry-after" not in response.headers


def test_a_silent_stream_is_cut_once_after_the_read_timeout(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    """Before: the read timeout was waited out once per attempt (120 s for a 60 s setting)."""
    upstream.scripts["fast"] = Script(hang=True)
    deck = start_deck(upstream_read_timeout=1.0)

    began = time.monotonic()
    body = {"deployment": "fast", "inputs": INPUTS, "streaming": True}
    with deck.client() as client, client.stream("POST", "/v1/prompt/invoke", json=body) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    elapsed = time.monotonic() - began

    (event,) = [orjson.loads(line.removeprefix("data: ")) for line in lines]
    assert event["type"] == "error" and "sent nothing for 1 s" in event["message"]
    assert 1.0 <= elapsed < 1.9, elapsed  # one wait, not two
    assert upstream.count("fast") == 1
    run = run_of(deck, event["request_id"])
    assert run["error_code"] == "upstream_timeout" and len(run["attempts"]) == 1


def test_a_silent_non_streaming_call_is_cut_once_after_the_total_limit(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["fast"] = Script(hang=True)
    deck = start_deck(upstream_total_timeout=1.0, upstream_read_timeout=0.2)

    began = time.monotonic()
    response = invoke(deck, "fast")
    elapsed = time.monotonic() - began

    expect_hive_error(response, 502, "provider_error")
    assert "sent nothing for 1 s" in response.json()["message"]
    assert 1.0 <= elapsed < 1.9, elapsed  # one wait, not two
    assert upstream.count("fast") == 1
