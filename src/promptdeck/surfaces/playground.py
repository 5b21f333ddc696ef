"""The console's playground: `POST /api/playground/run` runs an unsaved draft, or a saved
version, through the real engine — retries, credentials, pricing, usage and the run log work
exactly as for a deployment, because it is the same pipeline.

Behind the admin API's gate (a change: it spends money), answered in its error shape. A
streamed answer is Server-Sent Events carrying one neutral JSON object per `data:` line, so
the console's JavaScript needs no dialect knowledge. Runs are logged with dialect
`playground` under the deployment name `playground:<prompt slug>` (`playground:draft` for a
draft of no prompt), with no deployment id or variant; see docs/playground-api.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from promptdeck.domain.answers import Answer, ResolvedRun
from promptdeck.domain.deployments import Version, draft_version, standalone
from promptdeck.domain.errors import ProviderFailed, ValidationFailed
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
from promptdeck.domain.prompts import check_slug, parse_spec
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.services import Services
from promptdeck.surfaces.access_log import log_run
from promptdeck.surfaces.admin import Admin, VersionIn, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.fetchhive import PING, SSE_HEADERS
from promptdeck.surfaces.http import dialect_route, dumps, unless_disconnected
from promptdeck.surfaces.run_response import RunResponse

DIALECT = "playground"
DEPLOYMENT_PREFIX = "playground:"  # deployment names are slugs, which never hold a ':'
NO_PROMPT = "draft"  # what a draft that names no prompt is logged under
DEPLOYMENT_NAME_MAX = 100  # the run log's deployment column
END_USER_MAX = 200  # the run log's end_user column (a member's email may be longer)
METADATA = {"source": DIALECT}

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Playground"],
    responses=ERRORS["admin"],
)


class PlaygroundRunIn(BaseModel):
    """Either `draft`, or `prompt` and `version`; unknown fields are refused (a typo would
    otherwise run the prompt without what was meant)."""

    model_config = ConfigDict(extra="forbid")

    draft: VersionIn | None = Field(
        None, description="an unsaved prompt version, as POST /api/prompts/{slug}/versions takes it"
    )
    prompt: str | None = Field(
        None, description="slug of the prompt whose version to run, or whose draft this is (optional then)"
    )
    version: int | None = Field(
        None, ge=1, le=VERSION_NUMBER_MAX, description="the saved version's number (with prompt)"
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="values for the prompt's inputs")
    stream: bool = Field(True, description="answer Server-Sent Events (true) or one JSON object")


def deployment_name(prompt: str | None) -> str:
    """What a playground run is logged under: `playground:<slug>`, `playground:draft` when a
    draft names no prompt; cut to the run log's 100 characters."""
    return (DEPLOYMENT_PREFIX + (prompt or NO_PROMPT))[:DEPLOYMENT_NAME_MAX]


async def subject(app: Services, caller: Caller, body: PlaygroundRunIn) -> Version:
    """The version to run: the draft, checked as saving it would check it, or the saved one."""
    if body.draft is not None and body.version is None:
        slug = check_slug(body.prompt, "prompt") if body.prompt is not None else ""
        return draft_version(parse_spec(body.draft.model_dump()), slug, caller.actor)
    if body.version is not None and body.draft is None:
        if body.prompt is None:
            raise ValidationFailed("prompt: required with version: the slug of the prompt to run")
        return await app.catalog.prompts.get_version(caller.workspace_id, body.prompt, body.version)
    raise ValidationFailed(
        "send either draft (an unsaved prompt version) or prompt and version (a saved one), not "
        + ("both" if body.draft is not None else "neither")
    )


@router.post(
    "/playground/run",
    summary="Run an unsaved draft or a saved version with inputs, streamed (SSE) or not; logged as a run",
    response_class=Response,
    responses={**INVOKE_ERRORS["admin"], 200: {"content": {"text/event-stream": {}, "application/json": {}}}},
)
async def run(body: PlaygroundRunIn, request: Request, caller: Caller = Admin) -> Response:
    app = services(request)
    version = await subject(app, caller, body)
    name = deployment_name(body.prompt)
    invoke = InvokeRequest(
        caller=caller,
        dialect=DIALECT,
        deployment=name,
        inputs=body.inputs,
        stream=body.stream,
        metadata=dict(METADATA),
        end_user=caller.actor[:END_USER_MAX],
    )
    invocation = await app.engine.start(invoke, standalone(caller.workspace_id, name, version))
    log_run(request, invocation.run)
    if body.stream:
        keepalive = app.settings.keepalive_seconds
        return RunResponse(invocation, stream_events, keepalive, "text/event-stream", SSE_HEADERS, ping=PING)
    async with invocation:
        answer = await unless_disconnected(request, invocation.answer())
    if answer.failed:
        details = {"run_id": answer.run.id, "error_code": answer.failed.code}
        return render_error(ProviderFailed(answer.failed.message, details=details), request)
    return Response(dumps(answer_body(answer)), media_type="application/json")


def usage_of(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input,
        "cached_input_tokens": usage.cached_input,
        "cache_write_input_tokens": usage.cache_write_input,
        "output_tokens": usage.output,
        "reasoning_tokens": usage.reasoning,
        "estimated": usage.estimated,
    }


def outcome(run: ResolvedRun, finished: Finished) -> dict[str, Any]:
    """What a finished run reports, streamed or not."""
    return {
        "run_id": run.id,
        "request_id": run.request_id,
        "model": run.model,
        "provider": run.provider,
        "stop_reason": finished.stop_reason,
        "cost": finished.cost,
        "price_known": finished.price_known,
        "duration_ms": round(finished.duration_ms or 0.0, 3),
        "ttft_ms": None if finished.ttft_ms is None else round(finished.ttft_ms, 3),
    }


def answer_body(answer: Answer) -> dict[str, Any]:
    assert answer.finished is not None
    return {
        **outcome(answer.run, answer.finished),
        "output": answer.text,
        "reasoning": answer.reasoning,
        "tool_calls": [call.as_dict() for call in answer.tool_calls],
        "usage": usage_of(answer.usage),
    }


def event_bytes(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


async def stream_events(run: ResolvedRun, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
    """`started` at once, then the answer's deltas, `usage`, and `finished` or `error` last."""
    yield event_bytes(
        {
            "type": "started",
            "run_id": run.id,
            "request_id": run.request_id,
            "model": run.model,
            "provider": run.provider,
        }
    )
    async for event in events:
        if isinstance(event, Started):
            run = run.answered_by(event)
        elif isinstance(event, TextDelta):
            yield event_bytes({"type": "text", "text": event.text})
        elif isinstance(event, ReasoningDelta):
            yield event_bytes({"type": "reasoning", "text": event.text})
        elif isinstance(event, ToolCallDelta):
            yield event_bytes(
                {
                    "type": "tool_call",
                    "index": event.index,
                    "id": event.id,
                    "name": event.name,
                    "arguments_delta": event.arguments_delta,
                }
            )
        elif isinstance(event, Usage):
            yield event_bytes({"type": "usage", **usage_of(event)})
        elif isinstance(event, Finished):
            yield event_bytes({"type": "finished", **outcome(run, event)})
        elif isinstance(event, Failed):
            yield event_bytes(
                {"type": "error", "code": event.code, "message": event.message, "run_id": run.id}
            )
