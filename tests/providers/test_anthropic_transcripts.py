"""The `anthropic` provider against recorded wire transcripts, played by a real HTTP server on loopback.

Each transcript follows Anthropic's documented Messages API format (named in the test's
docstring): the API reference's `message` object and request body, the streaming guide's
named server-sent events (`message_start` … `message_stop`, `ping`, `error`), the extended
thinking guide's `thinking_delta` / `signature_delta`, the tool use guide's `tool_use` blocks
and `input_json_delta`, the prompt caching guide's usage fields, and the errors page's
`{"type": "error", "error": {"type", "message"}, "request_id"}` bodies. The tests check both
the request the provider sends and the normalized events it produces.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from promptdeck.config import Settings
from promptdeck.domain.errors import ValidationFailed
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
from promptdeck.providers.anthropic import AnthropicProvider
from promptdeck.providers.base import ProviderCall
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
MODEL = "claude-sonnet-4-5-20250929"
KEY = "sk-ant-api03-test"


# --- transcripts ---------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> list[bytes]:
    """Server-sent events as Anthropic writes them: `event: <type>`, `data: <JSON>`, a blank line."""
    return [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events]


def message_start(usage: dict[str, Any], *, model: str = MODEL) -> dict[str, Any]:
    """The first event: the `message` object with empty `content` and the input usage so far."""
    return {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, usage: dict[str, Any]) -> dict[str, Any]:
    """Top-level changes near the end: `stop_reason`, and usage counts that are cumulative."""
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}


def message(
    content: list[dict[str, Any]], stop_reason: str, usage: dict[str, Any], *, model: str = MODEL
) -> dict[str, Any]:
    """A non-streaming `message` object."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def usage(
    input_tokens: int, output_tokens: int, *, cache_read: int = 0, cache_write: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


ANSWER_USAGE = usage(25, 9)
ANSWER = message([{"type": "text", "text": "The capital of France is Paris."}], "end_turn", ANSWER_USAGE)
ANSWER_STREAM = sse(
    message_start(usage(25, 1)),
    block_start(0, {"type": "text", "text": ""}),
    PING,
    delta(0, "text_delta", text="The capital"),
    delta(0, "text_delta", text=" of France is"),
    delta(0, "text_delta", text=" Paris."),
    block_stop(0),
    message_delta("end_turn", {"output_tokens": 9}),
    MESSAGE_STOP,
)

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
THINKING_USAGE = usage(48, 131)
THINKING_ANSWER = message(
    [
        {"type": "thinking", "thinking": "27 * 453 = 27 * 400 + 27 * 53 = 12,231.", "signature": SIGNATURE},
        {"type": "text", "text": "27 * 453 = 12,231"},
    ],
    "end_turn",
    THINKING_USAGE,
)
THINKING_STREAM = sse(
    message_start(usage(48, 3)),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, "thinking_delta", thinking="27 * 453 = 27 * 400"),
    delta(0, "thinking_delta", thinking=" + 27 * 53 = 12,231."),
    delta(0, "signature_delta", signature=SIGNATURE),
    block_stop(0),
    block_start(1, {"type": "text", "text": ""}),
    delta(1, "text_delta", text="27 * 453 = 12,231"),
    block_stop(1),
    message_delta("end_turn", {"output_tokens": 131}),
    MESSAGE_STOP,
)

WEATHER_ID = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
CLOCK_ID = "toolu_01A09q90qw90lq917835lq9"
TOOL_USAGE = usage(472, 89)
TOOL_ANSWER = message(
    [
        {"type": "text", "text": "Let me check the weather in Paris."},
        {"type": "tool_use", "id": WEATHER_ID, "name": "get_weather", "input": {"location": "Paris, France"}},
        {"type": "tool_use", "id": CLOCK_ID, "name": "get_time", "input": {}},
    ],
    "tool_use",
    TOOL_USAGE,
)
TOOL_STREAM = sse(
    message_start(usage(472, 2)),
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="Let me check"),
    delta(0, "text_delta", text=" the weather in Paris."),
    block_stop(0),
    block_start(1, {"type": "tool_use", "id": WEATHER_ID, "name": "get_weather", "input": {}}),
    delta(1, "input_json_delta", partial_json=""),
    delta(1, "input_json_delta", partial_json='{"location"'),
    delta(1, "input_json_delta", partial_json=':"Paris,'),
    delta(1, "input_json_delta", partial_json=' France"}'),
    block_stop(1),
    block_start(2, {"type": "tool_use", "id": CLOCK_ID, "name": "get_time", "input": {}}),
    delta(2, "input_json_delta", partial_json=""),
    block_stop(2),
    message_delta("tool_use", {"output_tokens": 89}),
    MESSAGE_STOP,
)

