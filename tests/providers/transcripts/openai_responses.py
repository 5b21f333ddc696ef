"""Recorded wire transcripts for the `openai-responses` provider, and its contract case table.

Each transcript follows OpenAI's API reference for the Responses API: `POST /v1/responses`,
the `Response` object (`output` items of type `reasoning` with `summary_text` parts,
`message` with `output_text` parts, `function_call`; `status`, `incomplete_details`,
`usage` with `input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`)
and its streaming events (`event: <type>` then `data: <JSON>` carrying the same `type` and a
`sequence_number`; `response.created` … `response.completed` / `response.incomplete` /
`response.failed`, or an `error` event; no `[DONE]`). Function calls follow OpenAI's
function-calling guide, reasoning summaries its reasoning guide, `text.format` its
structured-outputs guide, error bodies its error-code guide. The tests check both the
request the provider sends and the normalized events it produces.
"""

from __future__ import annotations

from typing import Any

import orjson

from promptdeck.domain.events import Event, ReasoningDelta, Usage
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.openai_responses import OpenAIResponsesProvider
from tests.providers.transcripts import Answer, Cut, ErrorReply, Garbage, ProviderCase, text_answer
from tests.providers.transcripts.openai_compatible import ERROR_TABLE as CHAT_ERRORS
from tests.providers.transcripts.openai_compatible import openai_error

MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
MODEL = "o4-mini-2025-04-16"


# --- transcripts ---------------------------------------------------------------------------------


