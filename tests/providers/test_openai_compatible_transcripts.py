"""The `openai` provider against recorded wire transcripts, played by a real HTTP server on loopback.

Each transcript follows a documented Chat Completions format (named in the test's docstring):
OpenAI's API reference for `chat.completion` and `chat.completion.chunk` (with
`stream_options.include_usage`), OpenAI's function-calling guide for streamed tool calls,
DeepSeek's and vLLM's `reasoning_content` deltas, and OpenAI's error-code guide for
`{"error": {"message", "type", "code"}}` bodies. The tests check both the request the
provider sends and the normalized events it produces.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from promptdeck.domain.events import (
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
from promptdeck.providers.openai import OpenAIProvider
from tests.support.postgres import free_port
from tests.support.transcript_server import (
    TranscriptServer,
    failure,
    fold,
    provider_maker,
    respond,
    silence,
    stream,
    unanswered_port,
)

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


@pytest.fixture
async def upstream() -> AsyncIterator[TranscriptServer]:
    async with TranscriptServer(prefix="/v1") as server:
        yield server


@pytest.fixture
async def make_provider(upstream: TranscriptServer) -> AsyncIterator[Callable[..., OpenAIProvider]]:
    async with provider_maker(OpenAIProvider, upstream.base_url, "sk-test") as make:
        yield make


async def run(provider: OpenAIProvider, stream: bool = True, **params: Any) -> list[Event]:
    call = ProviderCall("gpt-test", MESSAGES, params, stream=stream)
    return [event async for event in provider.stream(call)]


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request_asks_for_usage_and_passes_parameters(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI API reference, Create chat completion: `POST {base}/chat/completions`, bearer auth,
    `stream: true` with `stream_options: {include_usage: true}`, promptdeck's parameters under
    OpenAI's names (anything else, like `top_k`, stays behind)."""
    upstream.play(stream(ANSWER_STREAM))
    params: dict[str, Any] = {"temperature": 0.2, "max_tokens": 64, "stop": ["\n"], "seed": 7, "top_p": 0.9}
    params |= {"presence_penalty": 0.5, "frequency_penalty": -0.5}
    await run(make_provider(), **params, top_k=5)
    (seen,) = upstream.requests
    assert seen.method == "POST" and seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "model": "gpt-test",
        "messages": MESSAGES,
        **params,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_non_streaming_request_has_no_stream_fields_and_no_key_means_no_auth(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI API reference, Create chat completion: `stream` defaults to false; a local server
    (Ollama, llama.cpp) needs no key, so none is sent."""
    upstream.play(respond(200, ANSWER))
    await run(make_provider(api_key="", base_url=upstream.base_url + "/"), stream=False, temperature=0)
    (seen,) = upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert "authorization" not in seen.headers
    assert seen.body == {"model": "gpt-test", "messages": MESSAGES, "temperature": 0}


@pytest.mark.parametrize(
    ("neutral", "wire"),
    [
        (
            {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True},
            {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True},
            },
        ),
        (
            {"type": "json_schema", "schema": {"type": "object"}},
            {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}},
        ),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "text"}, {"type": "text"}),
    ],
    ids=["named-strict-schema", "unnamed-schema", "json-object", "text"],
)
async def test_response_format_mapping(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIProvider],
    neutral: dict[str, Any],
    wire: dict[str, Any],
) -> None:
    """OpenAI API reference, Create chat completion, and the Structured Outputs guide:
    `response_format` is `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`
    (`name` is required, so an unnamed schema is called `response`; `strict` only when given),
    or `{"type": "json_object"}` / `{"type": "text"}` as they are."""
    upstream.play(respond(200, ANSWER))
    call = ProviderCall("gpt-test", MESSAGES, {}, stream=False, response_format=neutral)
    assert fold([e async for e in make_provider().stream(call)]).failed is None
    (seen,) = upstream.requests
    assert seen.body == {"model": "gpt-test", "messages": MESSAGES, "response_format": wire}


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_reasoning_effort_is_passed_as_is(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider], streamed: bool
) -> None:
    """OpenAI API reference, Create chat completion: `reasoning_effort` (`low`/`medium`/`high`)
    for reasoning models, a top-level field under its own name, passed without mapping."""
    upstream.play(stream(ANSWER_STREAM) if streamed else respond(200, ANSWER))
    folded = fold(await run(make_provider(), stream=streamed, reasoning_effort="high"))
    assert folded.failed is None and folded.usage is not None and folded.usage.reasoning == 32
    (seen,) = upstream.requests
    assert seen.body["reasoning_effort"] == "high"
    assert {k for k in seen.body if "reason" in k} == {"reasoning_effort"}


# --- answers -------------------------------------------------------------------------------------


async def test_non_streaming_answer_with_cached_and_reasoning_tokens(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI API reference, the chat completion object: `usage.prompt_tokens_details.cached_tokens`
    and `usage.completion_tokens_details.reasoning_tokens`."""
    upstream.play(respond(200, ANSWER))
    events = await run(make_provider(), stream=False)
    assert events == [
        Started(f"openai/{MODEL}"),
        TextDelta("The capital of France is Paris."),
        Usage(input=1117, cached_input=1024, output=46, reasoning=32),
        Finished(STOP),
    ]


async def test_streamed_answer_with_final_usage_chunk(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI API reference, the chat completion chunk object, with `stream_options.include_usage`:
    every chunk carries `usage: null`, then one chunk with `choices: []` and the usage, then
    `data: [DONE]`."""
    upstream.play(stream(ANSWER_STREAM))
    events = await run(make_provider())
    assert events == [
        Started(f"openai/{MODEL}"),
        TextDelta("The capital"),
        TextDelta(" of France is"),
        TextDelta(" Paris."),
        Usage(input=1117, cached_input=1024, output=46, reasoning=32),
        Finished(STOP),
    ]


@pytest.mark.parametrize(
    ("name", "streamed", "answer"),
    [
        ("text", ANSWER_STREAM, ANSWER),
        ("tool call", TOOL_CALL_STREAM, TOOL_CALL_ANSWER),
        ("deepseek reasoning", DEEPSEEK_STREAM, DEEPSEEK_ANSWER),
    ],
)
async def test_stream_and_non_stream_give_the_same_answer(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIProvider],
    name: str,
    streamed: list[bytes],
    answer: dict[str, Any],
) -> None:
    """The same answer as a `chat.completion.chunk` stream and as one `chat.completion` object
    (OpenAI API reference; DeepSeek's reasoning format): identical model, text, reasoning, tool
    calls, usage and stop reason."""
    upstream.play(stream(streamed), respond(200, answer))
    provider = make_provider()
    from_stream, whole = fold(await run(provider)), fold(await run(provider, stream=False))
    assert from_stream == whole
    assert whole.failed is None and whole.usage is not None and whole.usage.input > 0


async def test_streamed_tool_call_arrives_as_argument_deltas(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI function-calling guide, streaming: the first delta names the call (`id`, `name`,
    empty `arguments`), later deltas carry only `index` and argument fragments;
    `finish_reason: tool_calls`."""
    upstream.play(stream(TOOL_CALL_STREAM))
    events = await run(make_provider())
    assert events[0] == Started(f"openai/{MODEL}")
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", "")
    assert all(d.index == 0 and d.id is None and d.name is None for d in deltas[1:])
    assert "".join(d.arguments_delta for d in deltas) == '{"location":"Paris, France"}'
    assert not [e for e in events if isinstance(e, TextDelta)]
    assert events[-2:] == [Usage(input=74, output=17), Finished(TOOL_CALLS)]


async def test_deepseek_reasoning_content_deltas_and_cache_hit_tokens(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """DeepSeek API, reasoning model: `delta.reasoning_content` before `delta.content` (the other
    one null), usage with `prompt_cache_hit_tokens` and `completion_tokens_details.reasoning_tokens`."""
    upstream.play(stream(DEEPSEEK_STREAM))
    events = await run(make_provider())
    assert events == [
        Started("openai/deepseek-reasoner"),
        ReasoningDelta("The user asks"),
        ReasoningDelta(" for a capital."),
        TextDelta("Paris"),
        TextDelta("."),
        Usage(input=13, cached_input=8, output=90, reasoning=81),
        Finished(STOP),
    ]


async def test_vllm_reasoning_field_names(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """vLLM's reasoning parsers: `delta.reasoning_content` (older releases) or `delta.reasoning`
    (newer) in `chat.completion.chunk` deltas; here the answer ends with `finish_reason: length`."""
    upstream.play(
        stream(
            sse(
                chunk({"role": "assistant", "reasoning_content": "Think"}, model="Qwen/QwQ-32B"),
                chunk({"reasoning": " twice."}, model="Qwen/QwQ-32B"),
                chunk({"content": "Par"}, "length", model="Qwen/QwQ-32B"),
                usage_chunk(
                    {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}, model="Qwen/QwQ-32B"
                ),
                "[DONE]",
            )
        )
    )
    folded = fold(await run(make_provider()))
    assert (folded.model, folded.reasoning, folded.text) == ("openai/Qwen/QwQ-32B", "Think twice.", "Par")
    assert folded.usage == Usage(input=9, output=3) and folded.stop == LENGTH


# --- upstream errors -----------------------------------------------------------------------------


def openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "code", "retryable"),
    [
        (
            400,
            openai_error(
                "This model's maximum context length is 128000 tokens. However, your messages resulted "
                "in 130017 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
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
    ],
)
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_openai_error_bodies(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIProvider],
    status: int,
    body: dict[str, Any],
    code: str,
    retryable: bool,
    streamed: bool,
) -> None:
    """OpenAI error codes guide: an HTTP status with `{"error": {"message", "type", "param",
    "code"}}`. The upstream's own message and code reach the caller, with the status."""
    upstream.play(respond(status, body))
    events = await run(make_provider(), stream=streamed)
    assert events == [failure(events)], "an error status yields only the failure"
    failed = failure(events)
    assert (failed.code, failed.retryable) == (code, retryable)
    assert failed.message.startswith("openai upstream")
    assert f"HTTP {status}" in failed.message
    assert body["error"]["message"] in failed.message
    if body["error"]["code"]:
        assert body["error"]["code"] in failed.message


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
NGINX_413 = NGINX_502.replace(b"502 Bad Gateway", b"413 Request Entity Too Large")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "code", "expected"),
    [
        (502, NGINX_502, "text/html", "upstream_error", "502 Bad Gateway nginx"),
        (413, NGINX_413, "text/html", "upstream_rejected", "413 Request Entity Too Large"),
        (503, b"", "text/plain", "upstream_error", "HTTP 503 Service Unavailable"),
        (404, b"404 page not found\n", "text/plain", "upstream_not_found", "404 page not found"),
        (404, b'{"detail":"Not Found"}', "application/json", "upstream_not_found", "Not Found (check"),
    ],
    ids=["nginx-html-502", "nginx-html-413", "empty-503", "go-404", "fastapi-404"],
)
async def test_error_status_with_a_non_openai_body(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIProvider],
    status: int,
    body: bytes,
    content_type: str,
    code: str,
    expected: str,
) -> None:
    """Error statuses without OpenAI's error object: a proxy's HTML page, an empty 503, the
    plain-text 404 of Go's router (Ollama) and FastAPI's `{"detail"}` 404 (vLLM, llama.cpp's
    Python server) for a wrong base URL. Still a clean failure naming the status, what the
    body said, and for a 404 what to check."""
    upstream.play(respond(status, body, content_type))
    failed = failure(await run(make_provider()))
    assert failed.code == code
    assert failed.retryable == (status >= 500)
    assert f"HTTP {status}" in failed.message and expected in failed.message
    assert "\n" not in failed.message and "<html>" not in failed.message


async def test_error_object_inside_a_stream(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """vLLM and OpenRouter report a failure after the stream opened as a `data:` event holding
    `{"error": {...}}` (OpenAI's error shape)."""
    upstream.play(
        stream(
            sse(
                chunk({"role": "assistant", "content": "Par"}),
                {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}},
            )
        )
    )
    events = await run(make_provider())
    assert events[:2] == [Started(f"openai/{MODEL}"), TextDelta("Par")]
    failed = failure(events)
    assert failed.code == "upstream_error" and "CUDA out of memory" in failed.message
    assert not failed.retryable


# --- garbage -------------------------------------------------------------------------------------


async def test_non_json_data_line_mid_stream(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A `chat.completion.chunk` stream (OpenAI API reference) with one line that is not JSON."""
    upstream.play(stream([*ANSWER_STREAM[:2], b"data: {not json at all\n\n", *ANSWER_STREAM[2:]]))
    events = await run(make_provider())
    assert events[0] == Started(f"openai/{MODEL}")
    failed = failure(events)
    assert failed.code == "upstream_bad_response" and "{not json at all" in failed.message


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<html><body>Welcome to nginx!</body></html>", "text/html", "not JSON"),
        (b'{"object": "chat.completion", "model": "x"}', "application/json", "without choices"),
        (b'{"object": "chat.completion", "choices": []}', "application/json", "without choices"),
        (b'{"object": "chat.completion", "choices": "nope"}', "application/json", "without choices"),
        (b'{"choices": [{"message": "Paris"}]}', "application/json", "cannot"),
        (b'["not", "an", "object"]', "application/json", "not an object"),
    ],
    ids=["html", "no-choices", "empty-choices", "choices-string", "message-string", "array"],
)
async def test_garbage_non_streaming_body(
    upstream: TranscriptServer,
    make_provider: Callable[..., OpenAIProvider],
    body: bytes,
    content_type: str,
    expected: str,
) -> None:
    """A 200 answer to a non-streaming call that is not a `chat.completion` object (OpenAI API
    reference): a clean `upstream_bad_response`, never an exception."""
    upstream.play(respond(200, body, content_type))
    events = await run(make_provider(), stream=False)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_bad_response" and expected in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_error_object_with_status_200(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider], streamed: bool
) -> None:
    """Some proxies answer 200 `application/json` holding OpenAI's `{"error": {...}}` object,
    even to a streaming call: the upstream's message comes through, not "no choices"."""
    error = {"error": {"message": "Provider returned error", "type": "upstream_error", "code": 502}}
    upstream.play(respond(200, error))
    failed = failure(await run(make_provider(), stream=streamed))
    assert failed.code == "upstream_error" and "Provider returned error (502)" in failed.message


async def test_stream_of_chunks_without_choices(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """Data lines that are JSON but not `chat.completion.chunk` objects, then `[DONE]`: no answer
    came, so the call fails instead of finishing with empty text."""
    upstream.play(stream(sse({"object": "ping"}, {"status": "ok"}, "[DONE]")))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "no choices" in failed.message


async def test_stream_chunk_of_the_wrong_shape(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A chunk whose `choices` is not a list of objects (OpenAI API reference says it is)."""
    upstream.play(stream(sse(chunk({"content": "Hi"}), {"choices": "nope", "model": MODEL}, "[DONE]")))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response"


async def test_streaming_call_answered_with_an_html_page(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A 200 HTML page (a captive portal, a wrong base URL) where an SSE stream was asked for."""
    upstream.play(respond(200, b"<html>\n<body>Welcome to nginx!</body>\n</html>\n", "text/html"))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "Welcome to nginx" in failed.message


async def test_streaming_call_answered_in_one_piece(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A server that ignores `stream: true` and answers with one `chat.completion` object
    (OpenAI API reference): the answer is used as it is."""
    upstream.play(respond(200, ANSWER), respond(200, ANSWER))
    provider = make_provider()
    assert fold(await run(provider)) == fold(await run(provider, stream=False))
    assert upstream.requests[0].body["stream"] is True


# --- broken connections --------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["clean", "drop"])
@pytest.mark.parametrize("delivered", [0, 3], ids=["no-event", "two-deltas"])
async def test_stream_cut_before_finish_reason(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider], end: str, delivered: int
) -> None:
    """A `chat.completion.chunk` stream (OpenAI API reference) that stops before any
    `finish_reason`, usage or `[DONE]`: its HTTP body either ends properly (`clean`) or the
    connection goes away in the middle of a chunk (`drop`). Retryable only if nothing went out."""
    upstream.play(stream(ANSWER_STREAM[:delivered], end=end))
    events = await run(make_provider())
    expected = [Started(f"openai/{MODEL}"), TextDelta("The capital"), TextDelta(" of France is")]
    assert events[:-1] == expected[:delivered]
    failed = failure(events)
    assert failed.code == "upstream_stream_cut" and failed.message.startswith("openai upstream")
    assert failed.retryable == (delivered == 0)


async def test_connection_refused(make_provider: Callable[..., OpenAIProvider]) -> None:
    """Nothing listens on the port."""
    port = free_port()
    for streamed in (True, False):
        events = await run(make_provider(base_url=f"http://127.0.0.1:{port}/v1"), stream=streamed)
        failed = failure(events)
        assert events == [failed]
        assert failed.code == "upstream_unreachable" and failed.retryable
        assert f"127.0.0.1:{port}" in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_upstream_that_never_answers(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider], streamed: bool
) -> None:
    """The upstream accepts the connection and the request, then says nothing."""
    upstream.play(silence)
    provider = make_provider(read_timeout=0.3, total_timeout=0.3)
    began = time.monotonic()
    events = await run(provider, stream=streamed)
    assert time.monotonic() - began < 2
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_timeout" and not failed.retryable  # its whole limit is spent
    assert "0.3" in failed.message


async def test_stream_that_stalls_after_some_text(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A `chat.completion.chunk` stream (OpenAI API reference) that goes silent mid-way: the
    read timeout ends it; it is not retryable, since text already went out."""
    upstream.play(stream(ANSWER_STREAM[:2], end="stall"))
    events = await run(make_provider(read_timeout=0.3))
    assert events[:2] == [Started(f"openai/{MODEL}"), TextDelta("The capital")]
    failed = failure(events)
    assert failed.code == "upstream_timeout" and not failed.retryable


async def test_stream_that_trickles_past_the_total_limit(
    upstream: TranscriptServer, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """Every chunk arrives within the read timeout, but the whole stream takes too long."""
    upstream.play(stream(ANSWER_STREAM, pause=0.15))
    events = await run(make_provider(read_timeout=1.0, total_timeout=0.3))
    failed = failure(events)
    assert failed.code == "upstream_timeout" and "total" in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_per_call_connect_timeout_replaces_the_configured_one(
    make_provider: Callable[..., OpenAIProvider], streamed: bool
) -> None:
    """A variant's `timeouts.connect` reaches the provider as the call's `connect_timeout` and
    replaces the configured connect limit: an upstream whose listener never accepts fails as
    `upstream_unreachable` (retryable) after the call's 0.3 s, not the configured 10 s."""
    with unanswered_port() as port:
        provider = make_provider(base_url=f"http://127.0.0.1:{port}/v1", connect_timeout=10.0)
        call = ProviderCall("gpt-test", MESSAGES, {}, stream=streamed, connect_timeout=0.3)
        began = time.monotonic()
        events = [event async for event in provider.stream(call)]
        assert time.monotonic() - began < 3
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_unreachable" and failed.retryable
    assert f"127.0.0.1:{port}" in failed.message