# A prompt-cache hit; message_delta repeats the whole usage, cumulative, as the API now does.
CACHED_USAGE = usage(14, 12, cache_read=2048)
CACHED_ANSWER = message([{"type": "text", "text": "Paris."}], "end_turn", CACHED_USAGE)
CACHED_STREAM = sse(
    message_start(usage(14, 1, cache_read=2048)),
    block_start(0, {"type": "text", "text": ""}),
    delta(0, "text_delta", text="Paris."),
    block_stop(0),
    message_delta("end_turn", CACHED_USAGE),
    MESSAGE_STOP,
)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[TranscriptServer]:
    async with TranscriptServer() as server:
        yield server


@pytest.fixture
async def make_provider(upstream: TranscriptServer) -> AsyncIterator[Callable[..., AnthropicProvider]]:
    async with provider_maker(AnthropicProvider, upstream.base_url, KEY) as make:
        yield make


async def run(
    provider: AnthropicProvider,
    stream: bool = True,
    messages: list[dict[str, Any]] = MESSAGES,
    **fields: Any,
) -> list[Event]:
    call = ProviderCall("claude-sonnet-4-5", messages, fields.pop("params", {}), stream=stream, **fields)
    return [event async for event in provider.stream(call)]


def anthropic_error(kind: str, text: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": kind, "message": text},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request_headers_and_body(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, Create a Message: `POST /v1/messages` with `x-api-key`,
    `anthropic-version: 2023-06-01` and JSON; `max_tokens` is required (4096 when the version
    sets none); the system prompt is the top-level `system`, not a message; `stop` is
    `stop_sequences`; parameters Anthropic lacks (seed, penalties) stay behind."""
    upstream.play(stream(ANSWER_STREAM))
    params = {"temperature": 0.2, "top_p": 0.9, "stop": "\n", "seed": 7, "presence_penalty": 0.5}
    await run(make_provider(), params={**params, "frequency_penalty": 0.1})
    (seen,) = upstream.requests
    assert seen.method == "POST" and seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["content-type"] == "application/json"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "You answer in one short sentence.",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["\n"],
        "stream": True,
    }


async def test_non_streaming_request_keeps_max_tokens_and_has_no_stream_field(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, Create a Message: `stream` defaults to false; the version's own
    `max_tokens` is sent; `stop_sequences` is a list of strings."""
    upstream.play(respond(200, ANSWER))
    await run(make_provider(), stream=False, params={"max_tokens": 64, "stop": ["END", "\n\n"]})
    (seen,) = upstream.requests
    assert "stream" not in seen.body
    assert (seen.body["max_tokens"], seen.body["stop_sequences"]) == (64, ["END", "\n\n"])


async def test_conversation_with_tool_calls_in_anthropic_turns(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference (messages, `system`) and tool use guide (`tool_use` blocks with a
    parsed `input`, `tool_result` blocks in the next user turn, `tools` with `input_schema`,
    `tool_choice`): every system message joins the top-level `system`; consecutive turns of
    one role are merged, so user and assistant alternate."""
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a travel assistant."},
        {"role": "user", "content": "I am in Paris."},
        {"role": "user", "content": "What's the weather, and the time?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"id": WEATHER_ID, "name": "get_weather", "arguments": '{"location": "Paris, France"}'},
                {"id": CLOCK_ID, "name": "get_time", "arguments": ""},
            ],
        },
        {"role": "tool", "tool_call_id": WEATHER_ID, "content": "18°C, cloudy"},
        {"role": "tool", "tool_call_id": CLOCK_ID, "content": "14:05"},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Summarize, please."},
    ]
    weather = {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }
    upstream.play(respond(200, ANSWER))
    await run(make_provider(), False, conversation, tools=[weather, {"name": "get_time"}], tool_choice="auto")
    (seen,) = upstream.requests
    assert seen.body["system"] == "You are a travel assistant.\n\nAnswer in French."
    assert seen.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "I am in Paris."},
                {"type": "text", "text": "What's the weather, and the time?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": WEATHER_ID,
                    "name": "get_weather",
                    "input": {"location": "Paris, France"},
                },
                {"type": "tool_use", "id": CLOCK_ID, "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": WEATHER_ID, "content": "18°C, cloudy"},
                {"type": "tool_result", "tool_use_id": CLOCK_ID, "content": "14:05"},
                {"type": "text", "text": "Summarize, please."},
            ],
        },
    ]
    assert seen.body["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": weather["parameters"],
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert seen.body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"name": "get_weather"}, {"type": "tool", "name": "get_weather"}),
    ],
    ids=["auto", "required", "none", "named"],
)
def test_tool_choice(choice: str | dict[str, Any], expected: dict[str, Any]) -> None:
    """Anthropic tool use guide, forcing tool use: `tool_choice` is `{"type": "auto"}`,
    `{"type": "any"}`, `{"type": "none"}` or `{"type": "tool", "name"}`."""
    provider = AnthropicProvider("http://127.0.0.1:9", KEY)
    call = ProviderCall("claude-sonnet-4-5", MESSAGES, tools=[{"name": "get_weather"}], tool_choice=choice)
    assert provider.payload(call)["tool_choice"] == expected


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget", "sent_max_tokens"),
    [
        ("low", None, 1024, 4096),
        ("medium", None, 4096, 8192),
        ("high", None, 16384, 20480),
        ("low", 8000, 1024, 8000),
        ("medium", 1000, 4096, 5096),
    ],
)
def test_reasoning_effort_turns_on_extended_thinking(
    effort: str, max_tokens: int | None, budget: int, sent_max_tokens: int
) -> None:
    """Anthropic extended thinking guide: `thinking: {"type": "enabled", "budget_tokens": N}`,
    with `budget_tokens` below `max_tokens` (thinking counts inside it)."""
    provider = AnthropicProvider("http://127.0.0.1:9", KEY)
    params: dict[str, Any] = {"reasoning_effort": effort}
    if max_tokens:
        params["max_tokens"] = max_tokens
    body = provider.payload(ProviderCall("claude-sonnet-4-5", MESSAGES, params))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == sent_max_tokens > budget
    assert "reasoning_effort" not in body


def test_response_format() -> None:
    """Anthropic structured outputs guide: JSON outputs are `output_config.format` with
    `{"type": "json_schema", "schema"}`. Anthropic has no JSON mode, so `json_object` (like
    `text`) sends nothing."""
    provider = AnthropicProvider("http://127.0.0.1:9", KEY)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}

    def body(response_format: dict[str, Any]) -> dict[str, Any]:
        return provider.payload(ProviderCall("claude-sonnet-4-5", MESSAGES, response_format=response_format))

    neutral = {"type": "json_schema", "name": "city", "schema": schema, "strict": True}
    assert body(neutral)["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in body({"type": "json_object"})
    assert "output_config" not in body({"type": "text"})


def test_tool_call_arguments_that_are_not_a_json_object() -> None:
    """Anthropic tool use guide: a `tool_use` block's `input` is an object, so arguments that do
    not parse to one are the caller's mistake, said before anything is sent."""
    provider = AnthropicProvider("http://127.0.0.1:9", KEY)
    history: list[dict[str, Any]] = [
        *MESSAGES,
        {"role": "assistant", "content": "", "tool_calls": [{"id": "t1", "name": "f", "arguments": "{oops"}]},
    ]
    with pytest.raises(ValidationFailed, match="not a JSON object"):
        provider.payload(ProviderCall("claude-sonnet-4-5", history))


async def test_per_call_key_and_base_url_override_the_configured_ones(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, authentication: the workspace's stored credential (per call) is
    sent as `x-api-key` to its base URL, not the configured ones (here nothing listens there).
    A base URL ending in `/v1` reaches the same `/v1/messages`; no key at all, no header."""
    upstream.play(respond(200, ANSWER), respond(200, ANSWER), respond(200, ANSWER))
    provider = make_provider(base_url=f"http://127.0.0.1:{free_port()}", api_key="sk-ant-configured")
    for base_url in (upstream.base_url, upstream.base_url + "/v1/"):
        folded = fold(await run(provider, False, api_key="sk-ant-workspace", base_url=base_url))
        assert folded.failed is None
    await run(make_provider(api_key=""), False)
    first, second, keyless = upstream.requests
    assert [first.path, second.path, keyless.path] == ["/v1/messages"] * 3
    assert first.headers["x-api-key"] == second.headers["x-api-key"] == "sk-ant-workspace"
    assert "x-api-key" not in keyless.headers
    assert keyless.headers["anthropic-version"] == "2023-06-01"


async def test_from_settings(upstream: TranscriptServer) -> None:
    """The configured base URL and key (PROMPTDECK_ANTHROPIC_*) are used when the call has none."""
    settings = Settings(anthropic_base_url=upstream.base_url, anthropic_api_key="sk-ant-settings")
    provider = AnthropicProvider.from_settings(settings)
    upstream.play(respond(200, ANSWER))
    try:
        assert fold(await run(provider, False)).text == "The capital of France is Paris."
    finally:
        await provider.aclose()
    assert upstream.requests[0].headers["x-api-key"] == "sk-ant-settings"
    assert provider.timeouts.read == settings.upstream_read_timeout


# --- answers -------------------------------------------------------------------------------------


async def test_non_streaming_text_answer(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, the `message` object: `content` text blocks, `stop_reason:
    end_turn`, `usage` with `input_tokens` / `output_tokens` and the cache fields."""
    upstream.play(respond(200, ANSWER))
    assert await run(make_provider(), stream=False) == [
        Started(f"anthropic/{MODEL}"),
        TextDelta("The capital of France is Paris."),
        Usage(input=25, output=9),
        Finished(STOP),
    ]


async def test_streamed_text_answer(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic streaming guide, basic streaming request: `message_start` (input usage),
    `content_block_start` / `ping` / `text_delta`s / `content_block_stop`, `message_delta`
    (stop reason, cumulative output tokens), `message_stop`."""
    upstream.play(stream(ANSWER_STREAM))
    assert await run(make_provider()) == [
        Started(f"anthropic/{MODEL}"),
        TextDelta("The capital"),
        TextDelta(" of France is"),
        TextDelta(" Paris."),
        Usage(input=25, output=9),
        Finished(STOP),
    ]


async def test_streamed_extended_thinking(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic extended thinking guide, streaming thinking: a `thinking` block of
    `thinking_delta`s closed by a `signature_delta`, then the `text` block."""
    upstream.play(stream(THINKING_STREAM))
    events = await run(make_provider(), params={"reasoning_effort": "low"})
    assert events == [
        Started(f"anthropic/{MODEL}"),
        ReasoningDelta("27 * 453 = 27 * 400"),
        ReasoningDelta(" + 27 * 53 = 12,231."),
        TextDelta("27 * 453 = 12,231"),
        Usage(input=48, output=131),
        Finished(STOP),
    ]
    assert upstream.requests[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_non_streaming_extended_thinking(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic extended thinking guide: the `message` holds a `thinking` block (with its
    `signature`) before the `text` block; a `redacted_thinking` block carries nothing readable."""
    answer = {**THINKING_ANSWER, "content": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"}]}
    answer["content"] += THINKING_ANSWER["content"]
    upstream.play(respond(200, answer))
    assert await run(make_provider(), stream=False) == [
        Started(f"anthropic/{MODEL}"),
        ReasoningDelta("27 * 453 = 27 * 400 + 27 * 53 = 12,231."),
        TextDelta("27 * 453 = 12,231"),
        Usage(input=48, output=131),
        Finished(STOP),
    ]


async def test_streamed_tool_use(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic streaming guide, streaming request with tool use: a `tool_use` block opens
    with `id`, `name` and empty `input`, its arguments come as `input_json_delta`
    `partial_json` fragments; `stop_reason: tool_use`. Tool calls are numbered among the
    tool_use blocks (the text block before them does not count); a call without arguments
    is `{}`, as it is in a whole answer."""
    upstream.play(stream(TOOL_STREAM))
    events = await run(make_provider())
    assert events[0] == Started(f"anthropic/{MODEL}")
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, WEATHER_ID, "get_weather", ""),
        ToolCallDelta(0, None, None, '{"location"'),
        ToolCallDelta(0, None, None, ':"Paris,'),
        ToolCallDelta(0, None, None, ' France"}'),
        ToolCallDelta(1, CLOCK_ID, "get_time", ""),
        ToolCallDelta(1, None, None, "{}"),
    ]
    folded = fold(events)
    assert folded.text == "Let me check the weather in Paris."
    assert folded.usage == Usage(input=472, output=89) and folded.stop == TOOL_CALLS


async def test_non_streaming_tool_use(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic tool use guide: `tool_use` content blocks with `id`, `name` and a parsed
    `input` object, `stop_reason: tool_use`; arguments become a JSON string."""
    upstream.play(respond(200, TOOL_ANSWER))
    assert await run(make_provider(), stream=False) == [
        Started(f"anthropic/{MODEL}"),
        TextDelta("Let me check the weather in Paris."),
        ToolCallDelta(0, WEATHER_ID, "get_weather", '{"location":"Paris, France"}'),
        ToolCallDelta(1, CLOCK_ID, "get_time", "{}"),
        Usage(input=472, output=89),
        Finished(TOOL_CALLS),
    ]


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({"cache_read": 2048}, Usage(input=2062, cached_input=2048, output=12)),
        ({"cache_write": 1500}, Usage(input=1514, cache_write_input=1500, output=12)),
    ],
    ids=["cache-read", "cache-write"],
)
async def test_prompt_cache_usage(
    upstream: TranscriptServer,
    make_provider: Callable[..., AnthropicProvider],
    cache: dict[str, int],
    expected: Usage,
    streamed: bool,
) -> None:
    """Anthropic prompt caching guide, tracking cache performance: `input_tokens` counts only
    what follows the last cache breakpoint, beside `cache_read_input_tokens` and
    `cache_creation_input_tokens`; the prompt is all three. In a stream they arrive in
    `message_start`, and `message_delta`'s usage counts are cumulative."""
    upstream.play(
        stream(
            sse(
                message_start(usage(14, 1, **cache)),
                block_start(0, {"type": "text", "text": ""}),
                delta(0, "text_delta", text="Paris."),
                block_stop(0),
                message_delta("end_turn", {"output_tokens": 12}),
                MESSAGE_STOP,
            )
        )
        if streamed
        else respond(200, message([{"type": "text", "text": "Paris."}], "end_turn", usage(14, 12, **cache)))
    )
    assert fold(await run(make_provider(), streamed)).usage == expected


async def test_thinking_tokens_when_reported(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, usage: `output_tokens_details.thinking_tokens` (part of
    `output_tokens`) is the reasoning count, when the API reports it."""
    reported = {**THINKING_USAGE, "output_tokens_details": {"thinking_tokens": 118}}
    upstream.play(respond(200, {**THINKING_ANSWER, "usage": reported}))
    assert fold(await run(make_provider(), stream=False)).usage == Usage(input=48, output=131, reasoning=118)


@pytest.mark.parametrize(
    ("name", "streamed", "answer"),
    [
        ("text", ANSWER_STREAM, ANSWER),
        ("thinking", THINKING_STREAM, THINKING_ANSWER),
        ("tool use", TOOL_STREAM, TOOL_ANSWER),
        ("cache hit", CACHED_STREAM, CACHED_ANSWER),
    ],
)
async def test_stream_and_non_stream_give_the_same_answer(
    upstream: TranscriptServer,
    make_provider: Callable[..., AnthropicProvider],
    name: str,
    streamed: list[bytes],
    answer: dict[str, Any],
) -> None:
    """The same answer as a stream of events (streaming guide) and as one `message` object
    (API reference): identical model, text, reasoning, tool calls, usage and stop reason."""
    upstream.play(stream(streamed), respond(200, answer))
    provider = make_provider()
    from_stream, whole = fold(await run(provider)), fold(await run(provider, stream=False))
    assert from_stream == whole
    assert whole.failed is None and whole.usage is not None and whole.usage.input > 0


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", STOP),
        ("stop_sequence", STOP),
        ("max_tokens", LENGTH),
        ("model_context_window_exceeded", LENGTH),
        ("tool_use", TOOL_CALLS),
        ("refusal", CONTENT_FILTER),
        ("pause_turn", STOP),
    ],
)
async def test_stop_reasons(
    upstream: TranscriptServer,
    make_provider: Callable[..., AnthropicProvider],
    stop_reason: str,
    expected: str,
    streamed: bool,
) -> None:
    """Anthropic API reference, `stop_reason`: `end_turn`, `stop_sequence`, `max_tokens`,
    `model_context_window_exceeded`, `tool_use`, `refusal` (a safety stop: content_filter)
    and `pause_turn`; in a stream it comes in `message_delta`."""
    transcript = sse(
        message_start(usage(25, 1)),
        block_start(0, {"type": "text", "text": ""}),
        delta(0, "text_delta", text="The capital"),
        block_stop(0),
        message_delta(stop_reason, {"output_tokens": 3}),
        MESSAGE_STOP,
    )
    answer = message([{"type": "text", "text": "The capital"}], stop_reason, usage(25, 3))
    upstream.play(stream(transcript) if streamed else respond(200, answer))
    folded = fold(await run(make_provider(), streamed))
    assert (folded.text, folded.stop, folded.usage) == ("The capital", expected, Usage(input=25, output=3))


async def test_empty_answer_still_starts_and_reports_usage(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic streaming guide: a message may end with no content block at all (here a stop
    sequence hit at once); the caller still gets `Started`, the usage and the stop reason."""
    upstream.play(
        stream(
            sse(
                message_start(usage(25, 1)),
                message_delta("stop_sequence", {"output_tokens": 1}),
                MESSAGE_STOP,
            )
        )
    )
    assert await run(make_provider()) == [
        Started(f"anthropic/{MODEL}"),
        Usage(input=25, output=1),
        Finished(STOP),
    ]


# --- upstream errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("status", "kind", "text", "code"),
    [
        (400, "invalid_request_error", "max_tokens: Field required", "upstream_rejected"),
        (401, "authentication_error", "invalid x-api-key", "upstream_auth_failed"),
        (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
            "upstream_auth_failed",
        ),
        (404, "not_found_error", "model: claude-sonnet-4-5", "upstream_not_found"),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
            "upstream_rejected",
        ),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            "upstream_rate_limited",
        ),
        (500, "api_error", "Internal server error", "upstream_error"),
        (529, "overloaded_error", "Overloaded", "upstream_error"),
    ],
)
async def test_anthropic_error_bodies(
    upstream: TranscriptServer,
    make_provider: Callable[..., AnthropicProvider],
    status: int,
    kind: str,
    text: str,
    code: str,
    streamed: bool,
) -> None:
    """Anthropic errors page, HTTP errors and error shapes: each status with
    `{"type": "error", "error": {"type", "message"}, "request_id"}`. The failure names the
    status, Anthropic's message and its error type; 429, 500 and 529 (overloaded) are retryable."""
    upstream.play(respond(status, anthropic_error(kind, text)))
    events = await run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed], "an error status yields only the failure"
    assert (failed.code, failed.retryable) == (code, status in (429, 500, 529))
    assert failed.message.startswith("anthropic upstream")
    assert f"HTTP {status}" in failed.message and f"{text} ({kind})" in failed.message


async def test_error_status_with_an_html_body(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic errors page, request size limits: a 413 may come from Cloudflare before the
    API, as an HTML page rather than Anthropic's error object; still a clean failure."""
    page = b"<html><head><title>413 Request Entity Too Large</title></head><body>cloudflare</body></html>"
    upstream.play(respond(413, page, "text/html"))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_rejected" and not failed.retryable
    assert "413 Request Entity Too Large cloudflare" in failed.message and "<html>" not in failed.message


async def test_error_event_after_text(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic streaming guide, error events: `event: error` with `{"type": "error", "error":
    {"type": "overloaded_error", "message": "Overloaded"}}` after a 200 and some text. Text
    already reached the caller, so it is not retryable."""
    overloaded = anthropic_error("overloaded_error", "Overloaded")
    del overloaded["request_id"]
    upstream.play(stream([*ANSWER_STREAM[:4], *sse(overloaded)]))
    events = await run(make_provider())
    assert events[:2] == [Started(f"anthropic/{MODEL}"), TextDelta("The capital")]
    failed = failure(events)
    assert failed.code == "upstream_error" and not failed.retryable
    assert "failed mid-stream: Overloaded (overloaded_error)" in failed.message


async def test_error_event_before_any_content(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic streaming guide, error events: an `overloaded_error` event right after
    `message_start` and a `ping`. Nothing reached the caller, so it fails alone, retryably, as
    a 529 would."""
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.play(stream(sse(message_start(usage(25, 1)), PING, overloaded)))
    events = await run(make_provider())
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_error" and failed.retryable and "overloaded_error" in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_error_object_with_status_200(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider], streamed: bool
) -> None:
    """A proxy that answers 200 `application/json` holding Anthropic's error object (errors page
    shape), even to a streaming call: its message and type come through, not "no content"."""
    upstream.play(respond(200, anthropic_error("rate_limit_error", "Too many requests")))
    failed = failure(await run(make_provider(), stream=streamed))
    assert failed.code == "upstream_rate_limited" and failed.retryable
    assert "Too many requests (rate_limit_error)" in failed.message


# --- broken streams and garbage ------------------------------------------------------------------


@pytest.mark.parametrize("end", ["clean", "drop"])
@pytest.mark.parametrize(
    ("delivered", "sent"),
    [(0, 0), (3, 0), (5, 3), (8, 4)],
    ids=["nothing", "message-start-only", "two-deltas", "before-message-stop"],
)
async def test_stream_cut_before_message_stop(
    upstream: TranscriptServer,
    make_provider: Callable[..., AnthropicProvider],
    end: str,
    delivered: int,
    sent: int,
) -> None:
    """Anthropic streaming guide: every stream ends with `message_stop`. One that stops before
    it — its HTTP body ending properly (`clean`) or the connection going mid-chunk (`drop`) — is
    `upstream_stream_cut`, even after `message_delta`; retryable only if nothing went out."""
    upstream.play(stream(ANSWER_STREAM[:delivered], end=end))
    events = await run(make_provider())
    expected = [
        Started(f"anthropic/{MODEL}"),
        TextDelta("The capital"),
        TextDelta(" of France is"),
        TextDelta(" Paris."),
        Usage(input=25, output=9),
    ]
    assert events[:-1] == expected[:sent]
    failed = failure(events)
    assert failed.code == "upstream_stream_cut" and failed.message.startswith("anthropic upstream")
    assert failed.retryable == (sent == 0)


async def test_non_json_data_line_mid_stream(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """A stream of Anthropic's events (streaming guide) with one `data:` line that is not JSON."""
    upstream.play(stream([*ANSWER_STREAM[:4], b"event: content_block_delta\ndata: {not json\n\n"]))
    events = await run(make_provider())
    assert events[:2] == [Started(f"anthropic/{MODEL}"), TextDelta("The capital")]
    failed = failure(events)
    assert failed.code == "upstream_bad_response" and "{not json" in failed.message


@pytest.mark.parametrize(
    "events",
    [
        [block_start(0, {"type": "tool_use", "name": "get_weather", "input": {}})],  # no id
        [delta(3, "input_json_delta", partial_json='{"a"')],  # a block that never started
        [delta(0, "text_delta")],  # no text
        [{"type": "content_block_delta", "index": 0, "delta": "Paris"}],
        [{"type": "message_start", "message": "hello"}],
    ],
    ids=["tool-without-id", "unknown-block", "delta-without-text", "delta-string", "message-string"],
)
async def test_events_of_the_wrong_shape(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider], events: list[dict[str, Any]]
) -> None:
    """Events whose fields are not what Anthropic's streaming guide says they are."""
    upstream.play(stream([*ANSWER_STREAM[:2], *sse(*events), *ANSWER_STREAM[2:]]))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "cannot read" in failed.message


async def test_stream_of_other_events(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """JSON events that are not Anthropic's (no `message_start`) ending in `message_stop`:
    no message came, so the call fails instead of finishing empty."""
    upstream.play(stream(sse({"type": "status", "ok": True}, PING, MESSAGE_STOP)))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "no message_start" in failed.message


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<html><body>Welcome to nginx!</body></html>", "text/html", "not JSON"),
        (b'{"type": "message", "model": "x"}', "application/json", "without content"),
        (b'{"type": "message", "content": "Paris"}', "application/json", "without content"),
        (b'{"type": "message", "content": ["Paris"]}', "application/json", "cannot"),
        (
            b'{"type": "message", "content": [{"type": "tool_use", "input": {}}]}',
            "application/json",
            "cannot",
        ),
        (b'["not", "an", "object"]', "application/json", "not an object"),
    ],
    ids=["html", "no-content", "content-string", "block-string", "tool-without-id", "array"],
)
async def test_garbage_non_streaming_body(
    upstream: TranscriptServer,
    make_provider: Callable[..., AnthropicProvider],
    body: bytes,
    content_type: str,
    expected: str,
) -> None:
    """A 200 answer to a non-streaming call that is not a `message` object (API reference):
    a clean `upstream_bad_response`, never an exception."""
    upstream.play(respond(200, body, content_type))
    events = await run(make_provider(), stream=False)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_bad_response" and expected in failed.message


async def test_streaming_call_answered_with_an_html_page(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """A 200 HTML page (a captive portal, a wrong base URL) where an event stream was asked for."""
    upstream.play(respond(200, b"<html>\n<body>Welcome to nginx!</body>\n</html>\n", "text/html"))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "Welcome to nginx" in failed.message


# --- broken connections (the shared `HttpUpstream`, mapped for this provider) ---------------------


async def test_connection_refused(make_provider: Callable[..., AnthropicProvider]) -> None:
    """Nothing listens at the base URL (`POST /v1/messages`):
    `upstream_unreachable`, retryable, naming the address, streamed or not."""
    port = free_port()
    for streamed in (True, False):
        events = await run(make_provider(base_url=f"http://127.0.0.1:{port}"), stream=streamed)
        failed = failure(events)
        assert events == [failed]
        assert failed.code == "upstream_unreachable" and failed.retryable
        assert failed.message.startswith("anthropic upstream") and f"127.0.0.1:{port}" in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_upstream_that_never_answers(
    upstream: TranscriptServer, make_provider: Callable[..., AnthropicProvider], streamed: bool
) -> None:
    """The upstream accepts the request (`POST /v1/messages`), then says nothing:
    `upstream_timeout` after the read limit (streaming) or the total limit (whole), not retried:
    the attempt has spent the whole limit."""
    upstream.play(silence)
    began = time.monotonic()
    events = await run(make_provider(read_timeout=0.3, total_timeout=0.3), stream=streamed)
    assert time.monotonic() - began < 2
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_timeout" and not failed.retryable  # its whole limit is spent
    assert failed.message.startswith("anthropic upstream") and "0.3" in failed.message
