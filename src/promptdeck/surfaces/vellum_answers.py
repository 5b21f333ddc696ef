"""Vellum's answers (WIRE.md §2): a whole run as execute-prompt's JSON, and a run's events as
execute-prompt-stream's NDJSON. Pure functions of the run and its events (`domain/answers.py`).

A reasoning model's thoughts are a THINKING output; tool calls are FUNCTION_CALL outputs, sent
whole (arguments as an object) once the answer is complete.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from promptdeck.domain.answers import Answer, AnswerFold, ResolvedRun, ToolCall
from promptdeck.domain.events import (
    LENGTH,
    STOP,
    TOOL_CALLS,
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.engine.invocation import caller_error
from promptdeck.surfaces.http import dumps, text_template
from promptdeck.surfaces.run_response import Encoder

FINISH_REASONS = {STOP: "STOP", LENGTH: "LENGTH", TOOL_CALLS: "STOP"}  # anything else: UNKNOWN
# What each answer may carry in `meta` (the client's types for each event).
INITIATED_META = frozenset({"model_name", "latency", "deployment_release_tag", "prompt_version_id"})
FULFILLED_META = frozenset({"latency", "finish_reason", "usage", "cost"})
REJECTED_META = frozenset({"latency", "finish_reason"})
KEEPALIVE = b"\n"


def as_uuid(hex_id: str) -> str:
    return str(uuid.UUID(hex_id))


def nanos(milliseconds: float) -> int:
    return round(milliseconds * 1_000_000)


def function_call(call: ToolCall) -> dict[str, Any]:
    """A FUNCTION_CALL output; arguments that are not a JSON object are wrapped so they still are."""
    text = call.arguments
    try:
        arguments = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        arguments = {"raw_arguments": text}
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    value = {"name": call.name or "", "arguments": arguments, "id": call.id}
    return {"type": "FUNCTION_CALL", "value": value}


def string(text: str) -> dict[str, Any]:
    return {"type": "STRING", "value": text}


def thinking(text: str) -> dict[str, Any]:
    return {"type": "THINKING", "value": string(text)}


def rejection(failed: Failed) -> dict[str, Any]:
    """A caller's own fault (a prompt over the model's context) is Vellum's INVALID_REQUEST."""
    code = "INVALID_REQUEST" if caller_error(failed).code == "context_length_exceeded" else "PROVIDER_ERROR"
    return {"code": code, "message": failed.message, "raw_data": {"promptdeck_code": failed.code}}


