"""The `openai-responses` provider against wire transcripts, played by a real HTTP server on loopback.

Each transcript follows OpenAI's API reference for the Responses API: `POST /v1/responses`,
the `Response` object (`output` items of type `reasoning` with `summary_text` parts,
`message` with `output_text` parts, `function_call`; `status`, `incomplete_details`,
`usage` with `input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`)
and its streaming events (`event: <type>` then `data: <JSON>` carrying the same `type` and a
`sequence_number`; `response.created` … `response.completed` / `response.incomplete` /
`response.failed`, or an `error` event; no `[DONE]`). Function calls follow OpenAI's
function-calling guide, reasoning summaries its reasoning guide, `text.format` its
structured-outputs guide, error bodies its error-code guide. The tests check both the
request the provider sends and the normalized events it produces.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from promptdeck.config import Settings
from promptdeck.domain.events import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Event,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.openai_responses import OpenAIResponsesProvider
from tests.support.postgres import free_port
from tests.support.transcript_server import (
    TranscriptServer,
    failure,
    fold,
    provider_maker,
    respond,
    silence,
    stream,
)

MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
MODEL = "o4-mini-2025-04-16"


# --- transcripts ---------------------------------------------------------------------------------


def response(
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    *,
    status: str = "completed",
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `Response` object as the API returns it (and as `response.*` lifecycle events carry it)."""
    return {
        "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
        "object": "response",
        "created_at": 1741476777,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": "You answer in one short sentence.",
        "max_output_tokens": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def reasoning(*summary: str, id_: str = "rs_6876cf02e0bc8192b74af0cb64f1f4a6") -> dict[str, Any]:
    return {"id": id_, "type": "reasoning", "summary": [{"type": "summary_text", "text": s} for s in summary]}


def message(text: str, id_: str = "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41") -> dict[str, Any]:
    return {
        "id": id_,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call(call_id: str, name: str, arguments: str, id_: str) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


# The streamed life of each kind of output item: added, its deltas, its `*.done` events, done.


def reasoning_events(index: int, item: dict[str, Any], *parts: list[str]) -> list[dict[str, Any]]:
    """`response.reasoning_summary_part.added`, `…summary_text.delta`s, `….done`s per summary part."""
    at = {"item_id": item["id"], "output_index": index}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": {**item, "summary": []}}
    ]
    for number, (pieces, whole) in enumerate(zip(parts, item["summary"], strict=True)):
        assert "".join(pieces) == whole["text"]
        part = {**at, "summary_index": number}
        events.append(
            {
                "type": "response.reasoning_summary_part.added",
                **part,
                "part": {"type": "summary_text", "text": ""},
            }
        )
        events += [{"type": "response.reasoning_summary_text.delta", **part, "delta": p} for p in pieces]
        events.append({"type": "response.reasoning_summary_text.done", **part, "text": whole["text"]})
        events.append({"type": "response.reasoning_summary_part.done", **part, "part": whole})
    return [*events, {"type": "response.output_item.done", "output_index": index, "item": item}]


def message_events(index: int, item: dict[str, Any], *pieces: str) -> list[dict[str, Any]]:
    """`response.content_part.added`, `response.output_text.delta`s, their `*.done` events."""
    (content,) = item["content"]
    assert "".join(pieces) == content["text"]
    at = {"item_id": item["id"], "output_index": index, "content_index": 0}
    empty = {**content, "text": ""}
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **at, "part": empty},
        *({"type": "response.output_text.delta", **at, "delta": p, "logprobs": []} for p in pieces),
        {"type": "response.output_text.done", **at, "text": content["text"], "logprobs": []},
        {"type": "response.content_part.done", **at, "part": content},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def call_events(index: int, item: dict[str, Any], *pieces: str) -> list[dict[str, Any]]:
    """`response.function_call_arguments.delta`s between the item's added and done events."""
    assert "".join(pieces) == item["arguments"]
    at = {"item_id": item["id"], "output_index": index}
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "arguments": ""},
        },
        *({"type": "response.function_call_arguments.delta", **at, "delta": p} for p in pieces),
        {"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def sse(whole: dict[str, Any], *items: list[dict[str, Any]], end: str = "response.completed") -> list[bytes]:
    """A whole streamed response: `response.created`, `response.in_progress`, each item's
    events, then `end` carrying the final `Response`; as server-sent events, numbered."""
    opening = {**whole, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    events = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
        *(event for item in items for event in item),
    ]
    if end:
        events.append({"type": end, "response": whole})
    return encode(*events)


def encode(*events: dict[str, Any]) -> list[bytes]:
    return [
        f"event: {event['type']}\ndata: ".encode() + orjson.dumps({**event, "sequence_number": n}) + b"\n\n"
        for n, event in enumerate(events)
    ]


USAGE = {
    "input_tokens": 1117,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 46,
    "output_tokens_details": {"reasoning_tokens": 32},
    "total_tokens": 1163,
}
REASONING = reasoning(
    "**Answering a simple question**\n\nThe user asks for France's capital.", "**Done**\n\nParis."
)
MESSAGE = message("The capital of France is Paris.")
ANSWER = response([REASONING, MESSAGE], USAGE)
ANSWER_STREAM = sse(
    ANSWER,
    reasoning_events(
        0,
        REASONING,
        ["**Answering a simple question**\n\n", "The user asks", " for France's capital."],
        ["**Done**\n\n", "Paris."],
    ),
    message_events(1, MESSAGE, "The capital", " of France is", " Paris."),
)
ANSWER_EVENTS: list[Event] = [
    Started(f"openai-responses/{MODEL}"),
    ReasoningDelta("**Answering a simple question**\n\n"),
    ReasoningDelta("The user asks"),
    ReasoningDelta(" for France's capital."),
    ReasoningDelta("\n\n**Done**\n\n"),
    ReasoningDelta("Paris."),
    TextDelta("The capital"),
    TextDelta(" of France is"),
    TextDelta(" Paris."),
    Usage(input=1117, cached_input=1024, output=46, reasoning=32),
    Finished(STOP),
]

# Two parallel calls after a reasoning item: output indexes 1 and 2, call indexes 0 and 1.
TOOL_USAGE = {
    "input_tokens": 74,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 83,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 157,
}
TOOL_REASONING = reasoning("**Checking the weather**\n\nI will call get_weather for both cities.")
PARIS = function_call(
    "call_DdmO9pD3xa9XTPNJ32zg2hcA",
    "get_weather",
    '{"location":"Paris, France"}',
    "fc_67ca09c6bedc8190a7abfec07b1a1332",
)
ROME = function_call(
    "call_x6d4pVqUX8bZb5H2fKfnWwL1",
    "get_weather",
    '{"location":"Rome, Italy"}',
    "fc_67ca09c6bedc8190a7abfec07b1a1333",
)
TOOL_ANSWER = response([TOOL_REASONING, PARIS, ROME], TOOL_USAGE)
TOOL_STREAM = sse(
    TOOL_ANSWER,
    reasoning_events(
        0, TOOL_REASONING, ["**Checking the weather**\n\n", "I will call get_weather for both cities."]
    ),
    call_events(1, PARIS, '{"', "location", '":"', "Paris", ", France", '"}'),
    call_events(2, ROME, '{"location":', '"Rome, Italy"}'),
)

# Cut off by `max_output_tokens`: text so far, `status: incomplete`.
SHORT_USAGE = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 16,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 46,
}
SHORT_MESSAGE = {**message("The capital of"), "status": "incomplete"}
SHORT_ANSWER = response([SHORT_MESSAGE], SHORT_USAGE, status="incomplete", incomplete="max_output_tokens")
SHORT_STREAM = sse(
    SHORT_ANSWER, message_events(0, SHORT_MESSAGE, "The capital", " of"), end="response.incomplete"
)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[TranscriptServer]:
    async with TranscriptServer(prefix="/v1") as server:
        yield server


