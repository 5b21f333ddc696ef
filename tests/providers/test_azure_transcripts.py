"""The `azure` provider against wire transcripts, played by a real HTTP server on loopback.

Each transcript follows Azure OpenAI's data-plane inference REST reference (api-version
2024-10-21): `POST {endpoint}/openai/deployments/{deployment-id}/chat/completions
?api-version=…` with the key in an `api-key` header and no `model` in the body; answers are
Chat Completions objects with Azure's `prompt_filter_results` / `content_filter_results`
annotations, and a stream opens with a chunk holding only `prompt_filter_results` (empty
`id`, `model` and `choices`). Azure's content-filtering guide gives `finish_reason:
content_filter` for a filtered answer and an HTTP 400 with `error.code: content_filter` and
`innererror.content_filter_result` for a filtered prompt. The tests check both the request
the provider sends and the normalized events it produces.
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
from promptdeck.providers.azure import AzureOpenAIProvider
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
DEPLOYMENT = "gpt-4o-prod"
MODEL = "gpt-4o-2024-08-06"  # what Azure reports as the model behind the deployment
KEY = "0123456789abcdef0123456789abcdef"
CHAT_PATH = f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2024-10-21"


# --- transcripts ---------------------------------------------------------------------------------


def safe(**filtered: str) -> dict[str, Any]:
    """Azure's per-category content-filter results: every category `safe`, unless named here."""
    results: dict[str, Any] = {
        category: {"filtered": category in filtered, "severity": filtered.get(category, "safe")}
        for category in ("hate", "self_harm", "sexual", "violence")
    }
    return results


PROMPT_FILTER_RESULTS = [
    {
        "prompt_index": 0,
        "content_filter_results": {**safe(), "jailbreak": {"filtered": False, "detected": False}},
    }
]


def sse(*events: dict[str, Any] | str) -> list[bytes]:
    """Server-sent events as Azure writes them: `data: <compact JSON>` and a blank line each."""
    return [b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events]


def prompt_filter_chunk() -> dict[str, Any]:
    """The chunk Azure streams first: only the prompt's filter results."""
    return {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": PROMPT_FILTER_RESULTS,
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **filtered: str) -> dict[str, Any]:
    """A `chat.completion.chunk` as Azure streams it: each choice with its `content_filter_results`
    (none on the role-only first delta), `usage: null` while `include_usage` is on."""
    choice: dict[str, Any] = {"delta": delta, "finish_reason": finish, "index": 0, "logprobs": None}
    if delta.get("content") or finish:
        choice["content_filter_results"] = safe(**filtered) if delta.get("content") or filtered else {}
    return {
        "choices": [choice],
        "created": 1741570283,
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "model": MODEL,
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_ee1d74bde0",
        "usage": None,
    }


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return {**chunk({}), "choices": [], "usage": usage}


def completion(
    message: dict[str, Any], finish: str, usage: dict[str, Any], **filtered: str
) -> dict[str, Any]:
    """A non-streaming `chat.completion` as Azure answers it, with both filter annotations."""
    return {
        "choices": [
            {
                "content_filter_results": safe(**filtered),
                "finish_reason": finish,
                "index": 0,
                "logprobs": None,
                "message": message,
            }
        ],
        "created": 1741570283,
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "model": MODEL,
        "object": "chat.completion",
        "prompt_filter_results": PROMPT_FILTER_RESULTS,
        "system_fingerprint": "fp_ee1d74bde0",
        "usage": usage,
    }


USAGE = {
    "completion_tokens": 46,
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    "prompt_tokens": 1117,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "total_tokens": 1163,
}
ANSWER = completion(
    {"content": "The capital of France is Paris.", "refusal": None, "role": "assistant"}, "stop", USAGE
)
ANSWER_STREAM = sse(
    prompt_filter_chunk(),
    chunk({"content": "", "refusal": None, "role": "assistant"}),
    chunk({"content": "The capital"}),
    chunk({"content": " of France is"}),
    chunk({"content": " Paris."}),
    chunk({}, "stop"),
    usage_chunk(USAGE),
    "[DONE]",
)
ANSWER_EVENTS: list[Event] = [
    Started(f"azure/{MODEL}"),
    TextDelta("The capital"),
    TextDelta(" of France is"),
    TextDelta(" Paris."),
    Usage(input=1117, cached_input=1024, output=46),
    Finished(STOP),
]

