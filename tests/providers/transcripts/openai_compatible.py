"""Recorded wire transcripts for the `openai` provider, and its case table for the provider contract.

Each transcript follows a documented Chat Completions format (named in the test's docstring):
OpenAI's API reference for `chat.completion` and `chat.completion.chunk` (with
`stream_options.include_usage`), OpenAI's function-calling guide for streamed tool calls,
DeepSeek's and vLLM's `reasoning_content` deltas, and OpenAI's error-code guide for
`{"error": {"message", "type", "code"}}` bodies.
"""

from __future__ import annotations

from typing import Any

import orjson

from promptdeck.domain.events import Event, Usage
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.openai import OpenAIProvider
from tests.providers.transcripts import Answer, BadLine, Cut, ErrorReply, Garbage, ProviderCase, text_answer

MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
MODEL = "o4-mini-2025-04-16"


# --- transcripts ---------------------------------------------------------------------------------


def sse(*events: dict[str, Any] | str) -> list[bytes]:
    """Server-sent events as OpenAI writes them: `data: <compact JSON>` and a blank line each."""
    return [b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events]


def chunk(delta: dict[str, Any], finish: str | None = None, *, model: str = MODEL) -> dict[str, Any]:
    """A `chat.completion.chunk` as OpenAI streams it with `include_usage` (`usage: null`)."""
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def usage_chunk(usage: dict[str, Any], *, model: str = MODEL) -> dict[str, Any]:
    """The last chunk `include_usage` adds: no choices, the whole request's usage."""
    return {**chunk({}, model=model), "choices": [], "usage": usage}


def completion(
    message: dict[str, Any], finish: str, usage: dict[str, Any], *, model: str = MODEL
) -> dict[str, Any]:
    """A non-streaming `chat.completion` object."""
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb",
    }


# OpenAI's usage object for a reasoning model that hit the prompt cache.
USAGE = {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 32,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
ANSWER = completion(
    {"role": "assistant", "content": "The capital of France is Paris.", "refusal": None, "annotations": []},
    "stop",
    USAGE,
)
ANSWER_STREAM = sse(
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "The capital"}),
    chunk({"content": " of France is"}),
    chunk({"content": " Paris."}),
    chunk({}, "stop"),
    usage_chunk(USAGE),
    "[DONE]",
)

TOOL_USAGE = {"prompt_tokens": 74, "completion_tokens": 17, "total_tokens": 91}
TOOL_CALL_STREAM = sse(
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    *(
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        for part in ('{"', "location", '":"', "Paris", ",", " France", '"}')
    ),
    chunk({}, "tool_calls"),
    usage_chunk(TOOL_USAGE),
    "[DONE]",
)
TOOL_CALL_ANSWER = completion(
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Paris, France"}'},
            }
        ],
        "refusal": None,
    },
    "tool_calls",
    TOOL_USAGE,
)

# DeepSeek reports its prompt cache in its own fields, beside OpenAI's.
DEEPSEEK_USAGE = {
    "prompt_tokens": 13,
    "completion_tokens": 90,
    "total_tokens": 103,
    "prompt_cache_hit_tokens": 8,
    "prompt_cache_miss_tokens": 5,
    "completion_tokens_details": {"reasoning_tokens": 81},
}
DEEPSEEK_STREAM = sse(
    chunk({"role": "assistant", "content": None, "reasoning_content": ""}, model="deepseek-reasoner"),
    chunk({"content": None, "reasoning_content": "The user asks"}, model="deepseek-reasoner"),
    chunk({"content": None, "reasoning_content": " for a capital."}, model="deepseek-reasoner"),
    chunk({"content": "Paris", "reasoning_content": None}, model="deepseek-reasoner"),
    chunk({"content": ".", "reasoning_content": None}, "stop", model="deepseek-reasoner"),
    usage_chunk(DEEPSEEK_USAGE, model="deepseek-reasoner"),
    "[DONE]",
)
DEEPSEEK_ANSWER = completion(
    {"role": "assistant", "content": "Paris.", "reasoning_content": "The user asks for a capital."},
    "stop",
    DEEPSEEK_USAGE,
    model="deepseek-reasoner",
)


# --- helpers -------------------------------------------------------------------------------------


async def run(provider: OpenAIProvider, stream: bool = True, **params: Any) -> list[Event]:
    call = ProviderCall("gpt-test", MESSAGES, params, stream=stream)
    return [event async for event in provider.stream(call)]


def openai_error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body (error codes guide)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --- the provider's case table for the contract --------------------------------------------------

ERROR_TABLE: list[tuple[int, dict[str, Any], str, bool]] = [
    (
        400,
        openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted "
            "in 130017 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
        ),
        "context_length_exceeded",  # the caller's to shorten: a 400 to the caller, not a 502
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
            "The model `gpt-test` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        "upstream_not_found",
        False,
    ),
    (
        429,
        openai_error(
            "Rate limit reached for gpt-test in organization org-x on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1.",
            "requests",
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
    (
        503,
        openai_error("The engine is currently overloaded, please try again later.", "server_error", None),
        "upstream_error",
        True,
    ),
]

GARBAGE = [
    (b"<html><body>Welcome to nginx!</body></html>", "text/html", "not JSON"),
    (b'{"object": "chat.completion", "model": "x"}', "application/json", "without choices"),
    (b'{"object": "chat.completion", "choices": []}', "application/json", "without choices"),
    (b'{"object": "chat.completion", "choices": "nope"}', "application/json", "without choices"),
    (b'{"choices": [{"message": "Paris"}]}', "application/json", "cannot"),
    (b'["not", "an", "object"]', "application/json", "not an object"),
]
GARBAGE_IDS = ["html", "no-choices", "empty-choices", "choices-string", "message-string", "array"]

CASE = ProviderCase(
    name="openai",
    cls=OpenAIProvider,
    key="sk-test",
    run=run,
    text_stream=ANSWER_STREAM,
    text_events=text_answer(f"openai/{MODEL}", Usage(input=1117, cached_input=1024, output=46, reasoning=32)),
    answers=(
        Answer("text", ANSWER_STREAM, ANSWER),
        Answer("tool call", TOOL_CALL_STREAM, TOOL_CALL_ANSWER),
        Answer("deepseek reasoning", DEEPSEEK_STREAM, DEEPSEEK_ANSWER, "openai/deepseek-reasoner"),
    ),
    errors=tuple(
        ErrorReply(
            str(status),
            status,
            body,
            code,
            retryable,
            (body["error"]["message"], *([body["error"]["code"]] if body["error"]["code"] else [])),
        )
        for status, body, code, retryable in ERROR_TABLE
    ),
    garbage=tuple(Garbage(id_, *row) for id_, row in zip(GARBAGE_IDS, GARBAGE, strict=True)),
    cuts=(Cut("no-event", 0, 0), Cut("two-deltas", 3, 3)),
    paths=("/v1/chat/completions", "/v1/chat/completions"),
    headers={"authorization": "Bearer sk-test", "content-type": "application/json"},
    prefix="/v1",
    bad_lines=(BadLine("data-not-json", 2, b"data: {not json at all\n\n", 1, "{not json at all"),),
)
