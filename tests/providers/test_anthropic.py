"""What the `anthropic` provider does beyond the provider contract (`test_provider_contract.py`).
Anthropic's Messages API cannot be reached from the test machines: each test plays recorded transcripts of
its documented format (`transcripts/anthropic.py`, the document named in the test) through a
local fake upstream, and checks the request sent and the normalized events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from promptdeck.config import Settings
from promptdeck.domain.errors import ValidationFailed
from promptdeck.domain.events import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.providers.anthropic import AnthropicProvider
from promptdeck.providers.base import ProviderCall
from tests.providers.transcripts.anthropic import (
    ANSWER,
    ANSWER_STREAM,
    CASE,
    CLOCK_ID,
    KEY,
    MESSAGE_STOP,
    MESSAGES,
    MODEL,
    PING,
    THINKING_ANSWER,
    THINKING_STREAM,
    THINKING_USAGE,
    TOOL_ANSWER,
    TOOL_STREAM,
    WEATHER_ID,
    anthropic_error,
    block_start,
    block_stop,
    delta,
    message,
    message_delta,
    message_start,
    run,
    sse,
    usage,
)
from tests.support.fake_upstream import FakeUpstream, failure, fold, respond, stream
from tests.support.postgres import free_port

upstream, make_provider = CASE.fixtures()


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request_headers_and_body(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, Create a Message: `POST /v1/messages` with `x-api-key`,
    `anthropic-version: 2023-06-01` and JSON; `max_tokens` is required (4096 when the version
    sets none); the system prompt is the top-level `system`, not a message; `stop` is
    `stop_sequences`; parameters Anthropic lacks (seed, penalties) stay behind."""
    upstream.play(stream(ANSWER_STREAM))
    params = {"temperature": 0.2, "top_p": 0.9, "stop": "\n", "seed": 7, "presence_penalty": 0.5}
    await run(make_provider(), params={**params, "frequency_penalty": 0.1})
    (seen,) = upstream.seen
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, Create a Message: `stream` defaults to false; the version's own
    `max_tokens` is sent; `stop_sequences` is a list of strings."""
    upstream.play(respond(200, ANSWER))
    await run(make_provider(), stream=False, params={"max_tokens": 64, "stop": ["END", "\n\n"]})
    (seen,) = upstream.seen
    assert "stream" not in seen.body
    assert (seen.body["max_tokens"], seen.body["stop_sequences"]) == (64, ["END", "\n\n"])


async def test_conversation_with_tool_calls_in_anthropic_turns(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    (seen,) = upstream.seen
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    first, second, keyless = upstream.seen
    assert [first.path, second.path, keyless.path] == ["/v1/messages"] * 3
    assert first.headers["x-api-key"] == second.headers["x-api-key"] == "sk-ant-workspace"
    assert "x-api-key" not in keyless.headers
    assert keyless.headers["anthropic-version"] == "2023-06-01"


async def test_from_settings(upstream: FakeUpstream) -> None:
    """The configured base URL and key (PROMPTDECK_ANTHROPIC_*) are used when the call has none."""
    settings = Settings(anthropic_base_url=upstream.base_url, anthropic_api_key="sk-ant-settings")
    provider = AnthropicProvider.from_settings(settings)
    upstream.play(respond(200, ANSWER))
    try:
        assert fold(await run(provider, False)).text == "The capital of France is Paris."
    finally:
        await provider.aclose()
    assert upstream.seen[0].headers["x-api-key"] == "sk-ant-settings"
    assert provider.timeouts.read == settings.upstream_read_timeout


# --- answers -------------------------------------------------------------------------------------


async def test_non_streaming_text_answer(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    assert upstream.seen[0].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}


async def test_non_streaming_extended_thinking(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream,
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic API reference, usage: `output_tokens_details.thinking_tokens` (part of
    `output_tokens`) is the reasoning count, when the API reports it."""
    reported = {**THINKING_USAGE, "output_tokens_details": {"thinking_tokens": 118}}
    upstream.play(respond(200, {**THINKING_ANSWER, "usage": reported}))
    assert fold(await run(make_provider(), stream=False)).usage == Usage(input=48, output=131, reasoning=118)


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
    upstream: FakeUpstream,
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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


async def test_error_status_with_an_html_body(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """Anthropic errors page, request size limits: a 413 may come from Cloudflare before the
    API, as an HTML page rather than Anthropic's error object; still a clean failure."""
    page = b"<html><head><title>413 Request Entity Too Large</title></head><body>cloudflare</body></html>"
    upstream.play(respond(413, page, "text/html"))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_rejected" and not failed.retryable
    assert "413 Request Entity Too Large cloudflare" in failed.message and "<html>" not in failed.message


async def test_error_event_after_text(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider], streamed: bool
) -> None:
    """A proxy that answers 200 `application/json` holding Anthropic's error object (errors page
    shape), even to a streaming call: its message and type come through, not "no content"."""
    upstream.play(respond(200, anthropic_error("rate_limit_error", "Too many requests")))
    failed = failure(await run(make_provider(), stream=streamed))
    assert failed.code == "upstream_rate_limited" and failed.retryable
    assert "Too many requests (rate_limit_error)" in failed.message


# --- broken streams and garbage ------------------------------------------------------------------


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
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider], events: list[dict[str, Any]]
) -> None:
    """Events whose fields are not what Anthropic's streaming guide says they are."""
    upstream.play(stream([*ANSWER_STREAM[:2], *sse(*events), *ANSWER_STREAM[2:]]))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "cannot read" in failed.message


async def test_stream_of_other_events(
    upstream: FakeUpstream, make_provider: Callable[..., AnthropicProvider]
) -> None:
    """JSON events that are not Anthropic's (no `message_start`) ending in `message_stop`:
    no message came, so the call fails instead of finishing empty."""
    upstream.play(stream(sse({"type": "status", "ok": True}, PING, MESSAGE_STOP)))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "no message_start" in failed.message


# --- broken connections (the shared `HttpUpstream`, mapped for this provider) ---------------------
