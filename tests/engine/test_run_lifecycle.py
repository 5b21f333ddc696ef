"""The engine owns the run (engine/invocation.py, docs/architecture.md "A run's lifecycle"):
every way a call can end is recorded exactly once, with the right status, whether or not the
response body was ever read; and a streamed answer says the same as a whole one, fallbacks
included. Through a live server and a scripted upstream on loopback (tests/support/fake_openai.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import orjson
import pytest
from starlette.types import Receive, Send

from promptdeck.engine.invoke import InvokeRequest
from promptdeck.surfaces.fetchhive import PING, stream_events
from promptdeck.surfaces.run_response import RunResponse
from tests.conftest import Deck
from tests.support import fake_openai
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, StartDeck, push_prompt, run_of

upstream, start_deck = fake_openai.upstream, fake_openai.start_deck

QUICK = {"retries": {"max_attempts": 1}}
TUNED = {
    "model": "openai/second",
    "messages": [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Tell {{audience}} the gist of: {{text}}"},
    ],
    "inputs": {"text": {"type": "string"}, "audience": {"type": "string"}},
}


def deployed(start_deck: StartDeck, config: dict[str, Any] | None = None) -> Deck:
    """A live server with deployment `d` on `openai/primary`, its default variant set to `config`."""
    deck = start_deck()
    push_prompt(deck.url, deck.admin_key, "d", "openai/primary")
    if config is not None:
        with deck.client() as client:
            response = client.put("/api/deployments/d/variants/default/config", json=config)
            assert response.status_code == 200, response.text
    return deck


def with_tuned_fallback(deck: Deck) -> None:
    """Version 2 (another model and messages) as the default variant's fallback; the variant
    itself stays on version 1."""
    with deck.client() as client:
        assert client.put("/api/deployments/d/variants/default", json={"version": 1}).status_code == 200
        assert client.post("/api/prompts/d/versions", json=TUNED).status_code == 201
        config = QUICK | {"fallbacks": [{"model": "openai/second", "version": 2}]}
        response = client.put("/api/deployments/d/variants/default/config", json=config)
        assert response.status_code == 200, response.text


def logged(deck: Deck) -> list[dict[str, Any]]:
    return [run for run in deck.runs() if run["deployment"] == "d"]


def hive_stream(deck: Deck, read_events: int | None = None) -> list[dict[str, Any]]:
    """A streamed Fetch Hive invoke of `d`; with `read_events`, hang up after that many."""
    events: list[dict[str, Any]] = []
    body = {"deployment": "d", "inputs": INPUTS, "streaming": True}
    with deck.client() as client, client.stream("POST", "/v1/invoke", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                events.append(orjson.loads(line[6:]))
                if read_events is not None and len(events) >= read_events:
                    break
    return events


@pytest.mark.parametrize("ending", ["answered", "failed", "fallback", "gone_mid_stream"])
def test_every_ending_is_recorded_exactly_once(
    upstream: FakeOpenAI, start_deck: StartDeck, ending: str
) -> None:
    if ending == "failed":
        upstream.scripts["primary"] = Script(status=400)
    elif ending == "fallback":
        upstream.scripts["primary"] = Script(status=500)
    elif ending == "gone_mid_stream":
        upstream.scripts["primary"] = Script(chunks=tuple("abcdefghij"), delay=0.2)
    deck = deployed(
        start_deck, QUICK | ({"fallbacks": [{"model": "openai/second"}]} if ending == "fallback" else {})
    )

    events = hive_stream(deck, read_events=2 if ending == "gone_mid_stream" else None)

    request_id = events[0]["request_id"]
    run = run_of(deck, request_id)
    expected = {
        "answered": ("success", None, "openai/primary"),
        "failed": ("error", "upstream_rejected", "openai/primary"),
        "fallback": ("success", None, "openai/second"),
        "gone_mid_stream": ("error", "cancelled", "openai/primary"),
    }[ending]
    assert (run["status"], run["error_code"], run["model"]) == expected, run
    if ending == "gone_mid_stream":
        assert run["output"] == "ab", "what reached the caller is what the run records"
        assert "went away" in run["error_message"]
    assert [r["request_id"] for r in logged(deck)] == [request_id], "one run, recorded once"


def stream_at_asgi_level(deck: Deck, receive: Receive, send: Send, keepalive: float) -> str:
    """A streamed Fetch Hive run of `d`, its response driven straight through ASGI on the
    server's own loop (so a test chooses the moment a caller hangs up or a socket drains): the
    run's request id, once the response's call has ended and the run is closed."""

    async def go() -> str:
        services = deck.services
        caller = await services.keys.caller(deck.admin_key, "invoke")
        request = InvokeRequest(
            caller=caller, dialect="fetchhive", deployment="d", inputs=INPUTS, stream=True
        )
        invocation = await services.engine.start(request)
        response = RunResponse(invocation, stream_events, keepalive, "text/event-stream", ping=PING)
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}
        await response(scope, receive, send)
        assert invocation not in services.engine.open_runs
        return invocation.run.request_id

    return str(deck.live.call(go))


def test_a_caller_gone_before_the_first_byte_is_recorded_as_cancelled(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    """The caller hangs up while the response's headers are still on their way, so the body is
    never iterated at all: the run is still recorded, once, as cancelled, and the upstream is
    never called. Driven at the ASGI level on the server's own loop, since over a socket the
    moment of a hang-up cannot be chosen."""
    deck = deployed(start_deck)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        await asyncio.sleep(0.2)  # a slow socket: the hang-up is noticed first

    request_id = stream_at_asgi_level(deck, receive, send, keepalive=15.0)

    assert [m["type"] for m in sent] == ["http.response.start"], "not one byte of the body"
    run = run_of(deck, request_id)
    assert (run["status"], run["error_code"], run["streamed"]) == ("error", "cancelled", True)
    assert [r["request_id"] for r in logged(deck)] == [request_id]
    assert upstream.count("primary") == 0


def test_no_keepalive_ping_follows_the_last_event(upstream: FakeOpenAI, start_deck: StartDeck) -> None:
    """A socket slow to take the last bytes (`[DONE]` written, then waiting to drain, as uvicorn
    does under load) left the keep-alive timer free to send a ping after them, which broke the
    stream's framing (seen once in CI). Once the run has ended, nothing is pinged."""
    deck = deployed(start_deck)
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the caller stays
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        body.append(message.get("body", b""))
        if b"[DONE]" in message.get("body", b""):
            await asyncio.sleep(0.3)  # written; the socket drains slowly

    stream_at_asgi_level(deck, receive, send, keepalive=0.05)
    whole = b"".join(body)
    assert whole.endswith(b"data: [DONE]\n\n"), whole[-200:]


