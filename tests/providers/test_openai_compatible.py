"""What the `openai` provider does beyond the provider contract (`test_provider_contract.py`).
OpenAI's Chat Completions API cannot be reached from the test machines: each test plays
recorded transcripts of its documented format (`transcripts/openai_compatible.py`, the document
named in the test) through a local fake upstream, and checks the request sent and the
normalized events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from promptdeck.domain.events import (
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
from promptdeck.providers.openai import OpenAIProvider
from tests.providers.transcripts.openai_compatible import (
    ANSWER,
    ANSWER_STREAM,
    CASE,
    DEEPSEEK_STREAM,
    MESSAGES,
    MODEL,
    TOOL_CALL_STREAM,
    chunk,
    run,
    sse,
    usage_chunk,
)
from tests.support.fake_upstream import FakeUpstream, failure, fold, respond, stream, unanswered_port

upstream, make_provider = CASE.fixtures()


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request_asks_for_usage_and_passes_parameters(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI API reference, Create chat completion: `POST {base}/chat/completions`, bearer auth,
    `stream: true` with `stream_options: {include_usage: true}`, promptdeck's parameters under
    OpenAI's names (anything else, like `top_k`, stays behind)."""
    upstream.play(stream(ANSWER_STREAM))
    params: dict[str, Any] = {"temperature": 0.2, "max_tokens": 64, "stop": ["\n"], "seed": 7, "top_p": 0.9}
    params |= {"presence_penalty": 0.5, "frequency_penalty": -0.5}
    await run(make_provider(), **params, top_k=5)
    (seen,) = upstream.seen
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """OpenAI API reference, Create chat completion: `stream` defaults to false; a local server
    (Ollama, llama.cpp) needs no key, so none is sent."""
    upstream.play(respond(200, ANSWER))
    await run(make_provider(api_key="", base_url=upstream.base_url + "/"), stream=False, temperature=0)
    (seen,) = upstream.seen
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
    upstream: FakeUpstream,
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
    (seen,) = upstream.seen
    assert seen.body == {"model": "gpt-test", "messages": MESSAGES, "response_format": wire}


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_reasoning_effort_is_passed_as_is(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider], streamed: bool
) -> None:
    """OpenAI API reference, Create chat completion: `reasoning_effort` (`low`/`medium`/`high`)
    for reasoning models, a top-level field under its own name, passed without mapping."""
    upstream.play(stream(ANSWER_STREAM) if streamed else respond(200, ANSWER))
    folded = fold(await run(make_provider(), stream=streamed, reasoning_effort="high"))
    assert folded.failed is None and folded.usage is not None and folded.usage.reasoning == 32
    (seen,) = upstream.seen
    assert seen.body["reasoning_effort"] == "high"
    assert {k for k in seen.body if "reason" in k} == {"reasoning_effort"}


# --- answers -------------------------------------------------------------------------------------


async def test_non_streaming_answer_with_cached_and_reasoning_tokens(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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


async def test_streamed_tool_call_arrives_as_argument_deltas(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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
    upstream: FakeUpstream,
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
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_error_object_with_status_200(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider], streamed: bool
) -> None:
    """Some proxies answer 200 `application/json` holding OpenAI's `{"error": {...}}` object,
    even to a streaming call: the upstream's message comes through, not "no choices"."""
    error = {"error": {"message": "Provider returned error", "type": "upstream_error", "code": 502}}
    upstream.play(respond(200, error))
    failed = failure(await run(make_provider(), stream=streamed))
    assert failed.code == "upstream_error" and "Provider returned error (502)" in failed.message


async def test_stream_of_chunks_without_choices(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """Data lines that are JSON but not `chat.completion.chunk` objects, then `[DONE]`: no answer
    came, so the call fails instead of finishing with empty text."""
    upstream.play(stream(sse({"object": "ping"}, {"status": "ok"}, "[DONE]")))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and "no choices" in failed.message


async def test_stream_chunk_of_the_wrong_shape(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A chunk whose `choices` is not a list of objects (OpenAI API reference says it is)."""
    upstream.play(stream(sse(chunk({"content": "Hi"}), {"choices": "nope", "model": MODEL}, "[DONE]")))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response"


async def test_streaming_call_answered_in_one_piece(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A server that ignores `stream: true` and answers with one `chat.completion` object
    (OpenAI API reference): the answer is used as it is."""
    upstream.play(respond(200, ANSWER), respond(200, ANSWER))
    provider = make_provider()
    assert fold(await run(provider)) == fold(await run(provider, stream=False))
    assert upstream.seen[0].body["stream"] is True


# --- broken connections --------------------------------------------------------------------------


async def test_stream_that_stalls_after_some_text(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
) -> None:
    """A `chat.completion.chunk` stream (OpenAI API reference) that goes silent mid-way: the
    read timeout ends it; it is not retryable, since text already went out."""
    upstream.play(stream(ANSWER_STREAM[:2], end="stall"))
    events = await run(make_provider(read_timeout=0.3))
    assert events[:2] == [Started(f"openai/{MODEL}"), TextDelta("The capital")]
    failed = failure(events)
    assert failed.code == "upstream_timeout" and not failed.retryable


async def test_stream_that_trickles_past_the_total_limit(
    upstream: FakeUpstream, make_provider: Callable[..., OpenAIProvider]
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
