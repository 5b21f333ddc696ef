"""Each dialect's encoders are pure functions of the run as resolved and its events: no server,
no database, no engine here. For one scripted answer (a fallback with its own version answers,
with reasoning, text, a tool call, usage and cost) each dialect's stream, folded back, says what
its whole answer says; failures are encoded in the dialect's own words (keep-alive bytes are the
response's: surfaces/run_response.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from promptdeck.domain.answers import AnswerFold, ResolvedRun
from promptdeck.domain.events import (
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.surfaces import fetchhive, openai_wire, playground, vellum_answers
from promptdeck.surfaces.http import TEXT_MARK
from promptdeck.surfaces.run_response import Encoder

RUN = ResolvedRun(
    id="0190aa00000000000000000000000001",
    request_id="req_0190aa00000000000000000000000001",
    created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    deployment="d",
    variant="default",
    model="openai/primary",
    provider="openai",
    version_id="0190aa000000000000000000000000a1",
    version_number=1,
    input_chars=40,
)
USAGE = Usage(input=11, cached_input=3, output=4, reasoning=2)
EVENTS: list[Event] = [
    Started(
        "openai/second",
        provider="openai",
        version_id="0190aa000000000000000000000000b2",
        version_number=2,
        elapsed_ms=5.0,
    ),
    ReasoningDelta("think"),
    TextDelta("Hello, "),
    TextDelta("world"),
    ToolCallDelta(0, "call_1", "lookup", '{"q": '),
    ToolCallDelta(0, None, None, '"fox"}'),
    USAGE,
    Finished("stop", usage=USAGE, cost=0.25, price_known=True, duration_ms=120.0, ttft_ms=9.0),
]
FAILED = Failed("upstream_rejected", "openai answered HTTP 400: bad", duration_ms=7.0)


async def played(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


async def encoded(encode: Encoder, events: list[Event]) -> list[bytes]:
    return [part async for part in encode(RUN, played(events))]


def whole_answer(events: list[Event]) -> Any:
    fold = AnswerFold(RUN)
    for event in events:
        fold.add(event)
    return fold.answer()


def sse_data(parts: list[bytes]) -> list[Any]:
    lines = b"".join(parts).split(b"\n\n")
    return [orjson.loads(line[6:]) for line in lines if line.startswith(b"data: {")]


async def test_fetch_hive_stream_agrees_with_its_whole_answer() -> None:
    parts = await encoded(fetchhive.stream_events, EVENTS)
    whole = fetchhive.answer_body(whole_answer(EVENTS))

    assert parts[-1] == fetchhive.DONE
    events = sse_data(parts)
    texts = [e for e in events if e["type"] == "response"]
    assert {e["model"] for e in events if "model" in e} == {"openai/second"}, "the model that answered"
    assert "".join(e["response"] for e in texts) == whole["response"] == "Hello, world"
    assert "".join(e["response"] for e in events if e["type"] == "reasoning") == whole["reasoning"]
    (usage,) = [e for e in events if e["type"] == "usage"]
    assert usage["usage"] == {"duration": 0.12, **whole["usage"]}
    assert usage["stop_reason"] == whole["stop_reason"] == "completed"
    assert whole["duration"] == 0.12 and whole["model"] == "openai/second"
    assert whole["usage"]["prompt_tokens"] == {"total_tokens": 11, "cached_tokens": 3}


async def test_openai_chunks_agree_with_the_chat_completion() -> None:
    parts = await encoded(openai_wire.chunk_encoder(include_usage=True), EVENTS)
    whole = openai_wire.completion_body(whole_answer(EVENTS))

    assert parts[-1] == openai_wire.DONE
    chunks = sse_data(parts)
    assert {(c["id"], c["model"], c["system_fingerprint"]) for c in chunks} == {
        (whole["id"], "openai/second", "promptdeck:d@default:v2")
    }
    assert whole["system_fingerprint"] == "promptdeck:d@default:v2", "the version that answered"
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    message = whole["choices"][0]["message"]
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == message["reasoning_content"]
    arguments = "".join(t["function"]["arguments"] for d in deltas for t in d.get("tool_calls", []))
    assert arguments == message["tool_calls"][0]["function"]["arguments"] == '{"q": "fox"}'
    assert chunks[-1]["usage"] == whole["usage"] and whole["usage"]["total_tokens"] == 15
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("model", ["openai/second", TEXT_MARK, f"a{TEXT_MARK}b"])
async def test_openai_text_chunks_are_the_bytes_of_their_whole_object(
    include_usage: bool, model: str
) -> None:
    """Text deltas are made from a pre-built template (surfaces/openai_wire.py); each is still
    exactly the bytes of its whole object, in its key order, whatever the model that answers
    calls itself, and after a fallback's `Started` names another."""
    events: list[Event] = [
        Started(model, provider="openai", version_number=2),
        TextDelta("He"),
        TextDelta('llo "\u0000" \u2028 😀'),
        Started("openai/third", provider="openai", version_number=3),
        TextDelta("again"),
        TextDelta("!"),
    ]
    parts = await encoded(openai_wire.chunk_encoder(include_usage=include_usage), events)

    expected = []
    for text, answering, version, first in (
        ("He", model, 2, True),
        ('llo "\u0000" \u2028 😀', model, 2, False),
        ("again", "openai/third", 3, False),
        ("!", "openai/third", 3, False),
    ):
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        body: dict[str, Any] = {
            "id": "chatcmpl-0190aa00000000000000000000000001",
            "object": "chat.completion.chunk",
            "created": int(RUN.created_at.timestamp()),
            "model": answering,
            "system_fingerprint": f"promptdeck:d@default:v{version}",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}],
        }
        if include_usage:
            body["usage"] = None
        expected.append(b"data: " + orjson.dumps(body) + b"\n\n")
    assert parts == expected


