"""What the `gemini` provider does beyond the provider contract (`test_provider_contract.py`).
Google's Gemini API cannot be reached from the test machines: each test plays recorded transcripts of
its documented format (`transcripts/gemini.py`, the document named in the test) through a
local fake upstream, and checks the request sent and the normalized events.
"""

from __future__ import annotations

from collections.abc import Callable
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
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.providers.base import REASONING_BUDGETS, ProviderCall
from promptdeck.providers.gemini import GeminiProvider
from tests.providers.transcripts.gemini import (
    CACHED_ANSWER,
    CACHED_STREAM,
    CALL_STREAM,
    CASE,
    KEY,
    MESSAGES,
    MODEL,
    RESPONSE_ID,
    TEXT_ANSWER,
    TEXT_STREAM,
    THOUGHT_STREAM,
    WEATHER_TOOL,
    answer,
    google_error,
    run,
    sse,
    usage,
)
from tests.support.fake_upstream import FakeUpstream, failure, fold, respond, stream

upstream, make_provider = CASE.fixtures()


# --- the request we send -------------------------------------------------------------------------


async def test_streaming_request(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """Gemini API reference, `models.streamGenerateContent`: `POST /v1beta/models/{model}:
    streamGenerateContent?alt=sse`, the key in `x-goog-api-key`; system messages become
    `systemInstruction`, the rest `contents` with roles `user`/`model`; promptdeck's parameters
    under `generationConfig`'s names (`stop` is always a list; anything else stays behind)."""
    upstream.play(stream(TEXT_STREAM))
    messages = [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "system", "content": "You never use emoji."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! What do you want to know?"},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    params = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 64, "stop": "\n", "seed": 7}
    params |= {"presence_penalty": 0.5, "frequency_penalty": -0.5, "top_k": 5}
    await run(make_provider(), messages=messages, params=params)
    (seen,) = upstream.seen
    assert seen.method == "POST"
    assert seen.path == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    assert seen.headers["x-goog-api-key"] == KEY
    assert "authorization" not in seen.headers and "key=" not in seen.path
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Hi! What do you want to know?"}]},
            {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
        ],
        "systemInstruction": {
            "parts": [{"text": "You answer in one short sentence."}, {"text": "You never use emoji."}]
        },
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "maxOutputTokens": 64,
            "stopSequences": ["\n"],
            "seed": 7,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.5,
        },
    }


async def test_non_streaming_request_and_no_key_means_no_header(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """Gemini API reference, `models.generateContent`: the same body at `:generateContent`, no
    `alt`; no system message, no `systemInstruction`; no parameters, no `generationConfig`."""
    upstream.play(respond(200, TEXT_ANSWER))
    await run(make_provider(api_key=""), stream=False, messages=MESSAGES[1:])
    (seen,) = upstream.seen
    assert seen.path == f"/v1beta/models/{MODEL}:generateContent"
    assert "x-goog-api-key" not in seen.headers
    assert seen.body == {"contents": [{"role": "user", "parts": [{"text": MESSAGES[1]["content"]}]}]}


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
async def test_reasoning_effort_asks_for_a_thinking_budget_and_thoughts(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], effort: str
) -> None:
    """Gemini thinking guide: `generationConfig.thinkingConfig` with a `thinkingBudget` in tokens
    (promptdeck's budget for the effort) and `includeThoughts: true` for thought summaries."""
    upstream.play(stream(THOUGHT_STREAM))
    await run(make_provider(), params={"reasoning_effort": effort, "max_tokens": 20000})
    assert upstream.seen[0].body["generationConfig"] == {
        "maxOutputTokens": 20000,
        "thinkingConfig": {"thinkingBudget": REASONING_BUDGETS[effort], "includeThoughts": True},
    }