@pytest.fixture
async def make_provider(upstream: TranscriptServer) -> AsyncIterator[Callable[..., OpenAIResponsesProvider]]:
    async with provider_maker(OpenAIResponsesProvider, upstream.base_url, "sk-test") as make:
        yield make


async def run(provider: OpenAIResponsesProvider, stream: bool = True, **fields: Any) -> list[Event]:
    messages = fields.pop("messages", MESSAGES)
    call = ProviderCall("o4-mini", messages, fields.pop("params", {}), stream=stream, **fields)
    return [event async for event in provider.stream(call)]


# --- the request we send -------------------------------------------------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a given location.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
}
CONVERSATION = [
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "name": "get_weather",
                "arguments": '{"location":"Paris"}',
            },
            {
                "id": "call_x6d4pVqUX8bZb5H2fKfnWwL1",
                "name": "get_weather",
                "arguments": '{"location":"Rome"}',
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "content": '{"temp_c": 18}'},
    {"role": "tool", "tool_call_id": "call_x6d4pVqUX8bZb5H2fKfnWwL1", "content": '{"temp_c": 24}'},
    {"role": "system", "content": "Answer in Celsius."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_3", "name": "get_weather", "arguments": "{}"}],
    },
    {"role": "tool", "tool_call_id": "call_3", "content": "unknown"},
]


