"""Recorded wire transcripts for the `gemini` provider, and its case table for the provider contract.

Each transcript follows a documented format of Google's Gemini API (named in the test's
docstring): the API reference for `models.generateContent` and `models.streamGenerateContent`
(`?alt=sse`: each `data:` line one whole `GenerateContentResponse`, written `\\r\\n`-terminated as
Google's servers do), the thinking guide (`thinkingConfig`, parts with `thought: true`,
`usageMetadata.thoughtsTokenCount`), the function-calling guide (`functionDeclarations`,
`toolConfig.functionCallingConfig`, whole `functionCall` parts), the context-caching guide
(`cachedContentTokenCount`), `promptFeedback.blockReason` for blocked prompts, and the
troubleshooting guide's error table (`{"error": {"code", "message", "status"}}`).
"""

from __future__ import annotations

from typing import Any

import orjson

from promptdeck.domain.events import Event, Usage
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.gemini import GeminiProvider
from tests.providers.transcripts import Answer, BadLine, Cut, ErrorReply, Garbage, ProviderCase, text_answer
from tests.support.fake_upstream import Folded

MODEL = "gemini-2.5-flash"
KEY = "AIzaSyTest-key"
MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
RESPONSE_ID = "8dNkaJ6vLq2m1MkP0ZWw0Qw"


# --- transcripts ---------------------------------------------------------------------------------


def sse(*events: dict[str, Any] | str) -> list[bytes]:
    """Server-sent events as Google's servers write them: `data: <JSON>` and `\\r\\n\\r\\n` each."""
    return [b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\r\n\r\n" for e in events]


def answer(
    parts: list[dict[str, Any]] | None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    *,
    model: str | None = MODEL,
) -> dict[str, Any]:
    """A `GenerateContentResponse`: one candidate (proto JSON omits unset fields, so a chunk
    without a `finishReason` has none), the usage so far, `modelVersion` and `responseId`."""
    candidate: dict[str, Any] = {"index": 0}
    if parts is not None:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        out["usageMetadata"] = usage
    if model:
        out["modelVersion"] = model
    out["responseId"] = RESPONSE_ID
    return out


def usage(prompt: int, candidates: int | None = None, **extra: int) -> dict[str, Any]:
    """`usageMetadata` with its per-modality details, as Gemini 2.5 reports it."""
    out: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        out["candidatesTokenCount"] = candidates
    out |= {k: v for k, v in extra.items() if k != "total"}
    out["totalTokenCount"] = extra.get(
        "total", prompt + (candidates or 0) + extra.get("thoughtsTokenCount", 0)
    )
    out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return out


TEXT_USAGE = usage(12, 8)
TEXT_ANSWER = answer([{"text": "The capital of France is Paris."}], "STOP", TEXT_USAGE)
# Usage in a stream is cumulative: each chunk reports the total so far.
TEXT_STREAM = sse(
    answer([{"text": "The capital"}], usage=usage(12, 2)),
    answer([{"text": " of France is"}], usage=usage(12, 5)),
    answer([{"text": " Paris."}], "STOP", TEXT_USAGE),
)

THOUGHT_USAGE = usage(12, 8, thoughtsTokenCount=141)
THOUGHT_ANSWER = answer(
    [
        {"text": "**Recalling the capital**\n\nThe user asks for France's capital.", "thought": True},
        {"text": "The capital of France is Paris."},
    ],
    "STOP",
    THOUGHT_USAGE,
)
THOUGHT_STREAM = sse(
    answer(
        [{"text": "**Recalling the capital**\n\nThe user asks", "thought": True}],
        usage=usage(12, thoughtsTokenCount=93),
    ),
    answer([{"text": " for France's capital.", "thought": True}], usage=usage(12, thoughtsTokenCount=141)),
    answer([{"text": "The capital of France is"}], usage=usage(12, 6, thoughtsTokenCount=141)),
    answer([{"text": " Paris."}], "STOP", THOUGHT_USAGE),
)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["location"],
        "additionalProperties": False,
    },
}
CALL_USAGE = usage(74, 19)
CALL_PARTS = [
    {"functionCall": {"name": "get_weather", "args": {"location": "Paris, France"}}},
    {"functionCall": {"name": "get_weather", "args": {"location": "Lyon, France", "unit": "c"}}},
]
CALL_ANSWER = answer(CALL_PARTS, "STOP", CALL_USAGE)
# Function calls arrive whole, each in a part of its own; a call ends with `STOP`.
CALL_STREAM = sse(
    answer([CALL_PARTS[0]], usage=usage(74, 10)),
    answer([CALL_PARTS[1]], "STOP", CALL_USAGE),
)