@pytest.mark.parametrize(
    ("response_format", "config"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {"type": "json_schema", "name": "city", "strict": True, "schema": {"type": "object"}},
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        ),
    ],
    ids=["text", "json_object", "json_schema"],
)
async def test_response_format(
    upstream: FakeUpstream,
    make_provider: Callable[..., GeminiProvider],
    response_format: dict[str, Any],
    config: dict[str, Any] | None,
) -> None:
    """Gemini structured-output guide: `responseMimeType: application/json`, and the schema as
    `responseJsonSchema` (JSON Schema, as promptdeck holds it)."""
    upstream.play(respond(200, TEXT_ANSWER))
    await run(make_provider(), stream=False, response_format=response_format)
    assert upstream.seen[0].body.get("generationConfig") == config


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"name": "get_weather"}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
    ids=["unset", "auto", "none", "required", "named"],
)
async def test_tools_and_tool_choice(
    upstream: FakeUpstream,
    make_provider: Callable[..., GeminiProvider],
    choice: str | dict[str, Any] | None,
    config: dict[str, Any] | None,
) -> None:
    """Gemini function-calling guide: `tools: [{functionDeclarations: [...]}]` (parameters as
    JSON Schema in `parametersJsonSchema`) and `toolConfig.functionCallingConfig` with mode
    AUTO, NONE or ANY, and `allowedFunctionNames` for one named function."""
    upstream.play(stream(CALL_STREAM))
    bare = {"name": "get_time"}
    await run(make_provider(), tools=[WEATHER_TOOL, bare], tool_choice=choice)
    body = upstream.seen[0].body
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parametersJsonSchema": WEATHER_TOOL["parameters"],
                },
                {"name": "get_time"},
            ]
        }
    ]
    assert body.get("toolConfig") == (None if config is None else {"functionCallingConfig": config})


