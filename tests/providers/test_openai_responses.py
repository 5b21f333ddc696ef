"""What the `openai-responses` provider does beyond the provider contract (`test_provider_contract.py`).
OpenAI's Responses API cannot be reached from the test machines: each test plays recorded transcripts of
its documented format (`transcripts/openai_responses.py`, the document named in the test) through a
local fake upstream, and checks the request sent and the normalized events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from promptdeck.config import Settings
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
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.openai_responses import OpenAIResponsesProvider
from tests.providers.transcripts.openai_responses import (
    ANSWER,
    ANSWER_EVENTS,
    ANSWER_STREAM,
    CASE,
    MESSAGE,
    MESSAGES,
    MODEL,
    PARIS,
    REASONING,
    SHORT_ANSWER,
    SHORT_MESSAGE,
    TOOL_ANSWER,
    TOOL_STREAM,
    TOOL_USAGE,
    USAGE,
    encode,
    message,
    message_events,
    response,
    run,
    sse,
)
from tests.support.fake_upstream import FakeUpstream, failure, fold, respond, stream
from tests.support.postgres import free_port

upstream, make_provider = CASE.fixtures()


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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    (seen,) = upstream.seen
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
    upstream: FakeUpstream,
    make_provider: Callable[..., OpenAIResponsesProvider],
    neutral: dict[str, Any],
    wire: dict[str, Any],
) -> None:
    """Structured outputs guide, Responses: `text.format` is `json_object`, `text`, or a named
    `json_schema`; a string `tool_choice` passes as it is; no `stream` (false by default), and
    no reasoning block without a `reasoning_effort`. No key, no auth header."""
    upstream.play(respond(200, ANSWER))
    await run(make_provider(api_key=""), stream=False, response_format=neutral, tool_choice="none")
    (seen,) = upstream.seen
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    assert [seen.headers["authorization"] for seen in upstream.seen] == ["Bearer sk-workspace"] * 2
    assert [seen.path for seen in upstream.seen] == ["/v1/responses"] * 2


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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """Streaming events: `response.reasoning_summary_text.delta` per summary part, then
    `response.output_text.delta`, then `response.completed` carrying the usage."""
    upstream.play(stream(ANSWER_STREAM))
    assert await run(make_provider()) == ANSWER_EVENTS


async def test_streamed_parallel_tool_calls(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """`function_call` output items, whole: one delta each, with id, name and all arguments."""
    upstream.play(respond(200, TOOL_ANSWER))
    events = await run(make_provider(), stream=False)
    assert [e for e in events if isinstance(e, ToolCallDelta)] == [
        ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", '{"location":"Paris, France"}'),
        ToolCallDelta(1, "call_x6d4pVqUX8bZb5H2fKfnWwL1", "get_weather", '{"location":"Rome, Italy"}'),
    ]
    assert events[-1] == Finished(TOOL_CALLS)


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("reason", "stop"), [("max_output_tokens", LENGTH), ("content_filter", CONTENT_FILTER)]
)
async def test_incomplete_answers(
    upstream: FakeUpstream,
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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


async def test_response_failed_mid_stream(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
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


# --- broken streams ------------------------------------------------------------------------------


async def test_stream_without_a_terminal_event(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider]
) -> None:
    """Every item streamed in full, but no `response.completed`: still cut (usage and the stop
    reason never came)."""
    upstream.play(stream(ANSWER_STREAM[:-1]))
    events = await run(make_provider())
    assert events[:-1] == ANSWER_EVENTS[:-2]
    assert failure(events).code == "upstream_stream_cut"


# --- broken connections (the shared `HttpUpstream`, mapped for this provider) ---------------------


# --- usage left out, and the payload -------------------------------------------------------------

QUIET_ANSWER = response([MESSAGE], None)
QUIET_STREAM = sse(QUIET_ANSWER, message_events(0, MESSAGE, "The capital", " of France is", " Paris."))


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_answer_without_usage_yields_no_usage_event(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIResponsesProvider], streamed: bool
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