async def test_streaming_request_maps_the_neutral_call(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """OpenAI API reference, Create a model response: `POST {base}/responses` with bearer auth;
    the leading system message as `instructions`, the rest as `input` items (tool calls as
    `function_call`, results as `function_call_output`); `max_output_tokens`; `reasoning` with
    `summary: auto`; function tools with `strict: false` (the Responses API would otherwise make
    them strict); `tool_choice` `{type: function, name}`; `text.format` for a JSON schema.
    `stop`, `seed` and the penalties have no place in this API and stay behind."""
    upstream.play(stream(TOOL_STREAM))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 512, "reasoning_effort": "high"}
    dropped = {"stop": ["\n"], "seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.1, "top_k": 5}
    await run(
        make_provider(),
        messages=CONVERSATION,
        params={**params, **dropped},
        tools=[WEATHER_TOOL, {**WEATHER_TOOL, "name": "strict_weather", "strict": True}],
        tool_choice={"name": "get_weather"},
        response_format={"type": "json_schema", "name": "city", "schema": schema, "strict": True},
    )
    (seen,) = upstream.requests
    assert (seen.method, seen.path) == ("POST", "/v1/responses")
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "model": "o4-mini",
        "instructions": "You are a weather assistant.",
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": "Let me check."},
            {
                "type": "function_call",
                "call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "name": "get_weather",
                "arguments": '{"location":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_x6d4pVqUX8bZb5H2fKfnWwL1",
                "name": "get_weather",
                "arguments": '{"location":"Rome"}',
            },
            {
                "type": "function_call_output",
                "call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "output": '{"temp_c": 18}',
            },
            {
                "type": "function_call_output",
                "call_id": "call_x6d4pVqUX8bZb5H2fKfnWwL1",
                "output": '{"temp_c": 24}',
            },
            {"role": "system", "content": "Answer in Celsius."},
            {"type": "function_call", "call_id": "call_3", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_3", "output": "unknown"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_output_tokens": 512,
        "reasoning": {"effort": "high", "summary": "auto"},
        "tools": [
            {"type": "function", **WEATHER_TOOL, "strict": False},
            {"type": "function", **WEATHER_TOOL, "name": "strict_weather", "strict": True},
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        "store": False,
        "stream": True,
    }


@pytest.mark.parametrize(
    ("neutral", "wire"),
    [
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "text"}, {"type": "text"}),
        (
            {"type": "json_schema", "schema": {"type": "object"}},
            {"type": "json_schema", "name": "response", "schema": {"type": "object"}},
        ),
    ],
    ids=["json-object", "text", "unnamed-schema"],
)
async def test_non_streaming_request_and_other_formats(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIResponsesProvider],
    neutral: dict[str, Any],
    wire: dict[str, Any],
) -> None:
    """Structured outputs guide, Responses: `text.format` is `json_object`, `text`, or a named
    `json_schema`; a string `tool_choice` passes as it is; no `stream` (false by default), and
    no reasoning block without a `reasoning_effort`. No key, no auth header."""
    upstream.play(respond(200, ANSWER))
    await run(make_provider(api_key=""), stream=False, response_format=neutral, tool_choice="none")
    (seen,) = upstream.requests
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "o4-mini",
        "instructions": MESSAGES[0]["content"],
        "input": [MESSAGES[1]],
        "tool_choice": "none",
        "text": {"format": wire},
        "store": False,
    }


