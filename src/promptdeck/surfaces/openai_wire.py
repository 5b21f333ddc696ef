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
from fastapi.responses import StreamingResponse

from promptdeck.domain.errors import HTTP_STATUS, NotFound, PromptdeckError, ValidationFailed
from promptdeck.domain.events import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Failed,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from promptdeck.domain.inputs import check_flat_metadata
from promptdeck.domain.runs import RunRecord
from promptdeck.engine.invoke import Invocation, InvokeRequest
from promptdeck.surfaces.callers import services
from promptdeck.surfaces.http import dumps, unless_disconnected, with_keepalive

FINISH_REASONS = {STOP: "stop", LENGTH: "length", TOOL_CALLS: "tool_calls", CONTENT_FILTER: "content_filter"}
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# promptdeck's stable error code -> (OpenAI error type, OpenAI error code)
ERROR_KINDS: dict[str, tuple[str, str]] = {
    "validation_error": ("invalid_request_error", "invalid_value"),
    "bad_request": ("invalid_request_error", "invalid_request"),
    "unauthorized": ("invalid_request_error", "invalid_api_key"),
    "forbidden": ("permission_error", "insufficient_scope"),
    "not_found": ("invalid_request_error", "not_found"),
    "method_not_allowed": ("invalid_request_error", "method_not_allowed"),
    "conflict": ("invalid_request_error", "conflict"),
    "payload_too_large": ("invalid_request_error", "request_too_large"),
    "too_many_requests": ("requests", "rate_limit_exceeded"),
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


def provider_failure(record: RunRecord, failure: PromptdeckError) -> Response:
    """A run that failed at the provider before any answer (the non-streaming path): 502, or 429
    with Retry-After when the upstream said it was rate limited."""
    error = WireError(failure.message, code=failure.code, wire_code=record.error_code or failure.code)
    error.retry_after = failure.retry_after
    response = render_error(error)
    response.headers["x-request-id"] = record.request_id
    return response


def completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id.removeprefix("req_")


def system_fingerprint(record: RunRecord) -> str:
    """Which configuration answered: the deployment's variant and version."""
    return f"promptdeck:{record.deployment}@{record.variant}:v{record.version_number}"


def usage_object(record: RunRecord) -> dict[str, Any]:
    prompt, completion = record.input_tokens, record.output_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": record.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": record.reasoning_tokens},
        "cache_creation_input_tokens": record.cache_write_input_tokens,
        "cache_read_input_tokens": record.cached_input_tokens,
    }


def tool_call_object(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {"name": call.get("name") or "", "arguments": call.get("arguments") or ""},
    }


def completion_response(record: RunRecord) -> Response:
    """A finished run as OpenAI's `chat.completion`."""
    message: dict[str, Any] = {"role": "assistant", "content": record.output, "refusal": None}
    if record.tool_calls:
        message["tool_calls"] = [tool_call_object(call) for call in record.tool_calls]
        message["content"] = record.output or None
    if record.reasoning:
        message["reasoning_content"] = record.reasoning
    body = {
        "id": completion_id(record.request_id),
        "object": "chat.completion",
        "created": int(record.created_at.timestamp()),
        "model": record.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH_REASONS.get(record.stop_reason or STOP, "stop"),
                "logprobs": None,
            }
        ],
        "usage": usage_object(record),
        "system_fingerprint": system_fingerprint(record),
    }
    return Response(dumps(body), media_type="application/json", headers={"x-request-id": record.request_id})


async def chunk_stream(invocation: Invocation, keepalive: float, include_usage: bool) -> AsyncIterator[bytes]:
    """A run's events as `chat.completion.chunk` SSE: the role in the first delta, then text,
    reasoning and tool-call deltas, a last chunk with `finish_reason`, the usage chunk when
    asked for, `data: [DONE]`. Keep-alive comments fill silences."""
    record = invocation.record
    created = int(record.created_at.timestamp())
    ident = completion_id(record.request_id)
    fingerprint = system_fingerprint(record)
    opened = False
    usage: Usage | None = None

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": record.model,
            "system_fingerprint": fingerprint,
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

    async for event in with_keepalive(invocation.events(), keepalive):
        if event is None:
            yield KEEPALIVE
        elif isinstance(event, TextDelta):
            yield delta({"content": event.text})
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
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Finished):
            yield delta({}, FINISH_REASONS.get(event.stop_reason, "stop"))
            if include_usage and usage is not None:
                yield chunk([], usage=usage_object(record))
            yield DONE
        elif isinstance(event, Failed):
            error = WireError(event.message, code="provider_error", wire_code=event.code)
            yield b"data: " + dumps({"error": error_object(error)}) + b"\n\n"
        elif isinstance(event, Started):
            pass  # the model it names is `record.model` from here on


