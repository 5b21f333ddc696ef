"""OpenAI's wire shapes, shared by the dialects that answer in them (Traceport, OpenAI chat
completions): a finished run as a `chat.completion`, a run's events as `chat.completion.chunk`
server-sent events, and errors as `{"error": {"message", "type", "param", "code"}}`.

Choices made where OpenAI is silent or promptdeck differs (docs/dialects.md says the same):

* `id` is `chatcmpl-` + the hex of the run's request id; the full request id (`req_…`, the
  key of `/api/runs/{request_id}`) is also sent as the `x-request-id` header, which the
  `openai` client exposes as `completion._request_id`.
* `model` is the model that answered, as `provider/model`.
* Reasoning goes out DeepSeek-style: `message.reasoning_content` and `delta.reasoning_content`.
* A failure after the stream opened is one `data: {"error": {...}}` event, then the stream
  closes without `data: [DONE]` (the `openai` client raises `APIError` on it).
* 5xx answers carry `x-should-retry: false`: the engine already retried the provider, and a
  client retry would run (and bill) the prompt again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response

from promptdeck.domain.answers import Answer, ResolvedRun, ToolCall
from promptdeck.domain.errors import HTTP_STATUS, NotFound, PromptdeckError
from promptdeck.domain.events import (
    CONTENT_FILTER,
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
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.surfaces.access_log import log_run
from promptdeck.surfaces.callers import services
from promptdeck.surfaces.http import dumps, text_template, unless_disconnected
from promptdeck.surfaces.run_response import Encoder, RunResponse

FINISH_REASONS = {STOP: "stop", LENGTH: "length", TOOL_CALLS: "tool_calls", CONTENT_FILTER: "content_filter"}
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# promptdeck's stable error code -> (OpenAI error type, OpenAI error code)
ERROR_KINDS: dict[str, tuple[str, str]] = {
    "validation_error": ("invalid_request_error", "invalid_value"),
    "bad_request": ("invalid_request_error", "invalid_request"),
    "context_length_exceeded": ("invalid_request_error", "context_length_exceeded"),
    "unauthorized": ("invalid_request_error", "invalid_api_key"),
    "forbidden": ("permission_error", "insufficient_scope"),
    "not_found": ("invalid_request_error", "not_found"),
    "method_not_allowed": ("invalid_request_error", "method_not_allowed"),
    "conflict": ("invalid_request_error", "conflict"),
    "payload_too_large": ("invalid_request_error", "request_too_large"),
    "too_many_requests": ("requests", "rate_limit_exceeded"),
    "budget_exceeded": ("insufficient_quota", "budget_exceeded"),  # OpenAI's type for a spent quota
    "quota_store_unavailable": ("server_error", "quota_store_unavailable"),
    "provider_error": ("server_error", "provider_error"),
    "internal_server_error": ("server_error", "internal_error"),
}
# Statuses that differ from promptdeck's shared table: OpenAI answers a bad field with 400.
STATUS = {**HTTP_STATUS, "validation_error": 400}


class WireError(PromptdeckError):
    """An error with what OpenAI's shape adds: the offending request field (`param`) and, when
    it is more precise than the default for its code, OpenAI's own error code."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "validation_error",
        param: str | None = None,
        wire_code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.param = param
        self.wire_code = wire_code

    @classmethod
    def of(
        cls, error: PromptdeckError, *, param: str | None = None, wire_code: str | None = None
    ) -> WireError:
        return cls(error.message, code=error.code, param=param, wire_code=wire_code, details=error.details)


def error_object(error: PromptdeckError) -> dict[str, Any]:
    kind, code = ERROR_KINDS.get(error.code, ("server_error", error.code))
    if isinstance(error, WireError):
        return {"message": error.message, "type": kind, "param": error.param, "code": error.wire_code or code}
    return {"message": error.message, "type": kind, "param": None, "code": code}


def render_error(error: PromptdeckError, request: Request | None = None) -> Response:
    status = STATUS.get(error.code, 500)
    headers = error.headers()
    if status >= 500:
        headers["x-should-retry"] = "false"
    return Response(dumps({"error": error_object(error)}), status, headers, media_type="application/json")


def provider_failure(run: ResolvedRun, failed: Failed) -> Response:
    """A run that failed at the provider before any answer (the non-streaming path): 502, or 429
    with Retry-After when the upstream said it was rate limited."""
    failure = caller_error(failed)
    error = WireError(failure.message, code=failure.code, wire_code=failed.code)
    error.retry_after = failure.retry_after
    response = render_error(error)
    response.headers["x-request-id"] = run.request_id
    return response


def completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.removeprefix("req_")


def system_fingerprint(run: ResolvedRun) -> str:
    """Which configuration answered: the deployment's variant and the version that answered."""
    return f"promptdeck:{run.deployment}@{run.variant}:v{run.version_number}"


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
        "cache_creation_input_tokens": usage.cache_write_input,
        "cache_read_input_tokens": usage.cached_input,
    }


