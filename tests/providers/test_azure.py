"""What the `azure` provider does beyond the provider contract (`test_provider_contract.py`).
Azure OpenAI's API cannot be reached from the test machines: each test plays recorded transcripts of
its documented format (`transcripts/azure.py`, the document named in the test) through a
local fake upstream, and checks the request sent and the normalized events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from promptdeck.config import Settings
from promptdeck.domain.events import (
    CONTENT_FILTER,
    STOP,
    TOOL_CALLS,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.providers.azure import AzureOpenAIProvider
from promptdeck.providers.base import ProviderCall
from tests.providers.transcripts.azure import (
    ANSWER,
    ANSWER_EVENTS,
    ANSWER_STREAM,
    CASE,
    CHAT_PATH,
    DEPLOYMENT,
    FILTERED_STREAM,
    KEY,
    MESSAGES,
    MODEL,
    PROMPT_FILTERED,
    REASONING_ANSWER,
    REASONING_STREAM,
    TOOL_CALL_STREAM,
    run,
)
from tests.support.fake_upstream import FakeUpstream, failure, fold, respond, stream
from tests.support.postgres import free_port

upstream, make_provider = CASE.fixtures()


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request_names_the_deployment_and_sends_the_key_as_api_key(
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """Azure OpenAI inference reference, Chat completions - Create: the deployment and
    `api-version` in the URL, the key in `api-key` (no bearer token), a body without `model`;
    `stream_options.include_usage` as the api-version takes it; parameters under OpenAI's names."""
    upstream.play(stream(ANSWER_STREAM))
    params: dict[str, Any] = {"temperature": 0.2, "max_tokens": 64, "stop": ["\n"], "seed": 7}
    await run(make_provider(), params={**params, "top_k": 5})
    (seen,) = upstream.seen
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
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """The api-version is the configured one; `stream` is left out (it defaults to false); an
    endpoint given with a trailing slash, or as the API root `…/openai`, is the same endpoint."""
    upstream.play(respond(200, ANSWER), respond(200, ANSWER))
    for endpoint in (upstream.base_url + "/", upstream.base_url + "/openai/"):
        provider = make_provider(endpoint=endpoint, api_version="2025-01-01-preview")
        await run(provider, stream=False, params={"reasoning_effort": "low"})
    for seen in upstream.seen:
        assert (
            seen.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions?api-version=2025-01-01-preview"
        )
        assert seen.body == {"messages": MESSAGES, "reasoning_effort": "low"}


async def test_old_api_version_streams_without_asking_for_usage(
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """api-versions before 2024-08-01 know no `stream_options` (and reject unknown arguments):
    none is sent, and the stream, which then carries no usage chunk, still finishes."""
    upstream.play(stream([event for event in ANSWER_STREAM if b'"usage":{' not in event]))
    events = await run(make_provider(api_version="2024-02-01"))
    (seen,) = upstream.seen
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
    upstream: FakeUpstream,
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
    (seen,) = upstream.seen
    assert seen.path == CHAT_PATH
    assert seen.body == {"messages": MESSAGES, "response_format": wire}


async def test_per_call_endpoint_and_key_override_the_configured_ones(
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """A workspace's stored credential: its endpoint and key are used instead of the
    configured ones (which here point nowhere)."""
    upstream.play(stream(ANSWER_STREAM), respond(200, ANSWER))
    provider = make_provider(endpoint=f"http://127.0.0.1:{free_port()}", api_key="configured-key")
    for streamed in (True, False):
        events = await run(provider, stream=streamed, base_url=upstream.base_url, api_key="workspace-key")
        assert fold(events).text == "The capital of France is Paris."
    assert [seen.headers["api-key"] for seen in upstream.seen] == ["workspace-key"] * 2
    assert [seen.path for seen in upstream.seen] == [CHAT_PATH] * 2


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
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """Azure's stream opens with a chunk of only `prompt_filter_results` (empty `model`, no
    choices); `Started` names the model of the chunks that follow, not `unknown`."""
    upstream.play(stream(ANSWER_STREAM))
    assert await run(make_provider()) == ANSWER_EVENTS


async def test_non_streaming_answer_with_cached_tokens(
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
) -> None:
    """A `chat.completion` with Azure's filter annotations and `prompt_tokens_details.cached_tokens`."""
    upstream.play(respond(200, ANSWER))
    events = await run(make_provider(), stream=False)
    assert events == [
        Started(f"azure/{MODEL}"),
        TextDelta("The capital of France is Paris."),
        *ANSWER_EVENTS[-2:],
    ]


async def test_streamed_tool_call(
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider]
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
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider], streamed: bool
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
    upstream: FakeUpstream, make_provider: Callable[..., AzureOpenAIProvider], streamed: bool
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


# --- broken streams ------------------------------------------------------------------------------


# --- garbage and broken connections --------------------------------------------------------------
