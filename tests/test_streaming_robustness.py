"""Fetch Hive streams under stress: exact SSE bytes, keep-alive on a slow upstream, upstream
failures before and during a stream, and a caller that hangs up. Every run is still logged."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from fetch_hive_sdk import FetchHive

from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import (
    INPUTS,
    FakeOpenAI,
    Script,
    StartDeck,
    expect_hive_error,
    push_prompt,
    refused_url,
)

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

DONE = b"data: [DONE]\n\n"
PING = b": ping"
PATHS = ("/v1/prompt/invoke", "/v1/invoke")


def invoke_body(deployment: str, streaming: bool) -> dict[str, Any]:
    return {"deployment": deployment, "inputs": INPUTS, "streaming": streaming}


def raw_stream(deck: Deck, deployment: str, path: str = PATHS[0]) -> bytes:
    """The exact bytes of a streamed invoke (transfer framing removed, nothing else)."""
    with (
        deck.client() as client,
        client.stream("POST", path, json=invoke_body(deployment, True)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join(response.iter_raw())


def sse_events(body: bytes) -> list[dict[str, Any]]:
    """Check the framing of WIRE.md §1 byte by byte and return the events (pings dropped)."""
    assert body.endswith(DONE) and body.count(b"[DONE]") == 1, body[-200:]
    frames = body[: -len(DONE)].split(b"\n\n")
    assert frames.pop() == b"", "every frame ends with a blank line"
    events = []
    for frame in frames:
        assert b"\n" not in frame and b"\r" not in frame, frame
        if frame == PING:
            continue
        assert frame.startswith(b"data: {"), frame
        payload = frame[len(b"data: ") :]
        event = json.loads(payload)
        compact = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        assert payload == compact, "one compact JSON object per event"
        events.append(event)
    return events


def logged_run(deck: Deck, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The stored run for a request id, waiting for runs the server finishes asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in deck.runs() if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            assert found, f"run {request_id} was never logged"
            return found[0]
        time.sleep(0.1)


def assert_serves(deck: Deck) -> None:
    with deck.client() as client:
        response = client.post(PATHS[0], json=invoke_body("fast", False))
    assert response.status_code == 200, response.text
    assert response.json()["response"] == Script().text


@pytest.mark.parametrize("path", PATHS)
def test_sse_framing_is_exact(upstream: FakeOpenAI, start_deck: StartDeck, path: str) -> None:
    script = Script(chunks=("Hé", "llo\nwor", 'ld "quoted"', "\\ ✓", ""))
    upstream.scripts["tricky"] = script
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "tricky", "openai/tricky")

    events = sse_events(raw_stream(deck, "tricky", path))

    assert PING not in raw_stream(deck, "tricky", path)  # the default keep-alive is far longer
    assert [e["type"] for e in events] == ["response"] * 4 + ["usage"]
    assert "".join(e["response"] for e in events[:-1]) == script.text
    (request_id,) = {e["request_id"] for e in events}
    assert re.fullmatch(r"req_[0-9a-f]{32}", request_id)
    assert all(e["model"] == "openai/tricky" for e in events[:-1])
    assert list(events[0]) == ["request_id", "type", "model", "response"]
    usage = events[-1]
    assert list(usage) == ["request_id", "type", "usage", "stop_reason"]
    assert usage["stop_reason"] == "completed"
    assert isinstance(usage["usage"]["duration"], float)
    assert usage["usage"]["prompt_tokens"] == {"total_tokens": 11, "cached_tokens": 0}
    assert usage["usage"]["completion_tokens"] == {"total_tokens": 4, "reasoning_tokens": 0}
    assert usage["usage"]["total_tokens"] == 15
    assert logged_run(deck, request_id)["output"] == script.text


def test_keepalive_pings_on_a_slow_upstream_and_the_sdk_still_parses(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["slow"] = Script(chunks=("Slow", " answer"), delay=1.0)
    deck = start_deck(keepalive_seconds=0.2)
    push_prompt(deck.url, deck.admin_key, "slow", "openai/slow")

    body = raw_stream(deck, "slow")
    assert body.count(PING + b"\n\n") >= 3, body
    assert [e["type"] for e in sse_events(body)] == ["response", "response", "usage"]

    sdk = FetchHive(api_key=deck.admin_key, base_url=deck.url + "/v1", timeout=30)
    events = list(sdk.invoke_prompt_stream(deployment="slow", inputs=INPUTS))
    assert [e["type"] for e in events] == ["response", "response", "usage"]
    assert "".join(e["response"] for e in events[:-1]) == "Slow answer"
    run = logged_run(deck, events[0]["request_id"])
    assert run["status"] == "success" and run["output"] == "Slow answer"


def test_provider_failure_mid_stream_ends_with_one_error_event(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["cut"] = Script(chunks=("partial ", "answer ", "never ", "finished"), cut_after=2)
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "cut", "openai/cut")

    events = sse_events(raw_stream(deck, "cut"))

    assert [e["type"] for e in events] == ["response", "response", "error"]
    error = events[-1]
    assert list(error) == ["request_id", "type", "error", "message", "error_code"]
    assert error["error_code"] == "provider_error"
    assert error["error"] == error["message"] and "openai" in error["message"]
    run = logged_run(deck, error["request_id"])
    assert run["status"] == "error" and run["error_code"]
    assert run["output"] == "partial answer "
    assert run["streamed"] is True
    assert_serves(deck)


def test_non_streaming_provider_failure_is_a_502_and_logged(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["down"] = Script(status=503)
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "down", "openai/down")

    with deck.client() as client:
        response = client.post(PATHS[0], json=invoke_body("down", False))

    message = expect_hive_error(response, 502, "provider_error")
    assert "503" in message
    run = logged_run(deck, response.json()["request_id"])
    assert run["status"] == "error" and run["error_code"] == "upstream_error"
    assert run["streamed"] is False and "503" in run["error_message"]
    assert_serves(deck)


UPSTREAM_FAILURES = {  # how the upstream misbehaves -> the code the run is logged with
    "error-status": (Script(status=500), "upstream_error"),
    "garbage": (Script(raw=b"data: {this is not json\n\n"), "upstream_bad_response"),
    "hangs": (Script(hang=True), "upstream_timeout"),
    "drops-the-connection": (Script(cut_after=0), "upstream_error"),
}


@pytest.mark.parametrize("failure", UPSTREAM_FAILURES)
def test_broken_upstream_gives_clean_502s_and_the_server_keeps_serving(
    upstream: FakeOpenAI, start_deck: StartDeck, failure: str
) -> None:
    script, code = UPSTREAM_FAILURES[failure]
    upstream.scripts["broken"] = script
    deck = start_deck(upstream_read_timeout=0.5, upstream_total_timeout=1.0)
    push_prompt(deck.url, deck.admin_key, "broken", "openai/broken")

    with deck.client() as client:
        plain = client.post(PATHS[0], json=invoke_body("broken", False))
    assert "openai" in expect_hive_error(plain, 502, "provider_error")
    streamed = sse_events(raw_stream(deck, "broken"))
    assert [e["type"] for e in streamed] == ["error"] and "openai" in streamed[0]["message"]
    assert streamed[0]["error_code"] == "provider_error"
    assert_serves(deck)

    for request_id in (plain.json()["request_id"], streamed[0]["request_id"]):
        run = logged_run(deck, request_id)
        assert (run["status"], run["error_code"]) == ("error", code)


def test_refused_upstream_gives_a_clean_502(start_deck: StartDeck) -> None:
    dead = refused_url()
    deck = start_deck(upstream_url=dead)
    push_prompt(deck.url, deck.admin_key, "nowhere", "openai/nowhere")

    with deck.client() as client:
        codes = []
        for _ in range(4):
            response = client.post(PATHS[0], json=invoke_body("nowhere", False))
            assert dead in expect_hive_error(response, 502, "provider_error")
            codes.append(logged_run(deck, response.json()["request_id"])["error_code"])
        assert client.get("/api/health").json()["status"] == "ok"
    # Each call is tried twice; after five failures in a row the circuit breaker opens and
    # answers at once, still naming the upstream's own failure.
    assert codes == ["upstream_unreachable", "upstream_unreachable", "circuit_open", "circuit_open"]
    attempts = logged_run(deck, response.json()["request_id"])["attempts"]
    assert [a["error_code"] for a in attempts] == ["circuit_open"]


def test_client_that_hangs_up_mid_stream_still_gets_its_run_logged(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["long"] = Script(chunks=("first",) + ("more",) * 20, delay=0.3)
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "long", "openai/long")

    with (
        deck.client() as client,
        client.stream("POST", PATHS[0], json=invoke_body("long", True)) as response,
    ):
        first_line = next(response.iter_lines())
    request_id = json.loads(first_line.removeprefix("data: "))["request_id"]

    run = logged_run(deck, request_id)
    assert run["status"] == "error" and run["error_code"] == "cancelled"
    assert run["output"].startswith("first") and len(run["output"]) < len(upstream.script("long").text)
    assert_serves(deck)