async def test_conversation_with_function_calls_and_results(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """Gemini function-calling guide, multi-turn: the model's calls go back as `functionCall`
    parts of a `model` turn (args as an object), the results as `functionResponse` parts of one
    `user` turn, named after the call they answer (`response` an object: a JSON object result
    as it is, anything else under `output`). The first call of a turn carries Google's
    documented stand-in thought signature, since promptdeck's messages cannot keep the real one
    (Gemini 3 rejects a replayed call without one)."""
    upstream.play(respond(200, TEXT_ANSWER))
    messages = [
        MESSAGES[0],
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_a", "name": "get_weather", "arguments": '{"location":"Paris, France"}'},
                {"id": "call_b", "name": "get_weather", "arguments": '{"location":"Lyon, France"}'},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temperature": 21, "sky": "clear"}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "18 degrees, light rain"},
        {"role": "assistant", "content": "Paris: 21, clear. Lyon: 18, rain.", "tool_calls": []},
        {"role": "user", "content": "And the time in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"id": "call_c", "name": "get_time"}],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "14:05"},
    ]
    await run(make_provider(), stream=False, messages=messages, tools=[WEATHER_TOOL, {"name": "get_time"}])
    assert upstream.seen[0].body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Lyon?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"location": "Paris, France"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"name": "get_weather", "args": {"location": "Lyon, France"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"temperature": 21, "sky": "clear"},
                    }
                },
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "18 degrees, light rain"},
                    }
                },
            ],
        },
        {"role": "model", "parts": [{"text": "Paris: 21, clear. Lyon: 18, rain."}]},
        {"role": "user", "parts": [{"text": "And the time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {
                    "functionCall": {"name": "get_time", "args": {}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_time", "response": {"output": "14:05"}}}],
        },
    ]


def test_payload_is_the_exact_request_body(make_provider: Callable[..., GeminiProvider]) -> None:
    """Gemini API reference, `GenerateContentRequest`: `payload()` is exactly the body a call
    sends (`systemInstruction`, `contents`, `generationConfig` with `thinkingConfig` and a JSON
    schema response, `tools` with `functionDeclarations`, `toolConfig`), without sending it."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    call = ProviderCall(
        MODEL,
        MESSAGES,
        {"temperature": 0.2, "max_tokens": 64, "reasoning_effort": "low"},
        stream=False,
        tools=[WEATHER_TOOL],
        tool_choice={"name": WEATHER_TOOL["name"]},
        response_format={"type": "json_schema", "name": "city", "schema": schema, "strict": True},
    )
    provider = make_provider()
    payload = provider.payload(call)
    assert payload == provider.request(call).body
    assert payload == {
        "contents": [{"role": "user", "parts": [{"text": MESSAGES[1]["content"]}]}],
        "systemInstruction": {"parts": [{"text": MESSAGES[0]["content"]}]},
        "generationConfig": {
            "temperature": 0.2,
            "maxOutputTokens": 64,
            "thinkingConfig": {"thinkingBudget": REASONING_BUDGETS["low"], "includeThoughts": True},
            "responseMimeType": "application/json",
            "responseJsonSchema": schema,
        },
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": WEATHER_TOOL["name"],
                        "description": WEATHER_TOOL["description"],
                        "parametersJsonSchema": WEATHER_TOOL["parameters"],
                    }
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [WEATHER_TOOL["name"]]}
        },
    }


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [{"role": "tool", "tool_call_id": "call_x", "content": "1"}],
            "call 'call_x', which no earlier assistant message made",
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "c", "name": "f", "arguments": "[1]"}],
                }
            ],
            "arguments must be a JSON object",
        ),
        ([{"role": "developer", "content": "x"}], "no 'developer' role"),
    ],
    ids=["unknown-call", "arguments-not-an-object", "unknown-role"],
)
def test_messages_gemini_cannot_take(
    make_provider: Callable[..., GeminiProvider], messages: list[dict[str, Any]], expected: str
) -> None:
    """Conversations that have no Gemini `contents` form (a `functionResponse` must name its
    function; `functionCall.args` is an object): refused before anything is sent."""
    with pytest.raises(ValidationFailed, match=expected):
        make_provider().payload(ProviderCall(MODEL, messages))


async def test_per_call_key_and_base_url(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """A workspace's stored credential: its key replaces the configured one in `x-goog-api-key`
    and its base URL is used instead (with or without the `/v1beta` Google's docs show)."""
    upstream.play(respond(200, TEXT_ANSWER), stream(TEXT_STREAM))
    provider = make_provider(base_url="http://127.0.0.1:9", api_key="configured-key")
    whole = await run(provider, stream=False, api_key="workspace-key", base_url=upstream.base_url + "/")
    streamed = await run(provider, api_key="workspace-key", base_url=upstream.base_url + "/v1beta")
    assert fold(whole).failed is None and fold(streamed).failed is None
    assert [r.headers["x-goog-api-key"] for r in upstream.seen] == ["workspace-key"] * 2
    assert [r.path for r in upstream.seen] == [
        f"/v1beta/models/{MODEL}:generateContent",
        f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
    ]


def test_from_settings() -> None:
    """`PROMPTDECK_GEMINI_*` settings: Google's endpoint, the key and the upstream time limits."""
    settings = Settings(gemini_api_key="from-env", upstream_read_timeout=7.0)
    provider = GeminiProvider.from_settings(settings)
    assert provider.name == "gemini"
    request = provider.request(ProviderCall("gemini-2.5-pro", MESSAGES))
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert provider.prepared(ProviderCall("gemini-2.5-pro", MESSAGES)).headers["x-goog-api-key"] == "from-env"
    assert provider.timeouts.read == 7.0


# --- answers -------------------------------------------------------------------------------------


async def test_whole_answer(upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]) -> None:
    """Gemini API reference, `GenerateContentResponse`: `candidates[0].content.parts`,
    `finishReason: STOP`, `usageMetadata`, `modelVersion`."""
    upstream.play(respond(200, TEXT_ANSWER))
    assert await run(make_provider(), stream=False) == [
        Started(f"gemini/{MODEL}"),
        TextDelta("The capital of France is Paris."),
        Usage(input=12, output=8),
        Finished(STOP),
    ]


async def test_streamed_answer_with_cumulative_usage(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """`models.streamGenerateContent?alt=sse`: every chunk a `GenerateContentResponse` with the
    text so far added and the usage so far; the last one has `finishReason` and the totals."""
    upstream.play(stream(TEXT_STREAM))
    assert await run(make_provider()) == [
        Started(f"gemini/{MODEL}"),
        TextDelta("The capital"),
        TextDelta(" of France is"),
        TextDelta(" Paris."),
        Usage(input=12, output=8),
        Finished(STOP),
    ]


async def test_streamed_thoughts(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """Gemini thinking guide, streaming with `includeThoughts`: thought summaries arrive as parts
    with `thought: true` before the answer's parts; `thoughtsTokenCount` counts apart from
    `candidatesTokenCount`, and promptdeck's output includes it (as OpenAI's does)."""
    upstream.play(stream(THOUGHT_STREAM))
    assert await run(make_provider(), params={"reasoning_effort": "low"}) == [
        Started(f"gemini/{MODEL}"),
        ReasoningDelta("**Recalling the capital**\n\nThe user asks"),
        ReasoningDelta(" for France's capital."),
        TextDelta("The capital of France is"),
        TextDelta(" Paris."),
        Usage(input=12, output=8 + 141, reasoning=141),
        Finished(STOP),
    ]


async def test_streamed_function_calls(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """Gemini function-calling guide, parallel calls: each `functionCall` part arrives whole
    (`name`, `args` object), with no id in Gemini 2.5; `finishReason` stays `STOP`. Each call is
    one `ToolCallDelta` with its JSON arguments and an id of promptdeck's, and the answer ends
    with tool calls."""
    upstream.play(stream(CALL_STREAM))
    events = await run(make_provider(), tools=[WEATHER_TOOL])
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(c.index, c.name, c.arguments_delta) for c in calls] == [
        (0, "get_weather", '{"location":"Paris, France"}'),
        (1, "get_weather", '{"location":"Lyon, France","unit":"c"}'),
    ]
    assert all(c.id and c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert events[0] == Started(f"gemini/{MODEL}")
    assert events[-2:] == [Usage(input=74, output=19), Finished(TOOL_CALLS)]


async def test_function_call_with_its_own_id(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """Gemini 3's `functionCall` carries an `id` (and a `thoughtSignature` on its part): the id is
    kept; text before the call comes through as text."""
    parts: list[dict[str, Any]] = [
        {"text": "Checking the weather."},
        {
            "functionCall": {"id": "7kq2x0pd", "name": "get_weather", "args": {"location": "Paris"}},
            "thoughtSignature": "CiQBcsjafBv3mPZyV0Y3Rk1xT0lYb2dzNw==",
        },
    ]
    upstream.play(respond(200, answer(parts, "STOP", usage(40, 12), model="gemini-3-pro-preview")))
    assert await run(make_provider(), stream=False, model="gemini-3-pro-preview") == [
        Started("gemini/gemini-3-pro-preview"),
        TextDelta("Checking the weather."),
        ToolCallDelta(0, "7kq2x0pd", "get_weather", '{"location":"Paris"}'),
        Usage(input=40, output=12),
        Finished(TOOL_CALLS),
    ]


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_cached_prompt_tokens(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], streamed: bool
) -> None:
    """Gemini context-caching guide: `cachedContentTokenCount` is the part of `promptTokenCount`
    served from the cache (the prompt count includes it)."""
    upstream.play(stream(CACHED_STREAM) if streamed else respond(200, CACHED_ANSWER))
    folded = fold(await run(make_provider(), stream=streamed))
    assert folded.text == "Paris." and folded.usage == Usage(input=2150, cached_input=2048, output=9)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("MAX_TOKENS", LENGTH),
        ("SAFETY", CONTENT_FILTER),
        ("RECITATION", CONTENT_FILTER),
        ("BLOCKLIST", CONTENT_FILTER),
        ("PROHIBITED_CONTENT", CONTENT_FILTER),
        ("SPII", CONTENT_FILTER),
        ("OTHER", STOP),
        ("LANGUAGE", STOP),
    ],
)
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_finish_reasons(
    upstream: FakeUpstream,
    make_provider: Callable[..., GeminiProvider],
    finish: str,
    stop: str,
    streamed: bool,
) -> None:
    """Gemini API reference, `Candidate.FinishReason`: the text before the stop stays; a candidate
    stopped by a filter ends as `content_filter` (when streaming, its last chunk has no content)."""
    last = answer(None, finish, usage(12, 3))
    whole = answer([{"text": "The capital"}], finish, usage(12, 3))
    upstream.play(
        stream(sse(answer([{"text": "The capital"}], usage=usage(12, 2)), last))
        if streamed
        else respond(200, whole)
    )
    folded = fold(await run(make_provider(), stream=streamed))
    assert (folded.text, folded.stop, folded.usage) == ("The capital", stop, Usage(input=12, output=3))


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_malformed_function_call(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], streamed: bool
) -> None:
    """Gemini API reference, `FinishReason.MALFORMED_FUNCTION_CALL` with a `finishMessage`: the
    model produced nothing usable, so the call fails (after the usage it cost)."""
    last = answer(None, "MALFORMED_FUNCTION_CALL", usage(74, 0))
    last["candidates"][0]["finishMessage"] = (
        "Malformed function call: print(default_api.get_weather(city=Paris))"
    )
    upstream.play(stream(sse(last)) if streamed else respond(200, last))
    events = await run(make_provider(), stream=streamed, tools=[WEATHER_TOOL])
    assert events[:2] == [Started(f"gemini/{MODEL}"), Usage(input=74)]
    failed = failure(events)
    assert failed.code == "upstream_error" and not failed.retryable
    assert "MALFORMED_FUNCTION_CALL: Malformed function call: print(" in failed.message


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_answer_without_usage_or_model_version(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], streamed: bool
) -> None:
    """A `GenerateContentResponse` of only `candidates` (every other field is optional in the API
    reference): the model asked for is named, and usage is still reported, as zero."""
    chunk = answer([{"text": "Paris."}], "STOP", None, model=None)
    upstream.play(stream(sse(chunk)) if streamed else respond(200, chunk))
    assert await run(make_provider(), stream=streamed) == [
        Started(f"gemini/{MODEL}"),
        TextDelta("Paris."),
        Usage(),
        Finished(STOP),
    ]


# --- blocked prompts and upstream errors ---------------------------------------------------------


BLOCKED = {
    "promptFeedback": {
        "blockReason": "SAFETY",
        "safetyRatings": [
            {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"},
        ],
    },
    "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    "modelVersion": MODEL,
    "responseId": RESPONSE_ID,
}


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_blocked_prompt(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], streamed: bool
) -> None:
    """Gemini API reference, `PromptFeedback`: a blocked prompt gets no candidates, only
    `promptFeedback.blockReason` (here `SAFETY`); the call fails saying so, not retryable."""
    upstream.play(stream(sse(BLOCKED)) if streamed else respond(200, BLOCKED))
    events = await run(make_provider(), stream=streamed)
    failed = failure(events)
    assert events == [failed]
    assert failed.code == "upstream_rejected" and not failed.retryable
    assert failed.message.startswith("gemini upstream blocked the prompt (SAFETY)")


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "whole"])
async def test_error_status_with_a_proxy_page(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], streamed: bool
) -> None:
    """An error status without Google's error object (a proxy's HTML page): still a clean failure
    naming the status and what the page said."""
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    upstream.play(respond(502, page, "text/html"))
    failed = failure(await run(make_provider(), stream=streamed))
    assert (failed.code, failed.retryable) == ("upstream_error", True)
    assert "HTTP 502" in failed.message and "502 Bad Gateway" in failed.message and "<" not in failed.message