def meta(
    run: ResolvedRun,
    asked: frozenset[str],
    release_tag: str,
    *,
    moment: Started | Finished | Failed | None,
    output_chars: int,
    duration_ms: float,
    allowed: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The `meta` fields the caller asked for (and this answer may carry), as of `moment`: the
    answer's start, its end, or neither (a run that failed before it started)."""
    wanted = asked if allowed is None else asked & allowed
    finished = moment if isinstance(moment, Finished) else None
    out: dict[str, Any] = {}
    if "model_name" in wanted:
        out["model_name"] = run.model
    if "latency" in wanted:
        out["latency"] = nanos(duration_ms)
    if "deployment_release_tag" in wanted:
        out["deployment_release_tag"] = release_tag
    if "prompt_version_id" in wanted and run.version_id:
        out["prompt_version_id"] = as_uuid(run.version_id)
    if "finish_reason" in wanted:
        out["finish_reason"] = FINISH_REASONS.get(finished.stop_reason if finished else "", "UNKNOWN")
    if "usage" in wanted:
        usage = (finished.usage if finished else None) or Usage()
        out["usage"] = {
            "input_token_count": usage.input,
            "output_token_count": usage.output,
            "input_char_count": run.input_chars,
            "output_char_count": output_chars,
            "compute_nanos": nanos(duration_ms),
            "cache_creation_input_tokens": usage.cache_write_input,
            "cache_read_input_tokens": usage.cached_input,
        }
    if "cost" in wanted:
        cost = finished.cost if finished else None
        out["cost"] = {"value": cost, "unit": "USD"} if cost is not None else None
    return out


def execution_body(
    answer: Answer, asked: frozenset[str], release_tag: str, expand_raw: tuple[str, ...]
) -> dict[str, Any]:
    """A whole run as execute-prompt's answer: FULFILLED with its outputs, or REJECTED."""
    body: dict[str, Any] = {"execution_id": as_uuid(answer.run.id)}
    if answer.failed:
        body["state"] = "REJECTED"
        body["error"] = rejection(answer.failed)
    else:
        outputs = [thinking(answer.reasoning)] if answer.reasoning else []
        if answer.text or not answer.tool_calls:
            outputs.append(string(answer.text))
        outputs += [function_call(call) for call in answer.tool_calls]
        body["state"] = "FULFILLED"
        body["outputs"] = outputs
    if asked:
        ended = answer.finished or answer.failed
        body["meta"] = meta(
            answer.run,
            asked,
            release_tag,
            moment=ended,
            output_chars=len(answer.text),
            duration_ms=answer.duration_ms,
        )
    raw = (answer.finished.raw if answer.finished else None) or {}
    body["raw"] = {key: raw[key] for key in expand_raw if key in raw}
    return body


def _line(value: dict[str, Any]) -> bytes:
    return dumps(value) + b"\n"


def stream_encoder(asked: frozenset[str], release_tag: str) -> Encoder:
    """INITIATED, STREAMING deltas, then FULFILLED or REJECTED; an empty line while quiet."""

    async def encode(run: ResolvedRun, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
        base = {"execution_id": as_uuid(run.id)}
        order: list[str] = []  # output slots in order of first appearance: "text", "thinking", "tool:<n>"
        fold = AnswerFold(run)

        def slot(key: str) -> int:
            if key not in order:
                order.append(key)
            return order.index(key)

        def outputs() -> list[tuple[int, dict[str, Any]]]:
            if "text" not in order and not fold.tools:
                slot("text")
            found: list[tuple[int, dict[str, Any]]] = []
            for index, key in enumerate(order):
                if key == "text":
                    found.append((index, string("".join(fold.text))))
                elif key == "thinking":
                    found.append((index, thinking("".join(fold.reasoning))))
                else:
                    found.append((index, function_call(fold.tool_call(int(key[5:])))))
            return found

        def with_meta(
            event: dict[str, Any], allowed: frozenset[str], moment: Started | Finished | Failed | None
        ) -> dict[str, Any]:
            duration = (
                moment.elapsed_ms if isinstance(moment, Started) else moment and moment.duration_ms
            ) or 0.0
            chars = sum(len(part) for part in fold.text)
            found = meta(
                run,
                asked,
                release_tag,
                moment=moment,
                output_chars=chars,
                duration_ms=duration,
                allowed=allowed,
            )
            return {**event, "meta": found} if found else event

        def streamed_text(text: str) -> bytes:
            return _line({"state": "STREAMING", **base, "output": string(text), "output_index": slot("text")})

        before_text, after_text = b"", b""  # a text delta's template (surfaces/http.py)
        initiated = False
        async for event in events:
            fold.add(event)
            if isinstance(event, Started):
                run = run.answered_by(event)
            if not initiated:
                initiated = True
                first = event if isinstance(event, Started | Failed) else None
                yield _line(with_meta({"state": "INITIATED", **base}, INITIATED_META, first))
            if isinstance(event, TextDelta):
                if not before_text:  # its output slot, once given, stays the same
                    before_text, after_text = text_template(streamed_text)
                yield before_text + dumps(event.text) + after_text
            elif isinstance(event, ReasoningDelta):
                output = thinking(event.text)
                index = slot("thinking")
                yield _line({"state": "STREAMING", **base, "output": output, "output_index": index})
            elif isinstance(event, ToolCallDelta):
                slot(f"tool:{event.index}")
            elif isinstance(event, Finished):
                final = outputs()
                for index, output in final:
                    if output["type"] == "FUNCTION_CALL":  # whole: its arguments must be an object
                        yield _line({"state": "STREAMING", **base, "output": output, "output_index": index})
                done = {"state": "FULFILLED", **base, "outputs": [output for _, output in final]}
                yield _line(with_meta(done, FULFILLED_META, event))
            elif isinstance(event, Failed):
                failed = {"state": "REJECTED", **base, "error": rejection(event)}
                yield _line(with_meta(failed, REJECTED_META, event))

    return encode