def tool_call_object(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id or "",
        "type": "function",
        "function": {"name": call.name or "", "arguments": call.arguments},
    }


def completion_body(answer: Answer) -> dict[str, Any]:
    """A finished run as OpenAI's `chat.completion`."""
    run = answer.run
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [tool_call_object(call) for call in answer.tool_calls]
        message["content"] = answer.text or None
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    reason = answer.finished.stop_reason if answer.finished else STOP
    return {
        "id": completion_id(run.request_id),
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": run.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH_REASONS.get(reason, "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage_object(answer.usage),
        "system_fingerprint": system_fingerprint(run),
    }


def chunk_encoder(include_usage: bool) -> Encoder:
    """A run's events as `chat.completion.chunk` SSE: the role in the first delta, then text,
    reasoning and tool-call deltas, a last chunk with `finish_reason`, the usage chunk when
    asked for, `data: [DONE]`. Keep-alive comments fill silences."""

    async def encode(run: ResolvedRun, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
        created = int(run.created_at.timestamp())
        ident = completion_id(run.request_id)
        opened = False

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            body = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": run.model,
                "system_fingerprint": system_fingerprint(run),
                "choices": choices,
                **extra,
            }
            if include_usage:
                body.setdefault("usage", None)
            return b"data: " + dumps(body) + b"\n\n"

        def delta(fields: dict[str, Any], finish_reason: str | None = None) -> bytes:
            nonlocal opened
            if not opened:
                fields = {"role": "assistant", "content": "", **fields}
                opened = True
            return chunk([{"index": 0, "delta": fields, "finish_reason": finish_reason, "logprobs": None}])

        def text_delta(text: str) -> bytes:
            return delta({"content": text})

        before_text, after_text = b"", b""
        async for event in events:
            if isinstance(event, Started):
                run = run.answered_by(event)  # the model and version that answer, from here on
                before_text = b""
            elif isinstance(event, TextDelta):
                if not opened:  # the first delta names the role too
                    yield text_delta(event.text)
                    continue
                if not before_text:  # most of a stream's events: made from a template
                    before_text, after_text = text_template(text_delta)
                yield before_text + dumps(event.text) + after_text
            elif isinstance(event, ReasoningDelta):
                yield delta({"reasoning_content": event.text})
            elif isinstance(event, ToolCallDelta):
                call: dict[str, Any] = {"index": event.index}
                if event.id is not None:
                    call["id"] = event.id
                    call["type"] = "function"
                function: dict[str, str] = {"arguments": event.arguments_delta}
                if event.name is not None:
                    function["name"] = event.name
                call["function"] = function
                yield delta({"tool_calls": [call]})
            elif isinstance(event, Finished):
                yield delta({}, FINISH_REASONS.get(event.stop_reason, "stop"))
                if include_usage:
                    yield chunk([], usage=usage_object(event.usage or Usage()))
                yield DONE
            elif isinstance(event, Failed):
                error = WireError(event.message, code=caller_error(event).code, wire_code=event.code)
                yield b"data: " + dumps({"error": error_object(error)}) + b"\n\n"

    return encode


# ── requests ─────────────────────────────────────────────────────────────────


# The field of an engine error (its `loc`, in `InvokeRequest`'s terms) as these dialects name it.
PARAMS = {"inputs": "variables", "model": "model", "messages": "messages"}


def located(error: PromptdeckError, deployment_param: str | None) -> PromptdeckError:
    """An error the engine raised, with the request field it is about as `param`: an unknown
    deployment or variant is `deployment_param`'s (the dialect's own field, or none when the
    path names it); an error with a `loc` is that field's, its message prefixed with it."""
    if isinstance(error, NotFound):
        return WireError.of(error, param=deployment_param, wire_code="model_not_found")
    param = PARAMS.get(str(error.loc[0])) if error.loc else None
    if param is None:
        return error
    wired = WireError.of(error, param=param)
    if not error.message.startswith(param):
        wired.message = f"{param}: {error.message}"
    return wired


async def answer(
    request: Request, invoke: InvokeRequest, *, include_usage: bool, deployment_param: str | None
) -> Response:
    """Start the run and answer it: a `chat.completion`, or chunks when streaming."""
    app = services(request)
    try:
        invocation = await app.engine.start(invoke)
    except PromptdeckError as exc:
        raise located(exc, deployment_param) from exc
    log_run(request, invocation.run)
    if invoke.stream:
        headers = {**SSE_HEADERS, "x-request-id": invocation.run.request_id}
        encode = chunk_encoder(include_usage)
        return RunResponse(
            invocation, encode, app.settings.keepalive_seconds, "text/event-stream", headers, ping=KEEPALIVE
        )
    async with invocation:
        done = await unless_disconnected(request, invocation.answer())
    if done.failed:
        return provider_failure(done.run, done.failed)
    return Response(
        dumps(completion_body(done)),
        media_type="application/json",
        headers={"x-request-id": done.run.request_id},
    )
