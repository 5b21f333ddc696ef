"""The Fetch Hive dialect (WIRE.md §1): `/v1/prompt/invoke`, `/v1/invoke`, and run look-ups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from promptdeck.domain.errors import (
    HTTP_STATUS,
    PromptdeckError,
    ValidationFailed,
)
from promptdeck.domain.events import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
)
from promptdeck.domain.inputs import check_flat_metadata
from promptdeck.domain.runs import RunRecord
from promptdeck.engine.invoke import Invocation, InvokeRequest
from promptdeck.surfaces.callers import bearer_caller, services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.http import (
    dialect_route,
    dumps,
    json_body,
    json_object,
    unless_disconnected,
    with_keepalive,
)

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


def parse_request(body: Any) -> dict[str, Any]:
    """Check the invoke body, reporting every problem at once."""
    body = json_object(body)
    problems = []
    deployment = body.get("deployment")
    if not isinstance(deployment, str) or not deployment:
        problems.append("deployment: required, a non-empty string")
    for name, kind in (("variant", str), ("user", str), ("inputs", dict), ("streaming", bool)):
        if body.get(name) is not None and not isinstance(body[name], kind):
            problems.append(f"{name}: expected {'an object' if kind is dict else kind.__name__}")
    try:
        metadata = check_flat_metadata(body.get("metadata"))
    except ValidationFailed as exc:
        problems.append(exc.message)
        metadata = {}
    if problems:
        raise ValidationFailed("invalid request: " + "; ".join(problems), details=problems)
    return {
        "deployment": deployment,
        "variant": body.get("variant") or None,
        "inputs": body.get("inputs") or {},
        "stream": bool(body.get("streaming")),
        "end_user": body.get("user"),
        "metadata": metadata or None,
    }


def usage_body(run: RunRecord | dict[str, Any]) -> dict[str, Any]:
    """Fetch Hive's usage object, from a live record or a stored run."""
    tokens = run if isinstance(run, dict) else run.as_row()
    prompt, completion = int(tokens["input_tokens"]), int(tokens["output_tokens"])
    return {
        "prompt_tokens": {"total_tokens": prompt, "cached_tokens": tokens["cached_input_tokens"]},
        "completion_tokens": {"total_tokens": completion, "reasoning_tokens": tokens["reasoning_tokens"]},
        "total_tokens": prompt + completion,
    }


INVOKE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["deployment"],
                    "properties": {
                        "deployment": {"type": "string"},
                        "variant": {"type": "string"},
                        "inputs": {"type": "object"},
                        "streaming": {"type": "boolean"},
                        "user": {"type": "string"},
                        "metadata": {
                            "type": "object",
                            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                        },
                    },
                }
            }
        },
    }
}


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
    parsed = parse_request(await json_body(request))
    app = services(request)
    invocation = await app.engine.start(InvokeRequest(caller=caller, dialect="fetchhive", **parsed))
    if parsed["stream"]:
        events = stream_events(invocation, app.settings.keepalive_seconds)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    record = await unless_disconnected(request, invocation.complete())
    if record.error_code:
        return render_error(invocation.error(), request, record.request_id)
    return Response(
        dumps(
            {
                "request_id": record.request_id,
                "model": record.model,
                "duration": round(record.duration_ms / 1000, 3),
                "reasoning": record.reasoning,
                "response": record.output,
                "usage": usage_body(record),
                "stop_reason": STOP_REASONS.get(record.stop_reason or STOP, record.stop_reason),
            }
        ),
        media_type="application/json",
    )


async def stream_events(invocation: Invocation, keepalive: float) -> AsyncIterator[bytes]:
    record = invocation.record
    head = b'data: {"request_id":' + dumps(record.request_id)
    async for event in with_keepalive(invocation.events(), keepalive):
        if event is None:
            yield PING
        elif isinstance(event, TextDelta | ReasoningDelta):
            kind = b"response" if isinstance(event, TextDelta) else b"reasoning"
            yield (
                head
                + b',"type":"'
                + kind
                + b'","model":'
                + dumps(record.model)
                + b',"response":'
                + dumps(event.text)
                + b"}\n\n"
            )
        elif isinstance(event, Finished):
            usage = {"duration": round(invocation.elapsed_ms() / 1000, 3), **usage_body(record)}
            reason = STOP_REASONS.get(event.stop_reason, event.stop_reason)
            yield (
                head
                + b',"type":"usage","usage":'
                + dumps(usage)
                + b',"stop_reason":'
                + dumps(reason)
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
                + b',"error_code":"provider_error"}\n\n'
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
        "usage": usage_body(run),
        "duration": round(run["duration_ms"] / 1000, 3),
        "stop_reason": STOP_REASONS.get(run["stop_reason"] or "", run["stop_reason"]),
        "error": run["error_message"],
        "error_code": run["error_code"],
        "user": run["end_user"],
        "metadata": run["metadata"] or {},
        "created_at": run["created_at"].isoformat(),
    }