async def test_per_call_base_url_and_key_override_the_configured_ones(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """A workspace's stored credential: its base URL and key are used instead of the configured
    ones (which here point nowhere)."""
    upstream.play(stream(ANSWER_STREAM), respond(200, ANSWER))
    provider = make_provider(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="sk-configured")
    for streamed in (True, False):
        events = await run(
            provider, stream=streamed, base_url=upstream.base_url + "/", api_key="sk-workspace"
        )
        assert fold(events).text == "The capital of France is Paris."
    assert [seen.headers["authorization"] for seen in upstream.requests] == ["Bearer sk-workspace"] * 2
    assert [seen.path for seen in upstream.requests] == ["/v1/responses"] * 2


def test_from_settings_reads_the_openai_settings() -> None:
    """The OpenAI base URL and key (`PROMPTDECK_OPENAI_*`) and the shared upstream timeouts."""
    settings = Settings(
        openai_base_url="https://api.openai.com/v1/",
        openai_api_key="sk-settings",
        upstream_connect_timeout=1.5,
        upstream_read_timeout=20.0,
        upstream_total_timeout=90.0,
    )
    provider = OpenAIResponsesProvider.from_settings(settings)
    assert provider.name == "openai-responses"
    assert provider.request(ProviderCall("o3", MESSAGES)).url == "https://api.openai.com/v1/responses"
    assert provider.prepared(ProviderCall("o3", MESSAGES)).headers["Authorization"] == "Bearer sk-settings"
    assert (provider.timeouts.connect, provider.timeouts.read, provider.timeouts.total) == (1.5, 20.0, 90.0)


# --- answers -------------------------------------------------------------------------------------


async def test_non_streaming_answer_with_reasoning_summary_and_usage(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """The response object: a `reasoning` item with two `summary_text` parts (one blank line
    between them), a `message` with `output_text`, usage with cached and reasoning tokens."""
    upstream.play(respond(200, ANSWER))
    assert await run(make_provider(), stream=False) == [
        Started(f"openai-responses/{MODEL}"),
        ReasoningDelta("**Answering a simple question**\n\nThe user asks for France's capital."),
        ReasoningDelta("\n\n**Done**\n\nParis."),
        TextDelta("The capital of France is Paris."),
        Usage(input=1117, cached_input=1024, output=46, reasoning=32),
        Finished(STOP),
    ]


async def test_streamed_answer_with_reasoning_summary_and_usage(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """Streaming events: `response.reasoning_summary_text.delta` per summary part, then
    `response.output_text.delta`, then `response.completed` carrying the usage."""
    upstream.play(stream(ANSWER_STREAM))
    assert await run(make_provider()) == ANSWER_EVENTS


async def test_streamed_parallel_tool_calls(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """Function-calling guide, streaming: `response.output_item.added` names each call
    (`call_id`, `name`), `response.function_call_arguments.delta` carries its arguments by
    `output_index`. Calls are indexed by their position among the calls, not among all items."""
    upstream.play(stream(TOOL_STREAM))
    events = await run(make_provider())
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", ""),
        *(ToolCallDelta(0, None, None, p) for p in ('{"', "location", '":"', "Paris", ", France", '"}')),
        ToolCallDelta(1, "call_x6d4pVqUX8bZb5H2fKfnWwL1", "get_weather", ""),
        *(ToolCallDelta(1, None, None, p) for p in ('{"location":', '"Rome, Italy"}')),
    ]
    assert events[-2:] == [Usage(input=74, output=83, reasoning=64), Finished(TOOL_CALLS)]
    folded = fold(events)
    assert folded.tools == {
        0: {
            "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
            "name": "get_weather",
            "arguments": '{"location":"Paris, France"}',
        },
        1: {
            "id": "call_x6d4pVqUX8bZb5H2fKfnWwL1",
            "name": "get_weather",
            "arguments": '{"location":"Rome, Italy"}',
        },
    }
    assert folded.reasoning == "**Checking the weather**\n\nI will call get_weather for both cities."


async def test_non_streaming_tool_calls(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """`function_call` output items, whole: one delta each, with id, name and all arguments."""
    upstream.play(respond(200, TOOL_ANSWER))
    events = await run(make_provider(), stream=False)
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", '{"location":"Paris, France"}'),
        ToolCallDelta(1, "call_x6d4pVqUX8bZb5H2fKfnWwL1", "get_weather", '{"location":"Rome, Italy"}'),
    ]
    assert events[-1] == Finished(TOOL_CALLS)


@pytest.mark.parametrize(
    ("streamed", "answer"),
    [(ANSWER_STREAM, ANSWER), (TOOL_STREAM, TOOL_ANSWER), (SHORT_STREAM, SHORT_ANSWER)],
    ids=["text-and-reasoning", "tool-calls", "incomplete"],
)
async def test_stream_and_non_stream_give_the_same_answer(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIResponsesProvider],
    streamed: list[bytes],
    answer: dict[str, Any],
) -> None:
    """The same response streamed and whole: identical model, reasoning, text, tool calls,
    usage and stop reason."""
    upstream.play(stream(streamed), respond(200, answer))
    provider = make_provider()
    from_stream, whole = fold(await run(provider)), fold(await run(provider, stream=False))
    assert from_stream == whole
    assert whole.failed is None and whole.usage is not None and whole.usage.input > 0


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("reason", "stop"), [("max_output_tokens", LENGTH), ("content_filter", CONTENT_FILTER)]
)
async def test_incomplete_answers(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIResponsesProvider],
    reason: str,
    stop: str,
    streamed: bool,
) -> None:
    """`status: incomplete` with `incomplete_details.reason` (`response.incomplete` when
    streamed): the text so far, the usage, and `length` or `content_filter`."""
    answer = {**SHORT_ANSWER, "incomplete_details": {"reason": reason}}
    transcript = sse(
        answer, message_events(0, SHORT_MESSAGE, "The capital", " of"), end="response.incomplete"
    )
    upstream.play(stream(transcript) if streamed else respond(200, answer))
    folded = fold(await run(make_provider(), stream=streamed))
    assert (folded.text, folded.stop) == ("The capital of", stop)
    assert folded.usage == Usage(input=30, output=16, reasoning=12)


