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
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from promptdeck.domain.deployments import Version, draft_version, standalone
from promptdeck.domain.errors import ProviderFailed, ValidationFailed
from promptdeck.domain.events import Failed, Finished, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from promptdeck.domain.prompts import check_slug, parse_spec
from promptdeck.domain.run_filters import VERSION_NUMBER_MAX
from promptdeck.domain.runs import RunRecord
from promptdeck.engine.auth import Caller
from promptdeck.engine.invoke import Invocation, InvokeRequest
from promptdeck.services import Services
from promptdeck.surfaces.admin import Admin, VersionIn, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.fetchhive import PING, SSE_HEADERS
from promptdeck.surfaces.http import dialect_route, dumps, unless_disconnected, with_keepalive

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
        return await app.catalog.get_version(caller.workspace_id, body.prompt, body.version)
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
    if body.stream:
        events = stream_events(invocation, app.settings.keepalive_seconds)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    record = await unless_disconnected(request, invocation.complete())
    if record.error_code:
        failure = ProviderFailed(
            record.error_message or "the provider failed",
            details={"run_id": record.id, "error_code": record.error_code},
        )
        return render_error(failure, request)
    return Response(dumps(answer(record)), media_type="application/json")


def usage_of(record: RunRecord) -> dict[str, Any]:
    return {
        "input_tokens": record.input_tokens,
        "cached_input_tokens": record.cached_input_tokens,
        "cache_write_input_tokens": record.cache_write_input_tokens,
        "output_tokens": record.output_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "estimated": bool(record.usage_estimated),
    }


def outcome(record: RunRecord, duration_ms: float) -> dict[str, Any]:
    """What a finished run reports, streamed or not."""
    return {
        "run_id": record.id,
        "request_id": record.request_id,
        "model": record.model,
        "provider": record.provider,
        "stop_reason": record.stop_reason,
        "cost": record.cost,
        "price_known": record.price_known,
        "duration_ms": round(duration_ms, 3),
        "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 3),
    }


def answer(record: RunRecord) -> dict[str, Any]:
    return {
        **outcome(record, record.duration_ms),
        "output": record.output,
        "reasoning": record.reasoning,
        "tool_calls": record.tool_calls or [],
        "usage": usage_of(record),
    }


def event_bytes(payload: dict[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


async def stream_events(invocation: Invocation, keepalive: float) -> AsyncIterator[bytes]:
    """`started` at once, then the answer's deltas, `usage`, and `finished` or `error` last."""
    record = invocation.record
    yield event_bytes(
        {
            "type": "started",
            "run_id": record.id,
            "request_id": record.request_id,
            "model": record.model,
            "provider": record.provider,
        }
    )
    async for event in with_keepalive(invocation.events(), keepalive):
        if event is None:
            yield PING
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
            yield event_bytes({"type": "usage", **usage_of(record)})
        elif isinstance(event, Finished):
            yield event_bytes({"type": "finished", **outcome(record, invocation.elapsed_ms())})
        elif isinstance(event, Failed):
            yield event_bytes(
                {"type": "error", "code": event.code, "message": event.message, "run_id": record.id}
            )
