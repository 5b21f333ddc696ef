"""Recorded wire transcripts for the `anthropic` provider, and its case table for the provider contract.

Each transcript follows Anthropic's documented Messages API format (named in the test's
docstring): the API reference's `message` object and request body, the streaming guide's
named server-sent events (`message_start` … `message_stop`, `ping`, `error`), the extended
thinking guide's `thinking_delta` / `signature_delta`, the tool use guide's `tool_use` blocks
and `input_json_delta`, the prompt caching guide's usage fields, and the errors page's
`{"type": "error", "error": {"type", "message"}, "request_id"}` bodies.
"""

from __future__ import annotations

from typing import Any

import orjson

from promptdeck.domain.events import Event, Usage
from promptdeck.providers.anthropic import AnthropicProvider
from promptdeck.providers.base import ProviderCall
from tests.providers.transcripts import Answer, BadLine, Cut, ErrorReply, Garbage, ProviderCase, text_answer

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


# --- the provider's case table for the contract --------------------------------------------------

ERROR_TABLE = [
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
]

GARBAGE = [
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
]
GARBAGE_IDS = ["html", "no-content", "content-string", "block-string", "tool-without-id", "array"]

NOT_JSON = b"event: content_block_delta\ndata: {not json\n\n"

CASE = ProviderCase(
    name="anthropic",
    cls=AnthropicProvider,
    key=KEY,
    run=run,
    text_stream=ANSWER_STREAM,
    text_events=text_answer(f"anthropic/{MODEL}", Usage(input=25, output=9)),
    answers=(
        Answer("text", ANSWER_STREAM, ANSWER),
        Answer("thinking", THINKING_STREAM, THINKING_ANSWER),
        Answer("tool use", TOOL_STREAM, TOOL_ANSWER),
        Answer("cache hit", CACHED_STREAM, CACHED_ANSWER),
    ),
    errors=tuple(
        ErrorReply(
            str(status),
            status,
            anthropic_error(kind, text),
            code,
            status in (429, 500, 529),
            (f"{text} ({kind})",),
        )
        for status, kind, text, code in ERROR_TABLE
    ),
    garbage=tuple(Garbage(id_, *row) for id_, row in zip(GARBAGE_IDS, GARBAGE, strict=True)),
    cuts=(
        Cut("nothing", 0, 0),
        Cut("message-start-only", 3, 0),
        Cut("two-deltas", 5, 3),
        Cut("before-message-stop", 8, 4),
    ),
    paths=("/v1/messages", "/v1/messages"),
    headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    not_sent=("authorization",),
    bad_lines=(BadLine("data-not-json", 4, NOT_JSON, 2, "{not json"),),
)