TOOL_USAGE = {"completion_tokens": 17, "prompt_tokens": 74, "total_tokens": 91}
TOOL_CALL_STREAM = sse(
    prompt_filter_chunk(),
    chunk(
        {
            "content": None,
            "role": "assistant",
            "tool_calls": [
                {
                    "function": {"arguments": "", "name": "get_weather"},
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "index": 0,
                    "type": "function",
                }
            ],
        }
    ),
    *(
        chunk({"tool_calls": [{"function": {"arguments": part}, "index": 0}]})
        for part in ('{"', "location", '":"', "Paris", ",", " France", '"}')
    ),
    chunk({}, "tool_calls"),
    usage_chunk(TOOL_USAGE),
    "[DONE]",
)
TOOL_CALL_ANSWER = completion(
    {
        "content": None,
        "refusal": None,
        "role": "assistant",
        "tool_calls": [
            {
                "function": {"arguments": '{"location":"Paris, France"}', "name": "get_weather"},
                "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                "type": "function",
            }
        ],
    },
    "tool_calls",
    TOOL_USAGE,
)

# A filtered answer: the text so far, then `finish_reason: content_filter` with the category hit.
FILTERED_USAGE = {"completion_tokens": 12, "prompt_tokens": 30, "total_tokens": 42}
FILTERED_STREAM = sse(
    prompt_filter_chunk(),
    chunk({"content": "", "role": "assistant"}),
    chunk({"content": "Here is how"}),
    chunk({}, "content_filter", violence="medium"),
    usage_chunk(FILTERED_USAGE),
    "[DONE]",
)
FILTERED_ANSWER = completion(
    {"content": "Here is how", "role": "assistant"}, "content_filter", FILTERED_USAGE, violence="medium"
)

# A filtered prompt: HTTP 400, `code: content_filter`, the categories in `innererror`.
PROMPT_FILTERED = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy. Please modify your prompt and retry. To learn more about our content "
        "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                **safe(hate="medium"),
                "jailbreak": {"filtered": True, "detected": True},
            },
        },
    }
}


# A reasoning model's answer (Azure AI Foundry's DeepSeek-R1 on the same Chat Completions
# route): `reasoning_content` deltas before the text, and the reasoning tokens in
# `completion_tokens_details.reasoning_tokens` as Azure's reasoning-models guide shows.
REASONING_USAGE = {
    "completion_tokens": 90,
    "completion_tokens_details": {"reasoning_tokens": 81, "audio_tokens": 0},
    "prompt_tokens": 13,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "total_tokens": 103,
}
REASONING_STREAM = sse(
    prompt_filter_chunk(),
    chunk({"content": None, "reasoning_content": "", "role": "assistant"}),
    chunk({"content": None, "reasoning_content": "The user asks"}),
    chunk({"content": None, "reasoning_content": " for a capital."}),
    chunk({"content": "Paris", "reasoning_content": None}),
    chunk({"content": ".", "reasoning_content": None}, "stop"),
    usage_chunk(REASONING_USAGE),
    "[DONE]",
)
REASONING_ANSWER = completion(
    {"content": "Paris.", "reasoning_content": "The user asks for a capital.", "role": "assistant"},
    "stop",
    REASONING_USAGE,
)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[TranscriptServer]:
    async with TranscriptServer() as server:
        yield server


@pytest.fixture
async def make_provider(upstream: TranscriptServer) -> AsyncIterator[Callable[..., AzureOpenAIProvider]]:
    async with provider_maker(AzureOpenAIProvider, upstream.base_url, KEY, url_option="endpoint") as make:
        yield make