def openai_answer(deck: Deck, stream: bool) -> dict[str, Any]:
    """`d` through the OpenAI dialect, whole or streamed; a streamed answer folded back into
    the fields a whole one has."""
    body = {"model": "d", "messages": [], "variables": INPUTS, "stream": stream}
    if not stream:
        with deck.client() as client:
            response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer
    body["stream_options"] = {"include_usage": True}
    chunks: list[dict[str, Any]] = []
    with deck.client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        chunks = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert len({(c["id"], c["model"], c["system_fingerprint"], c["created"]) for c in chunks}) == 1
    first, last = chunks[0], chunks[-1]
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    return {
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "system_fingerprint": first["system_fingerprint"],
        "content": "".join(c["delta"].get("content") or "" for c in choices),
        "finish_reason": choices[-1]["finish_reason"],
        "usage": last["usage"],
    }


def test_streamed_and_whole_answers_agree_on_every_field_when_a_tuned_fallback_answers(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    upstream.scripts["primary"] = Script(status=500)
    deck = deployed(start_deck)
    with_tuned_fallback(deck)

    whole = openai_answer(deck, stream=False)
    streamed = openai_answer(deck, stream=True)

    choice = whole["choices"][0]
    fields = ("model", "system_fingerprint", "usage")
    assert {k: whole[k] for k in fields} == {k: streamed[k] for k in fields}
    assert (choice["message"]["content"], choice["finish_reason"]) == (
        streamed["content"],
        streamed["finish_reason"],
    )
    assert whole["model"] == "openai/second"
    assert whole["system_fingerprint"] == "promptdeck:d@default:v2", "the version that answered"
    runs = logged(deck)
    assert [(r["version_number"], r["model"], r["streamed"]) for r in runs] == [
        (2, "openai/second", True),
        (2, "openai/second", False),
    ]


def test_runs_still_open_when_the_server_stops_are_recorded(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    """A run started but never read is recorded as cancelled by `close_open_runs`, which a
    graceful shutdown calls before it drains the writer (services.py)."""
    deck = deployed(start_deck)

    async def go() -> str:
        services = deck.services
        caller = await services.keys.caller(deck.admin_key, "invoke")
        invocation = await services.engine.start(
            InvokeRequest(caller=caller, dialect="fetchhive", deployment="d", inputs=INPUTS)
        )
        await services.engine.close_open_runs()
        return invocation.run.request_id

    request_id = deck.live.call(go)
    assert run_of(deck, request_id)["error_code"] == "cancelled"
    assert upstream.count("primary") == 0


def test_a_finished_invocation_is_freed_at_once_not_by_the_cycle_collector(
    upstream: FakeOpenAI, start_deck: StartDeck
) -> None:
    """While a run goes, the invocation and the generators that read its upstream refer to each
    other. When it ends they are closed there and then, so the run's objects (record, messages,
    answer) go with the last reference: no generator is left for the event loop to close with a
    task of its own, and nothing waits for the cycle collector (measurable CPU at 2,000 runs/s)."""
    deck = deployed(start_deck)

    async def go() -> bool:
        services = deck.services
        caller = await services.keys.caller(deck.admin_key, "invoke")
        invocation = await services.engine.start(
            InvokeRequest(caller=caller, dialect="fetchhive", deployment="d", inputs=INPUTS)
        )
        async with invocation:
            answer = await invocation.answer()
        assert answer.text == Script().text
        gone = weakref.ref(invocation)
        gc.disable()
        try:
            del invocation
            return gone() is None
        finally:
            gc.enable()

    assert deck.live.call(go), "the invocation outlived its last reference"


@pytest.mark.parametrize("streamed", [False, True])
def test_a_provider_that_raises_ends_the_run_as_a_provider_error(
    upstream: FakeOpenAI, start_deck: StartDeck, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    """A bug in a provider (an exception, not a `Failed` event) still ends the run cleanly: the
    caller gets a provider error (after the text already sent, when streamed), the run is
    recorded once, and it is not retried."""
    from promptdeck.providers.openai import OpenAIProvider

    real = OpenAIProvider.parse_stream

    def broken_body(self: OpenAIProvider, body: dict[str, Any]) -> list[Any]:
        raise RuntimeError("boom")

    async def broken_stream(self: OpenAIProvider, events: Any) -> Any:
        async for event in real(self, events):
            yield event
            if type(event).__name__ == "TextDelta":
                raise RuntimeError("boom")

    monkeypatch.setattr(OpenAIProvider, "parse_body", broken_body)
    monkeypatch.setattr(OpenAIProvider, "parse_stream", broken_stream)
    deck = deployed(start_deck)

    if streamed:
        events = hive_stream(deck)
        request_id = events[0]["request_id"]
        assert [e["type"] for e in events] == ["response", "error"]
        assert events[-1]["message"] == "the provider failed unexpectedly: boom"
    else:
        with deck.client() as client:
            response = client.post("/v1/prompt/invoke", json={"deployment": "d", "inputs": INPUTS})
        assert response.status_code == 502, response.text
        assert response.json()["error"] == "the provider failed unexpectedly: boom"
        request_id = response.headers.get("x-request-id") or logged(deck)[0]["request_id"]

    run = run_of(deck, request_id)
    assert (run["status"], run["error_code"]) == ("error", "provider_error"), run
    assert len(run["attempts"]) == 1, "an exception is not retried"
    assert [r["request_id"] for r in logged(deck)] == [request_id]