async def test_json_schema_answer_and_a_refusal(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """Structured outputs guide: the JSON arrives as `output_text`; a refusal arrives instead as
    a `refusal` content part (`response.refusal.delta` when streamed) and is told as text."""
    refusal = {**message(""), "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    refused = response([refusal], USAGE)
    refused_stream = sse(
        refused,
        [
            {"type": "response.output_item.added", "output_index": 0, "item": {**refusal, "content": []}},
            *(
                {
                    "type": "response.refusal.delta",
                    "item_id": refusal["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": p,
                }
                for p in ("I can't", " help with that.")
            ),
            {"type": "response.output_item.done", "output_index": 0, "item": refusal},
        ],
    )
    upstream.play(respond(200, response([message('{"city":"Paris"}')], USAGE)), stream(refused_stream))
    assert fold(await run(make_provider(), stream=False)).text == '{"city":"Paris"}'
    assert fold(await run(make_provider())).text == "I can't help with that."


async def test_whole_items_without_deltas(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """A compatible server that streams only `response.output_item.done` for each item (no
    deltas): the items' reasoning, text and call arguments still reach the caller, once."""
    items = [REASONING, MESSAGE, PARIS]
    done = (
        [{"type": "response.output_item.done", "output_index": n, "item": item}]
        for n, item in enumerate(items)
    )
    upstream.play(stream(sse(response(items, TOOL_USAGE), *done)))
    folded = fold(await run(make_provider()))
    assert (
        folded.reasoning
        == "**Answering a simple question**\n\nThe user asks for France's capital.\n\n**Done**\n\nParis."
    )
    assert folded.text == "The capital of France is Paris."
    assert folded.tools == {
        0: {"id": PARIS["call_id"], "name": "get_weather", "arguments": PARIS["arguments"]}
    }


# --- upstream errors -----------------------------------------------------------------------------


def openai_error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (
            400,
            openai_error(
                "Unsupported parameter: 'temperature' is not supported with this model.",
                "invalid_request_error",
                "unsupported_parameter",
                "temperature",
            ),
            "upstream_rejected",
            False,
        ),
        (
            401,
            openai_error(
                "Incorrect API key provided: sk-test. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
            "upstream_auth_failed",
            False,
        ),
        (
            404,
            openai_error(
                "The model `o4-mini` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
            "upstream_not_found",
            False,
        ),
        (
            429,
            openai_error(
                "Rate limit reached for o4-mini in organization org-x on tokens per min (TPM): "
                "Limit 200000, Used 199000, Requested 3000.",
                "tokens",
                "rate_limit_exceeded",
            ),
            "upstream_rate_limited",
            True,
        ),
        (
            500,
            openai_error(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            "upstream_error",
            True,
        ),
    ],
    ids=["400", "401", "404", "429", "500"],
)
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_openai_error_bodies(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIResponsesProvider],
    status: int,
    body: dict[str, Any],
    code: str,
    retryable: bool,
    streamed: bool,
) -> None:
    """OpenAI error codes guide: an HTTP status with `{"error": {"message", "type", "param",
    "code"}}`; the upstream's message and code reach the caller, with the status."""
    upstream.play(respond(status, body))
    events = await run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed]
    assert (failed.code, failed.retryable) == (code, retryable)
    assert failed.message.startswith("openai-responses upstream at http://127.0.0.1:")
    assert f"HTTP {status}" in failed.message and body["error"]["message"] in failed.message


async def test_response_failed_mid_stream(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """`response.failed` ends a stream: its `response.error` `{code, message}` is the failure;
    text already went out, so it is not retryable."""
    error = {"code": "server_error", "message": "The model failed to generate a response."}
    failed_response = response([], None, status="failed", error=error)
    partial = {**message("The capital"), "status": "incomplete"}
    transcript = sse(failed_response, message_events(0, partial, "The capital"), end="response.failed")
    upstream.play(stream(transcript))
    events = await run(make_provider())
    assert events[:2] == [Started(f"openai-responses/{MODEL}"), TextDelta("The capital")]
    failed = failure(events)
    assert failed.code == "upstream_error" and not failed.retryable
    assert "failed mid-stream: The model failed to generate a response. (server_error)" in failed.message


async def test_failed_response_answered_whole(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """A non-streamed `Response` with `status: failed`: the failure only; nothing went out, and
    a rate limit is worth retrying."""
    error = {"code": "rate_limit_exceeded", "message": "Rate limit reached for o4-mini."}
    upstream.play(respond(200, response([], None, status="failed", error=error)))
    events = await run(make_provider(), stream=False)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_rate_limited" and failed.retryable
    assert "Rate limit reached for o4-mini. (rate_limit_exceeded)" in failed.message


async def test_error_event_before_anything_else(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """An `error` streaming event (`{type: error, code, message, param}`) as the first event:
    the failure alone, retryable for a rate limit since nothing reached the caller."""
    upstream.play(
        stream(
            encode(
                {
                    "type": "error",
                    "code": "rate_limit_exceeded",
                    "message": "Too many requests.",
                    "param": None,
                }
            )
        )
    )
    events = await run(make_provider())
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_rate_limited" and failed.retryable
    assert "Too many requests. (rate_limit_exceeded)" in failed.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"object": "response", "model": "o3"}', "without an output list"),
        (b'{"object": "response", "output": "Paris"}', "without an output list"),
        (b'{"object": "response", "output": ["Paris"]}', "cannot read"),
        (b"<html><body>Welcome to nginx!</body></html>", "not JSON"),
    ],
    ids=["no-output", "output-string", "item-string", "html"],
)
async def test_garbage_non_streaming_body(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIResponsesProvider],
    body: bytes,
    expected: str,
) -> None:
    """A 200 answer that is not a `Response` object: a clean `upstream_bad_response`."""
    upstream.play(respond(200, body))
    failed = failure(await run(make_provider(), stream=False))
    assert failed.code == "upstream_bad_response" and expected in failed.message


# --- broken streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["clean", "drop"])
@pytest.mark.parametrize(("delivered", "told"), [(0, 0), (7, 4)], ids=["no-event", "mid-reasoning"])
async def test_stream_cut_before_the_response_ends(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIResponsesProvider],
    end: str,
    delivered: int,
    told: int,
) -> None:
    """A stream that stops before `response.completed` / `incomplete` / `failed`, its body
    ended properly or the connection gone mid-chunk. Retryable only if nothing went out."""
    upstream.play(stream(ANSWER_STREAM[:delivered], end=end))
    events = await run(make_provider())
    assert events[:-1] == ANSWER_EVENTS[:told]
    failed = failure(events)
    assert failed.code == "upstream_stream_cut" and failed.message.startswith("openai-responses upstream")
    assert failed.retryable == (told == 0)


async def test_stream_without_a_terminal_event(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """Every item streamed in full, but no `response.completed`: still cut (usage and the stop
    reason never came)."""
    upstream.play(stream(ANSWER_STREAM[:-1]))
    events = await run(make_provider())
    assert events[:-1] == ANSWER_EVENTS[:-2]
    assert failure(events).code == "upstream_stream_cut"


# --- broken connections (the shared `HttpUpstream`, mapped for this provider) ---------------------


async def test_connection_refused(make_provider: Callable[..., OpenAIResponsesProvider]) -> None:
    """Nothing listens at the base URL (`POST /v1/responses`):
    `upstream_unreachable`, retryable, naming the address, streamed or not."""
    port = free_port()
    for streamed in (True, False):
        events = await run(make_provider(base_url=f"http://127.0.0.1:{port}/v1"), stream=streamed)
        failed = failure(events)
        assert events == [failed]
        assert failed.code == "upstream_unreachable" and failed.retryable
        assert (
            failed.message.startswith("openai-responses upstream") and f"127.0.0.1:{port}" in failed.message
        )


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_upstream_that_never_answers(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider], streamed: bool
) -> None:
    """The upstream accepts the request (`POST /v1/responses`), then says nothing:
    `upstream_timeout` after the read limit (streaming) or the total limit (whole), not retried:
    the attempt has spent the whole limit."""
    upstream.play(silence)
    began = time.monotonic()
    events = await run(make_provider(read_timeout=0.3, total_timeout=0.3), stream=streamed)
    assert time.monotonic() - began < 2
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_timeout" and not failed.retryable  # its whole limit is spent
    assert failed.message.startswith("openai-responses upstream") and "0.3" in failed.message


# --- usage left out, and the payload -------------------------------------------------------------

QUIET_ANSWER = response([MESSAGE], None)
QUIET_STREAM = sse(QUIET_ANSWER, message_events(0, MESSAGE, "The capital", " of France is", " Paris."))


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_answer_without_usage_yields_no_usage_event(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIResponsesProvider], streamed: bool
) -> None:
    """OpenAI API reference, the `Response` object: `usage` may be null (as in
    `response.created`; some compatible servers never fill it). The answer still finishes, with
    no `Usage` event, so the engine estimates the usage (`usage_estimated: true`)."""
    upstream.play(stream(QUIET_STREAM) if streamed else respond(200, QUIET_ANSWER))
    events = await run(make_provider(), stream=streamed)
    folded = fold(events)
    assert (folded.text, folded.stop, folded.usage) == ("The capital of France is Paris.", STOP, None)
    assert not [e for e in events if isinstance(e, Usage)]