async def run(provider: AzureOpenAIProvider, stream: bool = True, **fields: Any) -> list[Event]:
    params = fields.pop("params", {})
    call = ProviderCall(DEPLOYMENT, MESSAGES, params, stream=stream, **fields)
    return [event async for event in provider.stream(call)]


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request_names_the_deployment_and_sends_the_key_as_api_key(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """Azure OpenAI inference reference, Chat completions - Create: the deployment and
    `api-version` in the URL, the key in `api-key` (no bearer token), a body without `model`;
    `stream_options.include_usage` as the api-version takes it; parameters under OpenAI's names."""
    upstream.play(stream(ANSWER_STREAM))
    params: dict[str, Any] = {"temperature": 0.2, "max_tokens": 64, "stop": ["\n"], "seed": 7}
    await run(make_provider(), params={**params, "top_k": 5})
    (seen,) = upstream.requests
    assert (seen.method, seen.path) == ("POST", CHAT_PATH)
    assert seen.headers["api-key"] == KEY
    assert "authorization" not in seen.headers
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "messages": MESSAGES,
        **params,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_non_streaming_request_and_a_newer_api_version(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """The api-version is the configured one; `stream` is left out (it defaults to false); an
    endpoint given with a trailing slash, or as the API root `…/openai`, is the same endpoint."""
    upstream.play(respond(200, ANSWER), respond(200, ANSWER))
    for endpoint in (upstream.base_url + "/", upstream.base_url + "/openai/"):
        provider = make_provider(endpoint=endpoint, api_version="2025-01-01-preview")
        await run(provider, stream=False, params={"reasoning_effort": "low"})
    for seen in upstream.requests:
        assert (
            seen.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2025-01-01-preview"
        )
        assert seen.body == {"messages": MESSAGES, "reasoning_effort": "low"}


async def test_old_api_version_streams_without_asking_for_usage(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """api-versions before 2024-08-01 know no `stream_options` (and reject unknown arguments):
    none is sent, and the stream, which then carries no usage chunk, still finishes."""
    upstream.play(stream([event for event in ANSWER_STREAM if b'"usage":{' not in event]))
    events = await run(make_provider(api_version="2024-02-01"))
    (seen,) = upstream.requests
    assert seen.path.endswith("?api-version=2024-02-01")
    assert "stream_options" not in seen.body and seen.body["stream"] is True
    assert events == [e for e in ANSWER_EVENTS if not isinstance(e, Usage)]


async def test_payload_is_the_body_without_a_model(make_provider: Callable[..., AzureOpenAIProvider]) -> None:
    """`payload()` shows exactly what Azure would receive: the deployment is in the URL only."""
    tools = [{"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}]
    call = ProviderCall(
        DEPLOYMENT, MESSAGES, {}, stream=False, tools=tools, tool_choice={"name": "get_weather"}
    )
    assert make_provider().payload(call) == {
        "messages": MESSAGES,
        "tools": [{"type": "function", "function": tools[0]}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }


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
    ],
    ids=["named-strict-schema", "unnamed-schema", "json-object"],
)
async def test_response_format_mapping(
    upstream: TranscriptServer,
    make_provider: Callable[..., AzureOpenAIProvider],
    neutral: dict[str, Any],
    wire: dict[str, Any],
) -> None:
    """Azure OpenAI inference reference (2024-10-21), Chat completions - Create, and Azure's
    structured-outputs guide: `response_format` `{"type": "json_schema", "json_schema":
    {"name", "schema", "strict"}}` (an unnamed schema is called `response`), or
    `{"type": "json_object"}`; the body still has no `model`."""
    upstream.play(respond(200, ANSWER))
    events = await run(make_provider(), stream=False, response_format=neutral)
    assert fold(events).failed is None
    (seen,) = upstream.requests
    assert seen.path == CHAT_PATH
    assert seen.body == {"messages": MESSAGES, "response_format": wire}


async def test_per_call_endpoint_and_key_override_the_configured_ones(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """A workspace's stored credential: its endpoint and key are used instead of the
    configured ones (which here point nowhere)."""
    upstream.play(stream(ANSWER_STREAM), respond(200, ANSWER))
    provider = make_provider(endpoint=f"http://127.0.0.1:{free_port()}", api_key="configured-key")
    for streamed in (True, False):
        events = await run(provider, stream=streamed, base_url=upstream.base_url, api_key="workspace-key")
        assert fold(events).text == "The capital of France is Paris."
    assert [seen.headers["api-key"] for seen in upstream.requests] == ["workspace-key"] * 2
    assert [seen.path for seen in upstream.requests] == [CHAT_PATH] * 2


async def test_no_endpoint_anywhere_is_a_clear_failure(
    make_provider: Callable[..., AzureOpenAIProvider],
) -> None:
    """Without a configured or per-call endpoint there is nowhere to send the call."""
    events = await run(make_provider(endpoint=""))
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_unreachable" and not failed.retryable
    assert "PROMPTDECK_AZURE_OPENAI_ENDPOINT" in failed.message


def test_from_settings_reads_the_azure_settings() -> None:
    """`PROMPTDECK_AZURE_OPENAI_*`: endpoint, key and api-version; the shared upstream timeouts."""
    settings = Settings(
        azure_openai_endpoint="https://contoso.openai.azure.com/",
        azure_openai_api_key=KEY,
        azure_openai_api_version="2024-12-01-preview",
        upstream_connect_timeout=1.5,
        upstream_read_timeout=20.0,
        upstream_total_timeout=90.0,
    )
    provider = AzureOpenAIProvider.from_settings(settings)
    request = provider.request(ProviderCall(DEPLOYMENT, MESSAGES))
    assert provider.name == "azure"
    assert request.url == (
        f"https://contoso.openai.azure.com/openai/deployments/{DEPLOYMENT}/chat/completions"
        "?api-version=2024-12-01-preview"
    )
    sent = provider.prepared(ProviderCall(DEPLOYMENT, MESSAGES)).headers
    assert sent["api-key"] == KEY and "Authorization" not in sent and "api-key" not in provider.headers
    assert (provider.timeouts.connect, provider.timeouts.read, provider.timeouts.total) == (1.5, 20.0, 90.0)


# --- answers -------------------------------------------------------------------------------------


async def test_streamed_answer_skips_the_prompt_filter_chunk(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """Azure's stream opens with a chunk of only `prompt_filter_results` (empty `model`, no
    choices); `Started` names the model of the chunks that follow, not `unknown`."""
    upstream.play(stream(ANSWER_STREAM))
    assert await run(make_provider()) == ANSWER_EVENTS


async def test_non_streaming_answer_with_cached_tokens(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """A `chat.completion` with Azure's filter annotations and `prompt_tokens_details.cached_tokens`."""
    upstream.play(respond(200, ANSWER))
    events = await run(make_provider(), stream=False)
    assert events == [
        Started(f"azure/{MODEL}"),
        TextDelta("The capital of France is Paris."),
        *ANSWER_EVENTS[-2:],
    ]


@pytest.mark.parametrize(
    ("streamed", "answer"),
    [(ANSWER_STREAM, ANSWER), (TOOL_CALL_STREAM, TOOL_CALL_ANSWER), (FILTERED_STREAM, FILTERED_ANSWER)],
    ids=["text", "tool-call", "content-filter"],
)
async def test_stream_and_non_stream_give_the_same_answer(
    upstream: TranscriptServer,
    make_provider: Callable[..., AzureOpenAIProvider],
    streamed: list[bytes],
    answer: dict[str, Any],
) -> None:
    """The same answer streamed and whole: identical model, text, tool calls, usage and stop reason."""
    upstream.play(stream(streamed), respond(200, answer))
    provider = make_provider()
    from_stream, whole = fold(await run(provider)), fold(await run(provider, stream=False))
    assert from_stream == whole
    assert whole.model == f"azure/{MODEL}" and whole.usage is not None and whole.usage.input > 0


async def test_streamed_tool_call(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """Chat Completions' streamed tool call, as Azure sends it: the first delta names the call,
    later ones carry argument fragments; `finish_reason: tool_calls`."""
    upstream.play(stream(TOOL_CALL_STREAM))
    events = await run(make_provider())
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", "")
    assert "".join(d.arguments_delta for d in deltas) == '{"location":"Paris, France"}'
    assert events[-2:] == [Usage(input=74, output=17), Finished(TOOL_CALLS)]


async def test_filtered_answer_finishes_with_content_filter(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """Azure's content filter stops an answer: the text before the cut, then
    `finish_reason: content_filter` (its `content_filter_results` name the category)."""
    upstream.play(stream(FILTERED_STREAM))
    events = await run(make_provider())
    assert events == [
        Started(f"azure/{MODEL}"),
        TextDelta("Here is how"),
        Usage(input=30, output=12),
        Finished(CONTENT_FILTER),
    ]


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_reasoning_content_and_reasoning_tokens(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider], streamed: bool
) -> None:
    """Azure AI Foundry's reasoning models on Chat Completions (DeepSeek-R1): the reasoning in
    `reasoning_content` (deltas in a stream, a message field whole) before the answer; Azure's
    reasoning-models guide: `usage.completion_tokens_details.reasoning_tokens`."""
    upstream.play(stream(REASONING_STREAM) if streamed else respond(200, REASONING_ANSWER))
    events = await run(make_provider(), stream=streamed)
    folded = fold(events)
    assert (folded.model, folded.reasoning, folded.text) == (
        f"azure/{MODEL}",
        "The user asks for a capital.",
        "Paris.",
    )
    assert folded.usage == Usage(input=13, output=90, reasoning=81) and folded.stop == STOP
    first_reasoning = next(i for i, e in enumerate(events) if isinstance(e, ReasoningDelta))
    first_text = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert first_reasoning < first_text


# --- upstream errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_filtered_prompt_is_a_clear_failure(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider], streamed: bool
) -> None:
    """Azure's content filter blocks the prompt: HTTP 400, `code: content_filter`. The failure
    says so, with the categories that were hit, and is not worth retrying."""
    upstream.play(respond(400, PROMPT_FILTERED))
    events = await run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_rejected" and not failed.retryable
    assert failed.message.startswith("azure upstream at http://127.0.0.1:")
    assert "HTTP 400" in failed.message and "(content_filter)" in failed.message
    assert "content filter blocked the prompt: hate (medium), jailbreak;" in failed.message


@pytest.mark.parametrize(
    ("status", "error", "code", "retryable", "hint"),
    [
        (
            401,
            {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional API "
                "endpoint for your resource.",
            },
            "upstream_auth_failed",
            False,
            "resource's API key",
        ),
        (
            404,
            {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
            },
            "upstream_not_found",
            False,
            "deployment name",
        ),
        (
            429,
            {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please "
                "retry after 6 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would "
                "like to further increase the default rate limit.",
            },
            "upstream_rate_limited",
            True,
            "slow down",
        ),
        (
            500,
            {
                "code": "InternalServerError",
                "message": "The service is temporarily unable to process your request. "
                "Please try again later.",
            },
            "upstream_error",
            True,
            "",
        ),
    ],
    ids=["401", "404", "429", "500"],
)
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_azure_error_bodies(
    upstream: TranscriptServer,
    make_provider: Callable[..., AzureOpenAIProvider],
    status: int,
    error: dict[str, str],
    code: str,
    retryable: bool,
    hint: str,
    streamed: bool,
) -> None:
    """Azure's error response (`{"error": {"code", "message"}}`): the status picks the code,
    Azure's own words and code reach the caller, with what to check."""
    upstream.play(respond(status, {"error": error}))
    events = await run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed]
    assert (failed.code, failed.retryable) == (code, retryable)
    assert f"HTTP {status}" in failed.message and f"{error['message']} ({error['code']})" in failed.message
    assert hint in failed.message
    assert "content filter" not in failed.message


# --- broken streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["clean", "drop"])
@pytest.mark.parametrize(
    ("delivered", "told"), [(1, 0), (4, 3)], ids=["after-prompt-filter", "after-two-deltas"]
)
async def test_stream_cut_before_finish_reason(
    upstream: TranscriptServer,
    make_provider: Callable[..., AzureOpenAIProvider],
    end: str,
    delivered: int,
    told: int,
) -> None:
    """A stream that stops before any `finish_reason` or `[DONE]`, its body ended properly or
    the connection gone mid-chunk. Cut after only the prompt-filter chunk, nothing reached the
    caller, so it is retryable."""
    upstream.play(stream(ANSWER_STREAM[:delivered], end=end))
    events = await run(make_provider())
    assert events[:-1] == ANSWER_EVENTS[:told]
    failed = failure(events)
    assert failed.code == "upstream_stream_cut" and failed.message.startswith("azure upstream")
    assert failed.retryable == (told == 0)


# --- garbage and broken connections --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"<html><body>Azure API Management: gateway page</body></html>", "text/html", "not JSON"),
        (b'{"object": "chat.completion", "model": "gpt-4o"}', "application/json", "without choices"),
        (b'["not", "an", "object"]', "application/json", "not an object"),
    ],
    ids=["html", "no-choices", "array"],
)
async def test_garbage_non_streaming_body(
    upstream: TranscriptServer,
    make_provider: Callable[..., AzureOpenAIProvider],
    body: bytes,
    content_type: str,
    expected: str,
) -> None:
    """A 200 answer that is not a `chat.completion` object (Azure OpenAI inference reference):
    a clean, non-retryable `upstream_bad_response` naming Azure, never an exception."""
    upstream.play(respond(200, body, content_type))
    events = await run(make_provider(), stream=False)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_bad_response" and not failed.retryable
    assert failed.message.startswith("azure upstream") and expected in failed.message


async def test_connection_refused(make_provider: Callable[..., AzureOpenAIProvider]) -> None:
    """Nothing listens at the endpoint: `upstream_unreachable`, retryable, naming the address."""
    port = free_port()
    for streamed in (True, False):
        events = await run(make_provider(endpoint=f"http://127.0.0.1:{port}"), stream=streamed)
        failed = failure(events)
        assert events == [failed]
        assert failed.code == "upstream_unreachable" and failed.retryable
        assert failed.message.startswith("azure upstream") and f"127.0.0.1:{port}" in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_upstream_that_never_answers(
    upstream: TranscriptServer, make_provider: Callable[..., AzureOpenAIProvider], streamed: bool
) -> None:
    """The endpoint accepts the request, then says nothing: `upstream_timeout` after the read
    limit (streaming) or the total limit (whole), retryable since nothing reached the caller."""
    upstream.play(silence)
    began = time.monotonic()
    events = await run(make_provider(read_timeout=0.3, total_timeout=0.3), stream=streamed)
    assert time.monotonic() - began < 2
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_timeout" and not failed.retryable  # its whole limit is spent
    assert failed.message.startswith("azure upstream") and "0.3" in failed.message
