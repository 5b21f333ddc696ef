"""Recorded wire transcripts for the `azure` provider, and its case table for the provider contract.

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

from typing import Any

import orjson

from promptdeck.domain.events import Event, Usage
from promptdeck.providers.azure import AzureOpenAIProvider
from promptdeck.providers.base import ProviderCall
from tests.providers.transcripts import Answer, Cut, ErrorReply, Garbage, ProviderCase, text_answer

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
ANSWER_EVENTS = text_answer(f"azure/{MODEL}", Usage(input=1117, cached_input=1024, output=46))

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


async def run(provider: AzureOpenAIProvider, stream: bool = True, **fields: Any) -> list[Event]:
    params = fields.pop("params", {})
    call = ProviderCall(DEPLOYMENT, MESSAGES, params, stream=stream, **fields)
    return [event async for event in provider.stream(call)]


# --- the provider's case table for the contract --------------------------------------------------

ERROR_TABLE: list[tuple[int, dict[str, str], str, bool, str]] = [
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
            "message": "The service is temporarily unable to process your request. Please try again later.",
        },
        "upstream_error",
        True,
        "",
    ),
]

GARBAGE = [
    (b"<html><body>Azure API Management: gateway page</body></html>", "text/html", "not JSON"),
    (b'{"object": "chat.completion", "model": "gpt-4o"}', "application/json", "without choices"),
    (b'["not", "an", "object"]', "application/json", "not an object"),
]
GARBAGE_IDS = ["html", "no-choices", "array"]

CASE = ProviderCase(
    name="azure",
    cls=AzureOpenAIProvider,
    key=KEY,
    run=run,
    text_stream=ANSWER_STREAM,
    text_events=ANSWER_EVENTS,
    answers=(
        Answer("text", ANSWER_STREAM, ANSWER),
        Answer("tool-call", TOOL_CALL_STREAM, TOOL_CALL_ANSWER),
        Answer("content-filter", FILTERED_STREAM, FILTERED_ANSWER),
    ),
    errors=tuple(
        ErrorReply(
            str(status),
            status,
            {"error": error},
            code,
            retryable,
            (f"{error['message']} ({error['code']})", hint),
            ("content filter",),
        )
        for status, error, code, retryable, hint in ERROR_TABLE
    ),
    garbage=tuple(Garbage(id_, *row) for id_, row in zip(GARBAGE_IDS, GARBAGE, strict=True)),
    cuts=(Cut("after-prompt-filter", 1, 0), Cut("after-two-deltas", 4, 3)),
    paths=(CHAT_PATH, CHAT_PATH),
    headers={"api-key": KEY, "content-type": "application/json"},
    not_sent=("authorization",),
    url_option="endpoint",
)
