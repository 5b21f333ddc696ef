"""The Fetch Hive dialect (WIRE.md §1): `/v1/prompt/invoke`, `/v1/invoke`, and run look-ups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from promptdeck.domain.answers import Answer, ResolvedRun
from promptdeck.domain.errors import HTTP_STATUS, PromptdeckError
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
    Usage,
)
from promptdeck.engine.invocation import caller_error
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.surfaces.access_log import log_run
from promptdeck.surfaces.callers import bearer_caller, services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.fetchhive_requests import INVOKE_BODY, INVOKE_DOC, invoke_fields, refuse
from promptdeck.surfaces.http import (
    call_headers,
    dialect_route,
    dumps,
    parse_body,
    unless_disconnected,
)
from promptdeck.surfaces.run_response import RunResponse

STOP_REASONS = {
    STOP: "completed",
    LENGTH: "max_tokens",
    TOOL_CALLS: "tool_calls",
    CONTENT_FILTER: "content_filter",
}
DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def render_error(
    error: PromptdeckError, request: Request | None = None, request_id: str | None = None
) -> Response:
    body: dict[str, Any] = {"error": error.message, "message": error.message, "error_code": error.code}
    if request_id:
        body["request_id"] = request_id
    status = HTTP_STATUS.get(error.code, 500)
    return Response(dumps(body), status, error.headers(), media_type="application/json")


router = APIRouter(
    route_class=dialect_route(render_error), tags=["Fetch Hive"], responses=ERRORS["fetchhive"]
)


def usage_body(usage: Usage) -> dict[str, Any]:
    """Fetch Hive's usage object."""
    return {
        "prompt_tokens": {"total_tokens": usage.input, "cached_tokens": usage.cached_input},
        "completion_tokens": {"total_tokens": usage.output, "reasoning_tokens": usage.reasoning},
        "total_tokens": usage.total,
    }


def answer_body(answer: Answer) -> dict[str, Any]:
    """A whole run's answer, as `/v1/prompt/invoke` returns it."""
    return {
        "request_id": answer.run.request_id,
        "model": answer.run.model,
        "duration": round(answer.duration_ms / 1000, 3),
        "reasoning": answer.reasoning,
        "response": answer.text,
        "usage": usage_body(answer.usage),
        "stop_reason": stop_reason(answer.finished.stop_reason if answer.finished else STOP),
    }


def stop_reason(reason: str | None) -> str | None:
    return STOP_REASONS.get(reason or STOP, reason)


INVOKE_PATHS = ("/v1/prompt/invoke", "/v1/invoke")
# `streaming: true` answers Server-Sent Events; a failure after they began is an event, not a status.
INVOKE_RESPONSES = {**INVOKE_ERRORS["fetchhive"], 200: {"content": {"text/event-stream": {}}}}


@router.post(
    INVOKE_PATHS[0],
    openapi_extra=INVOKE_DOC,
    responses=INVOKE_RESPONSES,
    summary="Invoke a prompt deployment",
)
@router.post(
    INVOKE_PATHS[1],
    openapi_extra=INVOKE_DOC,
    responses=INVOKE_RESPONSES,
    summary="Invoke a prompt deployment (older clients)",
)
async def invoke(request: Request) -> Response:
    caller = await bearer_caller(request, "invoke")
    parsed = invoke_fields(await parse_body(request, INVOKE_BODY, refuse))
    headers = call_headers(request, parsed.pop("session_id"))
    app = services(request)
    invocation = await app.engine.start(
        InvokeRequest(caller=caller, dialect="fetchhive", **parsed, **headers)
    )
    log_run(request, invocation.run)
    if parsed["stream"]:
        keepalive = app.settings.keepalive_seconds
        return RunResponse(invocation, stream_events, keepalive, "text/event-stream", SSE_HEADERS, ping=PING)
    async with invocation:
        answer = await unless_disconnected(request, invocation.answer())
    if answer.failed:
        return render_error(caller_error(answer.failed), request, answer.run.request_id)
    return Response(dumps(answer_body(answer)), media_type="application/json")


async def stream_events(run: ResolvedRun, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """A run's events as Fetch Hive's server-sent events (WIRE.md §1); PING keeps it alive."""
    head = b'data: {"request_id":' + dumps(run.request_id)
    model = dumps(run.model)
    async for event in events:
        if isinstance(event, Started):
            run = run.answered_by(event)
            model = dumps(run.model)
        elif isinstance(event, TextDelta | ReasoningDelta):
            kind = b"response" if isinstance(event, TextDelta) else b"reasoning"
            yield (
                head
                + b',"type":"'
                + kind
                + b'","model":'
                + model
                + b',"response":'
                + dumps(event.text)
                + b"}\n\n"
            )
        elif isinstance(event, Finished):
            usage = {
                "duration": round((event.duration_ms or 0.0) / 1000, 3),
                **usage_body(event.usage or Usage()),
            }
            yield (
                head
                + b',"type":"usage","usage":'
                + dumps(usage)
                + b',"stop_reason":'
                + dumps(stop_reason(event.stop_reason))
                + b"}\n\n"
            )
        elif isinstance(event, Failed):
            message = dumps(event.message)
            yield (
                head
                + b',"type":"error","error":'
                + message
                + b',"message":'
                + message
                + b',"error_code":"'
                + caller_error(event).code.encode()
                + b'"}\n\n'
            )
    yield DONE


@router.get("/v1/public/requests/{request_id}", summary="Look a run up by its request id")
async def get_request(request_id: str, request: Request) -> Response:
    caller = await bearer_caller(request, "invoke")
    run = await services(request).find_run(caller.workspace_id, request_id)
    return Response(dumps(public_run(run)), media_type="application/json")


def public_run(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": run["request_id"],
        "status": run["status"],
        "deployment": run["deployment"],
        "variant": run["variant"],
        "version": run["version_number"],
        "model": run["model"],
        "inputs": run["inputs"],
        "response": run["output"],
        "reasoning": run["reasoning"],
        "usage": usage_body(
            Usage(
                input=run["input_tokens"],
                cached_input=run["cached_input_tokens"],
                output=run["output_tokens"],
                reasoning=run["reasoning_tokens"],
            )
        ),
        "duration": round(run["duration_ms"] / 1000, 3),
        "stop_reason": STOP_REASONS.get(run["stop_reason"] or "", run["stop_reason"]),
        "error": run["error_message"],
        "error_code": run["error_code"],
        "user": run["end_user"],
        "metadata": run["metadata"] or {},
        "created_at": run["created_at"].isoformat(),
    }