async def test_error_object_inside_a_stream(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """A stream that opened with HTTP 200, then reports a failure as a `data:` line holding
    Google's error object: the text so far went out, so it is not retryable."""
    error = google_error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")
    upstream.play(stream([*TEXT_STREAM[:1], *sse(error)]))
    events = await run(make_provider())
    assert events[:2] == [Started(f"gemini/{MODEL}"), TextDelta("The capital")]
    failed = failure(events)
    assert failed.code == "upstream_error" and not failed.retryable
    assert (
        "failed mid-stream: The model is overloaded. Please try again later. (UNAVAILABLE)" in failed.message
    )


async def test_error_object_first_in_a_stream(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """The same error object as a stream's only `data:` line: nothing went out, so an overloaded
    model may be retried."""
    upstream.play(stream(sse(google_error(503, "The model is overloaded.", "UNAVAILABLE"))))
    events = await run(make_provider())
    failed = failure(events)
    assert events == [failed] and failed.code == "upstream_error" and failed.retryable


# --- broken streams and garbage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunk",
    [
        {"candidates": "nope", "modelVersion": MODEL},
        {"candidates": [{"content": {"parts": "Paris"}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
        ["not", "an", "object"],
    ],
    ids=["candidates-string", "parts-string", "call-without-name", "array"],
)
async def test_stream_chunk_of_the_wrong_shape(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider], chunk: Any
) -> None:
    """A `data:` line that is JSON but no `GenerateContentResponse` (Gemini API reference)."""
    upstream.play(stream([TEXT_STREAM[0], b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"]))
    failed = failure(await run(make_provider()))
    assert failed.code == "upstream_bad_response" and not failed.retryable


async def test_streaming_call_answered_in_one_piece(
    upstream: FakeUpstream, make_provider: Callable[..., GeminiProvider]
) -> None:
    """A server (a proxy) that answers `alt=sse` with one JSON `GenerateContentResponse`: the
    answer is used as it is."""
    upstream.play(respond(200, TEXT_ANSWER), respond(200, TEXT_ANSWER))
    provider = make_provider()
    assert fold(await run(provider)) == fold(await run(provider, stream=False))
    assert upstream.seen[0].path.endswith(":streamGenerateContent?alt=sse")


async def test_unsupported_reasoning_effort_is_refused(make_provider: Callable[..., GeminiProvider]) -> None:
    """An effort with no thinking budget (promptdeck's are low, medium and high) is refused, not
    silently dropped."""
    with pytest.raises(ValidationFailed, match="reasoning_effort"):
        make_provider().payload(ProviderCall(MODEL, MESSAGES, {"reasoning_effort": "minimal"}))


# --- broken connections (the shared `HttpUpstream`, mapped for this provider) ---------------------
