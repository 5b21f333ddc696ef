"""The OpenAI-shaped dialects on the wire: every bad field is refused in OpenAI's error shape
with the right status and `param` before any provider call, and the SSE bytes are framed as
OpenAI frames them (role first, deltas, finish, usage, `[DONE]`, keep-alive comments, and one
error event on a failure mid-stream)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Deck
from tests.support.fake_openai import INPUTS, FakeOpenAI, Script, deck_over, push_prompt, run_of, sqlite_url

CHAT = "/v1/chat/completions"
RUN = "/prompt/fast/run"
USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def deck(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deck]:
    directory: Path = tmp_path_factory.mktemp("openai-dialects")
    with deck_over(upstream.url, sqlite_url(directory), directory, keepalive_seconds=0.2) as deck:
        yield deck


def post(deck: Deck, path: str, body: Any, key: str | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with deck.client(key) as client:
        return client.post(path, content=content, headers={"Content-Type": "application/json"})


def expect_error(response: httpx.Response, status: int, kind: str, code: str, param: str | None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert (error["type"], error["code"], error["param"]) == (kind, code, param), error
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "fast", "messages": USER, "variables": INPUTS, **fields}


BAD_CHAT: dict[str, tuple[dict[str, Any], str]] = {
    "missing model": ({"messages": USER, "variables": INPUTS}, "model"),
    "model not a string": (chat_body(model=3), "model"),
    "model empty variant": (chat_body(model="fast@"), "model"),
    "model empty": (chat_body(model="@beta"), "model"),
    "missing messages": ({"model": "fast", "variables": INPUTS}, "messages"),
    "messages an object": (chat_body(messages={"role": "user"}), "messages"),
    "message not an object": (chat_body(messages=["hi"]), "messages[0]"),
    "unknown role": (chat_body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    "user without content": (chat_body(messages=[{"role": "user"}]), "messages[0].content"),
    "content a number": (chat_body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    "image part": (
        chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "messages[0].content[0].image_url.url",
    ),
    "nested bad message": (
        chat_body(messages=[*USER, {"role": "user", "content": [{"type": "text", "text": 1}]}]),
        "messages[1].content[0].text",
    ),
    "tool message without id": (
        chat_body(messages=[{"role": "tool", "content": "1"}]),
        "messages[0].tool_call_id",
    ),
    "tool_calls not a list": (
        chat_body(messages=[{"role": "assistant", "tool_calls": {"id": "c"}}]),
        "messages[0].tool_calls",
    ),
    "tool call without function": (
        chat_body(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]),
        "messages[0].tool_calls[0].function",
    ),
    "tool call arguments an object": (
        chat_body(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
                    ],
                }
            ]
        ),
        "messages[0].tool_calls[0].function.arguments",
    ),
    "variables a list": (chat_body(variables=["x"]), "variables"),
    "stream a string": (chat_body(stream="yes"), "stream"),
    "stream_options a list": (chat_body(stream_options=[]), "stream_options"),
    "include_usage a string": (
        chat_body(stream_options={"include_usage": "y"}),
        "stream_options.include_usage",
    ),
    "temperature a string": (chat_body(temperature="hot"), "temperature"),
    "temperature too high": (chat_body(temperature=3), "temperature"),
    "top_p a boolean": (chat_body(top_p=True), "top_p"),
    "max_tokens negative": (chat_body(max_tokens=-1), "max_tokens"),
    "max_completion_tokens a float": (chat_body(max_completion_tokens=1.5), "max_completion_tokens"),
    "both token limits differ": (chat_body(max_tokens=5, max_completion_tokens=6), "max_completion_tokens"),
    "stop a number": (chat_body(stop=1), "stop"),
    "stop a list of numbers": (chat_body(stop=[1]), "stop[0]"),
    "seed a string": (chat_body(seed="7"), "seed"),
    "presence_penalty too low": (chat_body(presence_penalty=-5), "presence_penalty"),
    "frequency_penalty a string": (chat_body(frequency_penalty="x"), "frequency_penalty"),
    "reasoning_effort unknown": (chat_body(reasoning_effort="max"), "reasoning_effort"),
    "n of two": (chat_body(n=2), "n"),
    "tools an object": (chat_body(tools=TOOL), "tools"),
    "tool without type": (chat_body(tools=[{"function": {"name": "f"}}]), "tools[0].type"),
    "tool with a bad name": (
        chat_body(tools=[{"type": "function", "function": {"name": "a b"}}]),
        "tools[0].function.name",
    ),
    "tool parameters a list": (
        chat_body(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
        "tools[0].function.parameters",
    ),
    "tool description a number": (
        chat_body(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]),
        "tools[0].function.description",
    ),
    "tool_choice unknown": (chat_body(tool_choice="always"), "tool_choice"),
    "tool_choice without name": (
        chat_body(tool_choice={"type": "function", "function": {}}),
        "tool_choice.function.name",
    ),
    "response_format unknown": (chat_body(response_format={"type": "xml"}), "response_format.type"),
    "json_schema without schema": (
        chat_body(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
        "response_format.json_schema.schema",
    ),
    "user a number": (chat_body(user=7), "user"),
    "nested metadata": (chat_body(metadata={"a": {"b": 1}}), "metadata"),
    "missing variables": (chat_body(variables=None), "variables"),
    "variable of the wrong type": (chat_body(variables={**INPUTS, "text": 5}), "variables"),
}

BAD_RUN: dict[str, tuple[dict[str, Any], str]] = {
    "model a number": ({"variables": INPUTS, "model": 4}, "model"),
    "model without provider": ({"variables": INPUTS, "model": "gpt-4o"}, "model"),
    "model of an unknown provider": ({"variables": INPUTS, "model": "nobody/x"}, "model"),
    "variables a string": ({"variables": "x"}, "variables"),
    "missing variables": ({}, "variables"),
    "stream a number": ({"variables": INPUTS, "stream": 1}, "stream"),
    "nested metadata": ({"variables": INPUTS, "metadata": {"a": [1]}}, "metadata"),
}


@pytest.mark.parametrize("case", BAD_CHAT)
@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_chat_field_is_a_400_naming_it(
    deck: Deck, upstream: FakeOpenAI, case: str, stream: bool
) -> None:
    body, param = BAD_CHAT[case]
    before = len(upstream.seen)
    message = expect_error(
        post(deck, CHAT, {**body, "stream": body.get("stream", stream)}),
        400,
        "invalid_request_error",
        "invalid_value",
        param,
    )
    assert param.split("[")[0].split(".")[0] in message
    assert len(upstream.seen) == before


@pytest.mark.parametrize("case", BAD_RUN)
@pytest.mark.parametrize("stream", [False, True])
def test_a_bad_traceport_field_is_a_400_naming_it(
    deck: Deck, upstream: FakeOpenAI, case: str, stream: bool
) -> None:
    body, param = BAD_RUN[case]
    before = len(upstream.seen)
    expect_error(
        post(deck, RUN, {"stream": stream, **body}), 400, "invalid_request_error", "invalid_value", param
    )
    assert len(upstream.seen) == before


@pytest.mark.parametrize("path", [CHAT, RUN])
@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_a_400(deck: Deck, path: str, raw: bytes) -> None:
    expect_error(post(deck, path, raw), 400, "invalid_request_error", "invalid_value", None)


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_deployments_and_variants_are_404s(deck: Deck, upstream: FakeOpenAI, stream: bool) -> None:
    before = len(upstream.seen)
    for model in ("nope", "fast@nope"):
        expect_error(
            post(deck, CHAT, chat_body(model=model, stream=stream)),
            404,
            "invalid_request_error",
            "model_not_found",
            "model",
        )
    expect_error(
        post(deck, "/prompt/nope/run", {"variables": INPUTS, "stream": stream}),
        404,
        "invalid_request_error",
        "model_not_found",
        None,
    )
    assert len(upstream.seen) == before


@pytest.mark.parametrize("key", [None, "pd_not_a_key"])
def test_a_bad_or_missing_key_is_a_401(deck: Deck, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for method, path in (("POST", CHAT), ("POST", RUN), ("GET", "/v1/models")):
        response = httpx.request(method, deck.url + path, json=chat_body(), headers=headers)
        expect_error(response, 401, "invalid_request_error", "invalid_api_key", None)


def test_models_are_the_workspace_deployments(deck: Deck) -> None:
    with deck.client() as client:
        body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        ("fast", "model", "promptdeck"),
        ("summarize", "model", "promptdeck"),
    ]


# ── the wire ─────────────────────────────────────────────────────────────────


def raw_stream(deck: Deck, path: str, body: dict[str, Any]) -> bytes:
    with deck.client() as client, client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.read()


def frames(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    return raw.split(b"\n\n")[:-1]


def chunks(raw: bytes) -> list[Any]:
    return [
        orjson.loads(f.removeprefix(b"data: ")) for f in frames(raw) if f != b"data: [DONE]" and f[:1] != b":"
    ]


@pytest.mark.parametrize("path", [CHAT, RUN])
def test_sse_framing_is_exact(deck: Deck, path: str) -> None:
    body = {"variables": INPUTS, "stream": True, "stream_options": {"include_usage": True}}
    if path == CHAT:
        body.update(model="fast", messages=USER)
    raw = raw_stream(deck, path, body)
    assert all(f.startswith(b"data: {") for f in frames(raw)[:-1]) and frames(raw)[-1] == b"data: [DONE]"
    events = chunks(raw)
    assert all(b"\n" not in orjson.dumps(e) for e in events)
    first, *middle, final, usage = events
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hello"}
    assert [e["choices"][0]["delta"] for e in middle] == [{"content": t} for t in (", ", "world", "!")]
    assert all(e["choices"][0]["finish_reason"] is None for e in [first, *middle])
    assert final["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] == 11
    assert usage["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert all(e["usage"] is None for e in events[:-1])
    for event in events:
        assert event["object"] == "chat.completion.chunk" and event["model"] == "openai/fast"
        assert list(event)[:4] == ["id", "object", "created", "model"]
    assert len({e["id"] for e in events}) == 1 and events[0]["id"].startswith("chatcmpl-")
    run = run_of(deck, "req_" + events[0]["id"].removeprefix("chatcmpl-"))
    assert run["dialect"] == ("openai" if path == CHAT else "traceport") and run["streamed"] is True


def test_no_usage_chunk_unless_asked(deck: Deck) -> None:
    events = chunks(raw_stream(deck, CHAT, {**chat_body(), "stream": True}))
    assert all(e["choices"] for e in events) and all("usage" not in e for e in events)


def test_keepalive_comments_fill_silences(deck: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["slow"] = Script(chunks=("Slow", " answer"), delay=0.7)
    push_prompt(deck.url, deck.admin_key, "slow", "openai/slow")
    raw = raw_stream(deck, CHAT, {**chat_body(model="slow"), "stream": True})
    assert raw.count(b": keep-alive\n\n") >= 3
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in chunks(raw)) == "Slow answer"


def test_a_failure_mid_stream_is_one_error_event_then_close(deck: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["cut"] = Script(chunks=("partial ", "answer ", "never"), cut_after=2)
    push_prompt(deck.url, deck.admin_key, "cut", "openai/cut")
    raw = raw_stream(deck, "/prompt/cut/run", {"variables": INPUTS, "stream": True})
    assert b"[DONE]" not in raw
    *deltas, error = chunks(raw)
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas) == "partial answer "
    assert list(error) == ["error"]
    assert error["error"]["type"] == "server_error" and error["error"]["code"]
    assert "openai" in error["error"]["message"]


def test_a_provider_failure_before_streaming_is_a_502(deck: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["broken"] = Script(status=400)
    push_prompt(deck.url, deck.admin_key, "broken", "openai/broken")
    response = post(deck, "/prompt/broken/run", {"variables": INPUTS})
    expect_error(response, 502, "server_error", response.json()["error"]["code"], None)
    assert response.headers["x-should-retry"] == "false"
    run = run_of(deck, response.headers["x-request-id"])
    assert run["status"] == "error" and run["dialect"] == "traceport"


REASONING_ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "model": "thinker",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "42", "reasoning_content": "think"},
            "finish_reason": "length",
        }
    ],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 3},
    },
}


def test_reasoning_and_usage_details_in_both_modes(deck: Deck, upstream: FakeOpenAI) -> None:
    upstream.scripts["thinker"] = Script(raw=orjson.dumps(REASONING_ANSWER))
    push_prompt(deck.url, deck.admin_key, "thinker", "openai/thinker")
    body = post(deck, CHAT, chat_body(model="thinker")).json()
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    ]
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "42", "refusal": None, "reasoning_content": "think"},
            "finish_reason": "length",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 3},
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2,
    }
    events = chunks(raw_stream(deck, CHAT, {**chat_body(model="thinker"), "stream": True}))
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas == [
        {"role": "assistant", "content": "", "reasoning_content": "think"},
        {"content": "42"},
        {},
    ]
    assert events[-1]["choices"][0]["finish_reason"] == "length"