def test_payload_is_the_exact_request_body(make_provider: Callable[..., OpenAIResponsesProvider]) -> None:
    """OpenAI API reference, Create a model response: `payload()` is exactly the body a call
    sends (`instructions`, `input`, `max_output_tokens`, `reasoning`, `tools`, `text.format`,
    `store: false`), without sending it; a caller's raw body overrides are applied key by key."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    call = ProviderCall(
        "o4-mini",
        MESSAGES,
        {"max_tokens": 100, "reasoning_effort": "low", "seed": 7},
        stream=False,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        response_format={"type": "json_schema", "name": "city", "schema": schema},
    )
    provider = make_provider()
    payload = provider.payload(call)
    assert payload == provider.request(call).body
    assert payload == {
        "model": "o4-mini",
        "instructions": MESSAGES[0]["content"],
        "input": [MESSAGES[1]],
        "max_output_tokens": 100,
        "reasoning": {"effort": "low", "summary": "auto"},
        "tools": [{"type": "function", **WEATHER_TOOL, "strict": False}],
        "tool_choice": "required",
        "text": {"format": {"type": "json_schema", "name": "city", "schema": schema}},
        "store": False,
    }
    overridden = ProviderCall("o4-mini", MESSAGES, stream=False, raw_overrides={"body": {"store": True}})
    assert provider.payload(overridden)["store"] is True
