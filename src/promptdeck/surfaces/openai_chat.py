"""The OpenAI chat-completions dialect (WIRE.md §4): `POST /v1/chat/completions` with a
deployment as the model (`name` or `name@variant`), and `GET /v1/models`.

The request's `messages` are appended after the version's own (with `image_url` and `file`
parts in user messages, `openai_parts`), its `variables` fill the template, and its sampling
fields, `tools`, `tool_choice` and `response_format` override the version's for this one call.
The body's model and its mapping to the neutral shapes of `providers/base.py` are in
`openai_requests`; it is checked before the engine starts: a bad field is a 400
`invalid_request_error` naming it in `param`, and no provider is called.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from promptdeck.domain.deployments import Deployment
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.surfaces.callers import bearer_caller, services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.http import call_headers, dialect_route, dumps, parse_body
from promptdeck.surfaces.openai_requests import CHAT_BODY, CHAT_DOC, chat_fields, refuse
from promptdeck.surfaces.openai_wire import answer, render_error

router = APIRouter(route_class=dialect_route(render_error), tags=["OpenAI"], responses=ERRORS["openai"])

INVOKE_PATHS = ("/v1/chat/completions",)


@router.post(
    INVOKE_PATHS[0],
    openapi_extra=CHAT_DOC,
    responses={**INVOKE_ERRORS["openai"], 200: {"content": {"text/event-stream": {}}}},  # stream: true
    summary="Chat completion from a deployment",
)
async def chat_completions(request: Request) -> Response:
    caller = await bearer_caller(request, "invoke")
    parsed = chat_fields(await parse_body(request, CHAT_BODY, refuse))
    include_usage = parsed.pop("include_usage")
    headers = call_headers(request, parsed.pop("session_id"))
    invoke = InvokeRequest(caller=caller, dialect="openai", **parsed, **headers)
    return await answer(request, invoke, include_usage=include_usage, deployment_param="model")


@router.get("/v1/models", summary="The workspace's deployments, as OpenAI models")
async def list_models(request: Request) -> Response:
    caller = await bearer_caller(request, "invoke")
    deployments = await services(request).catalog.deployments.list_deployments(caller.workspace_id)
    data = [
        {"id": d.name, "object": "model", "created": created(d), "owned_by": "promptdeck"}
        for d in deployments
        if caller.may_call(d.name)  # a key narrowed to some deployments lists only those
    ]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")


def created(deployment: Deployment) -> int:
    """A deployment keeps no creation time: its oldest served version's stands in for it."""
    times = [version.created_at.timestamp() for version in deployment.variants.values()]
    return int(min(times)) if times else 0