CACHED_USAGE = usage(2150, 9, cachedContentTokenCount=2048)
CACHED_ANSWER = answer([{"text": "Paris."}], "STOP", CACHED_USAGE)
CACHED_STREAM = sse(
    answer([{"text": "Par"}], usage=usage(2150, 1)), answer([{"text": "is."}], "STOP", CACHED_USAGE)
)


def google_error(code: int, message: str, status: str, *details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


# --- helpers -------------------------------------------------------------------------------------


async def run(provider: GeminiProvider, stream: bool = True, **fields: Any) -> list[Event]:
    fields.setdefault("messages", MESSAGES)
    call = ProviderCall(fields.pop("model", MODEL), stream=stream, **fields)
    return [event async for event in provider.stream(call)]


def without_ids(folded: Folded) -> Folded:
    """The fold with generated tool call ids checked and blanked (they differ call to call)."""
    for tool in folded.tools.values():
        assert str(tool["id"]).startswith("call_") and len(tool["id"]) > 10
        tool["id"] = None
    return folded


API_KEY_INVALID = google_error(
    400,
    "API key not valid. Please pass a valid API key.",
    "INVALID_ARGUMENT",
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    },
    {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key.",
    },
)
ERRORS = [
    (
        400,
        google_error(
            400,
            "* GenerateContentRequest.generation_config.max_output_tokens: must be positive\n",
            "INVALID_ARGUMENT",
        ),
        "upstream_rejected",
        False,
    ),
    (400, API_KEY_INVALID, "upstream_auth_failed", False),
    (
        403,
        google_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
            "PERMISSION_DENIED",
        ),
        "upstream_auth_failed",
        False,
    ),
    (
        404,
        google_error(
            404,
            f"models/{MODEL} is not found for API version v1beta, or is not supported for generateContent. "
            "Call ListModels to see the list of available models and their supported methods.",
            "NOT_FOUND",
        ),
        "upstream_not_found",
        False,
    ),
    (
        429,
        google_error(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            "RESOURCE_EXHAUSTED",
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
        ),
        "upstream_rate_limited",
        True,
    ),
    (
        500,
        google_error(
            500,
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
            "INTERNAL",
        ),
        "upstream_error",
        True,
    ),
    (
        503,
        google_error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE"),
        "upstream_error",
        True,
    ),
]


# --- the provider's case table for the contract --------------------------------------------------

GARBAGE = [
    (b"<html><body>Welcome to nginx!</body></html>", "text/html", "not JSON"),
    (b'{"modelVersion": "gemini-2.5-flash"}', "application/json", "without candidates"),
    (b'{"candidates": []}', "application/json", "without candidates"),
    (b'{"candidates": "nope"}', "application/json", "cannot read"),
    (b'{"candidates": [{"content": {"parts": "Paris"}}]}', "application/json", "cannot"),
    (b'["not", "an", "object"]', "application/json", "not an object"),
]
GARBAGE_IDS = ["html", "no-candidates", "empty-candidates", "candidates-string", "parts-string", "array"]


def error_reply(status: int, body: dict[str, Any], code: str, retryable: bool, wrapped: bool) -> ErrorReply:
    """Google's error body, bare or in a list (as the JSON-array stream format sends it)."""
    says = (" ".join(body["error"]["message"].split()), f"({body['error']['status']})")
    if code == "upstream_auth_failed":
        says += ("check the API key",)
    return ErrorReply(
        f"{status}-{body['error']['status']}{'-in-a-list' if wrapped else ''}",
        status,
        orjson.dumps([body] if wrapped else body),
        code,
        retryable,
        says,
        ("\n", KEY),
    )


CASE = ProviderCase(
    name="gemini",
    cls=GeminiProvider,
    key=KEY,
    run=run,
    text_stream=TEXT_STREAM,
    text_events=text_answer(f"gemini/{MODEL}", Usage(input=12, output=8)),
    answers=(
        Answer("text", TEXT_STREAM, TEXT_ANSWER),
        Answer("thoughts", THOUGHT_STREAM, THOUGHT_ANSWER),
        Answer("function calls", CALL_STREAM, CALL_ANSWER),
        Answer("cached", CACHED_STREAM, CACHED_ANSWER),
    ),
    errors=tuple(error_reply(*error, wrapped) for error in ERRORS for wrapped in (False, True)),
    garbage=tuple(Garbage(id_, *row) for id_, row in zip(GARBAGE_IDS, GARBAGE, strict=True)),
    cuts=(Cut("no-chunk", 0, 0), Cut("two-chunks", 2, 3)),
    paths=(
        f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
        f"/v1beta/models/{MODEL}:generateContent",
    ),
    headers={"x-goog-api-key": KEY, "content-type": "application/json"},
    not_sent=("authorization",),
    error_at=f"/v1beta/models/{MODEL}:",
    bad_lines=(BadLine("data-not-json", 1, b"data: {not json at all\r\n\r\n", 2, "{not json at all"),),
    comparable=without_ids,
)