async def test_vellum_text_lines_are_the_bytes_of_their_whole_object() -> None:
    """Vellum's text deltas come from a template too; the text's output slot follows the
    reasoning's when the reasoning came first."""
    events: list[Event] = [
        Started("openai/second"),
        ReasoningDelta("hm"),
        TextDelta("Hi"),
        TextDelta(' "x" '),
    ]
    parts = await encoded(vellum_answers.stream_encoder(frozenset(), "LATEST"), events)

    execution = {"execution_id": "0190aa00-0000-0000-0000-000000000001"}
    assert parts[2:] == [
        orjson.dumps(
            {
                "state": "STREAMING",
                **execution,
                "output": {"type": "STRING", "value": text},
                "output_index": 1,
            }
        )
        + b"\n"
        for text in ("Hi", ' "x" ')
    ]


async def test_openai_stream_failure_is_one_error_event_without_done() -> None:
    parts = await encoded(openai_wire.chunk_encoder(include_usage=False), [FAILED])
    assert parts == [
        b"data: "
        + orjson.dumps(
            {
                "error": {
                    "message": FAILED.message,
                    "type": "server_error",
                    "param": None,
                    "code": "upstream_rejected",
                }
            }
        )
        + b"\n\n"
    ]


@pytest.mark.parametrize("asked", [frozenset(), frozenset(vellum_answers.INITIATED_META | {"usage", "cost"})])
async def test_vellum_stream_agrees_with_execute_prompt(asked: frozenset[str]) -> None:
    parts = await encoded(vellum_answers.stream_encoder(asked, "LATEST"), EVENTS)
    whole = vellum_answers.execution_body(whole_answer(EVENTS), asked, "LATEST", ())

    lines = [orjson.loads(part) for part in parts]
    assert lines[0]["state"] == "INITIATED"
    fulfilled = lines[-1]
    assert fulfilled["state"] == whole["state"] == "FULFILLED"
    assert fulfilled["execution_id"] == whole["execution_id"]
    assert sorted(map(orjson.dumps, fulfilled["outputs"])) == sorted(map(orjson.dumps, whole["outputs"]))
    (call,) = [o for o in whole["outputs"] if o["type"] == "FUNCTION_CALL"]
    assert call["value"] == {"name": "lookup", "arguments": {"q": "fox"}, "id": "call_1"}
    if asked:
        initiated = lines[0]["meta"]
        assert initiated["model_name"] == "openai/second"
        assert initiated["prompt_version_id"] == "0190aa00-0000-0000-0000-0000000000b2"
        assert initiated["latency"] == 5_000_000
        assert fulfilled["meta"]["usage"] == whole["meta"]["usage"]
        assert fulfilled["meta"]["cost"] == whole["meta"]["cost"] == {"value": 0.25, "unit": "USD"}
        assert whole["meta"]["usage"]["input_char_count"] == 40


async def test_vellum_rejection_carries_the_failure() -> None:
    parts = await encoded(vellum_answers.stream_encoder(frozenset({"latency"}), "LATEST"), [FAILED])
    lines = [orjson.loads(part) for part in parts]
    assert [line["state"] for line in lines] == ["INITIATED", "REJECTED"]
    assert lines[1]["error"] == vellum_answers.rejection(FAILED)
    assert lines[1]["meta"] == {"latency": 7_000_000}
    whole = vellum_answers.execution_body(whole_answer([FAILED]), frozenset(), "LATEST", ())
    assert (whole["state"], whole["error"]) == ("REJECTED", lines[1]["error"])


async def test_playground_stream_agrees_with_its_whole_answer() -> None:
    events = sse_data(await encoded(playground.stream_events, EVENTS))
    whole = playground.answer_body(whole_answer(EVENTS))

    assert events[0] == {
        "type": "started",
        "run_id": RUN.id,
        "request_id": RUN.request_id,
        "model": "openai/primary",
        "provider": "openai",
    }
    (finished,) = [e for e in events if e["type"] == "finished"]
    assert {k: v for k, v in finished.items() if k != "type"} == {
        k: whole[k] for k in finished if k != "type"
    }
    assert finished["model"] == "openai/second" and finished["cost"] == 0.25
    (usage,) = [e for e in events if e["type"] == "usage"]
    assert {k: v for k, v in usage.items() if k != "type"} == whole["usage"]
    assert whole["tool_calls"] == [{"id": "call_1", "name": "lookup", "arguments": '{"q": "fox"}'}]