def response(
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    *,
    status: str = "completed",
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `Response` object as the API returns it (and as `response.*` lifecycle events carry it)."""
    return {
        "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
        "object": "response",
        "created_at": 1741476777,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": "You answer in one short sentence.",
        "max_output_tokens": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def reasoning(*summary: str, id_: str = "rs_6876cf02e0bc8192b74af0cb64f1f4a6") -> dict[str, Any]:
    return {"id": id_, "type": "reasoning", "summary": [{"type": "summary_text", "text": s} for s in summary]}


def message(text: str, id_: str = "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41") -> dict[str, Any]:
    return {
        "id": id_,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call(call_id: str, name: str, arguments: str, id_: str) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


# The streamed life of each kind of output item: added, its deltas, its `*.done` events, done.


def reasoning_events(index: int, item: dict[str, Any], *parts: list[str]) -> list[dict[str, Any]]:
    """`response.reasoning_summary_part.added`, `…summary_text.delta`s, `….done`s per summary part."""
    at = {"item_id": item["id"], "output_index": index}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": {**item, "summary": []}}
    ]
    for number, (pieces, whole) in enumerate(zip(parts, item["summary"], strict=True)):
        assert "".join(pieces) == whole["text"]
        part = {**at, "summary_index": number}
        events.append(
            {
                "type": "response.reasoning_summary_part.added",
                **part,
                "part": {"type": "summary_text", "text": ""},
            }
        )
        events += [{"type": "response.reasoning_summary_text.delta", **part, "delta": p} for p in pieces]
        events.append({"type": "response.reasoning_summary_text.done", **part, "text": whole["text"]})
        events.append({"type": "response.reasoning_summary_part.done", **part, "part": whole})
    return [*events, {"type": "response.output_item.done", "output_index": index, "item": item}]


def message_events(index: int, item: dict[str, Any], *pieces: str) -> list[dict[str, Any]]:
    """`response.content_part.added`, `response.output_text.delta`s, their `*.done` events."""
    (content,) = item["content"]
    assert "".join(pieces) == content["text"]
    at = {"item_id": item["id"], "output_index": index, "content_index": 0}
    empty = {**content, "text": ""}
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **at, "part": empty},
        *({"type": "response.output_text.delta", **at, "delta": p, "logprobs": []} for p in pieces),
        {"type": "response.output_text.done", **at, "text": content["text"], "logprobs": []},
        {"type": "response.content_part.done", **at, "part": content},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def call_events(index: int, item: dict[str, Any], *pieces: str) -> list[dict[str, Any]]:
    """`response.function_call_arguments.delta`s between the item's added and done events."""
    assert "".join(pieces) == item["arguments"]
    at = {"item_id": item["id"], "output_index": index}
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "arguments": ""},
        },
        *({"type": "response.function_call_arguments.delta", **at, "delta": p} for p in pieces),
        {"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


def sse(whole: dict[str, Any], *items: list[dict[str, Any]], end: str = "response.completed") -> list[bytes]:
    """A whole streamed response: `response.created`, `response.in_progress`, each item's
    events, then `end` carrying the final `Response`; as server-sent events, numbered."""
    opening = {**whole, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    events = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
        *(event for item in items for event in item),
    ]
    if end:
        events.append({"type": end, "response": whole})
    return encode(*events)


def encode(*events: dict[str, Any]) -> list[bytes]:
    return [
        f"event: {event['type']}\ndata: ".encode() + orjson.dumps({**event, "sequence_number": n}) + b"\n\n"
        for n, event in enumerate(events)
    ]


USAGE = {
    "input_tokens": 1117,
    "input_tokens_details": {"cached_tokens": 1024},
    "output_tokens": 46,
    "output_tokens_details": {"reasoning_tokens": 32},
    "total_tokens": 1163,
}
REASONING = reasoning(
    "**Answering a simple question**\n\nThe user asks for France's capital.", "**Done**\n\nParis."
)
MESSAGE = message("The capital of France is Paris.")
ANSWER = response([REASONING, MESSAGE], USAGE)
ANSWER_STREAM = sse(
    ANSWER,
    reasoning_events(
        0,
        REASONING,
        ["**Answering a simple question**\n\n", "The user asks", " for France's capital."],
        ["**Done**\n\n", "Paris."],
    ),
    message_events(1, MESSAGE, "The capital", " of France is", " Paris."),
)
ANSWER_EVENTS = text_answer(
    f"openai-responses/{MODEL}",
    Usage(input=1117, cached_input=1024, output=46, reasoning=32),
    ReasoningDelta("**Answering a simple question**\n\n"),
    ReasoningDelta("The user asks"),
    ReasoningDelta(" for France's capital."),
    ReasoningDelta("\n\n**Done**\n\n"),
    ReasoningDelta("Paris."),
)

# Two parallel calls after a reasoning item: output indexes 1 and 2, call indexes 0 and 1.
TOOL_USAGE = {
    "input_tokens": 74,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 83,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 157,
}
TOOL_REASONING = reasoning("**Checking the weather**\n\nI will call get_weather for both cities.")
PARIS = function_call(
    "call_DdmO9pD3xa9XTPNJ32zg2hcA",
    "get_weather",
    '{"location":"Paris, France"}',
    "fc_67ca09c6bedc8190a7abfec07b1a1332",
)
ROME = function_call(
    "call_x6d4pVqUX8bZb5H2fKfnWwL1",
    "get_weather",
    '{"location":"Rome, Italy"}',
    "fc_67ca09c6bedc8190a7abfec07b1a1333",
)
TOOL_ANSWER = response([TOOL_REASONING, PARIS, ROME], TOOL_USAGE)
TOOL_STREAM = sse(
    TOOL_ANSWER,
    reasoning_events(
        0, TOOL_REASONING, ["**Checking the weather**\n\n", "I will call get_weather for both cities."]
    ),
    call_events(1, PARIS, '{"', "location", '":"', "Paris", ", France", '"}'),
    call_events(2, ROME, '{"location":', '"Rome, Italy"}'),
)

# Cut off by `max_output_tokens`: text so far, `status: incomplete`.
SHORT_USAGE = {
    "input_tokens": 30,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 16,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 46,
}
SHORT_MESSAGE = {**message("The capital of"), "status": "incomplete"}
SHORT_ANSWER = response([SHORT_MESSAGE], SHORT_USAGE, status="incomplete", incomplete="max_output_tokens")
SHORT_STREAM = sse(
    SHORT_ANSWER, message_events(0, SHORT_MESSAGE, "The capital", " of"), end="response.incomplete"
)


# --- helpers -------------------------------------------------------------------------------------


async def run(provider: OpenAIResponsesProvider, stream: bool = True, **fields: Any) -> list[Event]:
    messages = fields.pop("messages", MESSAGES)
    call = ProviderCall("o4-mini", messages, fields.pop("params", {}), stream=stream, **fields)
    return [event async for event in provider.stream(call)]


# --- the provider's case table for the contract --------------------------------------------------

ERROR_TABLE: list[tuple[int, dict[str, Any], str, bool]] = [
    (
        400,
        openai_error(
            "Unsupported parameter: 'temperature' is not supported with this model.",
            "invalid_request_error",
            "unsupported_parameter",
            "temperature",
        ),
        "upstream_rejected",
        False,
    ),
    CHAT_ERRORS[1],  # the same 401 as chat completions
    (
        404,
        openai_error(
            "The model `o4-mini` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        ),
        "upstream_not_found",
        False,
    ),
    (
        429,
        openai_error(
            "Rate limit reached for o4-mini in organization org-x on tokens per min (TPM): "
            "Limit 200000, Used 199000, Requested 3000.",
            "tokens",
            "rate_limit_exceeded",
        ),
        "upstream_rate_limited",
        True,
    ),
    CHAT_ERRORS[4],  # the same 500
]

GARBAGE = [
    (b'{"object": "response", "model": "o3"}', "without an output list"),
    (b'{"object": "response", "output": "Paris"}', "without an output list"),
    (b'{"object": "response", "output": ["Paris"]}', "cannot read"),
    (b"<html><body>Welcome to nginx!</body></html>", "not JSON"),
]
GARBAGE_IDS = ["no-output", "output-string", "item-string", "html"]

CASE = ProviderCase(
    name="openai-responses",
    cls=OpenAIResponsesProvider,
    key="sk-test",
    run=run,
    text_stream=ANSWER_STREAM,
    text_events=ANSWER_EVENTS,
    answers=(
        Answer("text-and-reasoning", ANSWER_STREAM, ANSWER),
        Answer("tool-calls", TOOL_STREAM, TOOL_ANSWER),
        Answer("incomplete", SHORT_STREAM, SHORT_ANSWER),
    ),
    errors=tuple(
        ErrorReply(str(status), status, body, code, retryable, (body["error"]["message"],))
        for status, body, code, retryable in ERROR_TABLE
    ),
    garbage=tuple(
        Garbage(id_, body, "application/json", says)
        for id_, (body, says) in zip(GARBAGE_IDS, GARBAGE, strict=True)
    ),
    cuts=(Cut("no-event", 0, 0), Cut("mid-reasoning", 7, 4)),
    paths=("/v1/responses", "/v1/responses"),
    headers={"authorization": "Bearer sk-test", "content-type": "application/json"},
    prefix="/v1",
)