def stream_response(invocation: Invocation, keepalive: float, include_usage: bool) -> Response:
    headers = {**SSE_HEADERS, "x-request-id": invocation.record.request_id}
    return StreamingResponse(
        chunk_stream(invocation, keepalive, include_usage), media_type="text/event-stream", headers=headers
    )


# ── requests ─────────────────────────────────────────────────────────────────


class Problems:
    """Every problem of a request body, each with the field it is about; raised as one error
    whose `param` is the first field (OpenAI names one) and whose message names them all."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, param: str, message: str) -> None:
        self.found.append((param, f"{param}: {message}"))

    def check(self) -> None:
        if self.found:
            messages = [message for _, message in self.found]
            raise WireError(
                "invalid request: " + "; ".join(messages), param=self.found[0][0], details=messages
            )


def typed(
    body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str, problems: Problems
) -> Any:
    """`body[name]` when it is of `kind` (null counts as absent), else None and a problem."""
    value = body.get(name)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        problems.add(name, f"expected {what}; got {json_type(value)}")
        return None
    return value


def json_type(value: Any) -> str:
    """What a JSON value is, in JSON's words (for messages)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def common_fields(body: dict[str, Any], problems: Problems) -> dict[str, Any]:
    """What both OpenAI-shaped dialects take alike: `variables` (the template inputs), `stream`,
    `stream_options.include_usage`, `user` (the end user) and flat `metadata`."""
    variables = typed(body, "variables", dict, "an object of template variables", problems)
    stream = typed(body, "stream", bool, "true or false", problems)
    options = typed(body, "stream_options", dict, "an object", problems) or {}
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        problems.add("stream_options.include_usage", f"expected true or false; got {include_usage!r}")
    user = typed(body, "user", str, "a string", problems)
    try:
        metadata = check_flat_metadata(body.get("metadata"))
    except ValidationFailed as exc:
        problems.add("metadata", exc.message)
        metadata = {}
    return {
        "inputs": variables or {},
        "stream": bool(stream),
        "include_usage": bool(include_usage),
        "end_user": user,
        "metadata": metadata or None,
    }


def located(error: PromptdeckError, deployment_param: str | None) -> PromptdeckError:
    """An error the engine raised, with the request field it is about."""
    if isinstance(error, NotFound):
        return WireError.of(error, param=deployment_param, wire_code="model_not_found")
    if not isinstance(error, ValidationFailed):
        return error
    details = error.details
    if isinstance(details, dict) and ("missing" in details or "wrong_type" in details):
        wired = WireError.of(error, param="variables")
        wired.message = f"variables: {error.message}"
        return wired
    if error.message.startswith("model "):
        return WireError.of(error, param="model")
    if isinstance(details, list) and details and str(details[0]).startswith("params."):
        return WireError.of(error, param=str(details[0]).removeprefix("params.").split(":")[0])
    return WireError.of(error)


async def answer(
    request: Request, invoke: InvokeRequest, *, include_usage: bool, deployment_param: str | None
) -> Response:
    """Start the run and answer it: a `chat.completion`, or chunks when streaming."""
    app = services(request)
    try:
        invocation = await app.engine.start(invoke)
    except PromptdeckError as exc:
        raise located(exc, deployment_param) from exc
    if invoke.stream:
        return stream_response(invocation, app.settings.keepalive_seconds, include_usage)
    record = await unless_disconnected(request, invocation.complete())
    if record.error_code:
        return provider_failure(record, invocation.error())
    return completion_response(record)
