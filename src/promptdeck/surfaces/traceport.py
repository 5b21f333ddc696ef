"""The Traceport dialect (WIRE.md §3): `POST /prompt/{slug}/run` runs the deployment named by
the slug, at its default variant, and answers an OpenAI `chat.completion` (or, with our
`"stream": true`, `chat.completion.chunk` events).

Body: `model` (optional, `provider/model`, instead of the version's), `variables` (the
template's inputs), `stream`, `stream_options.include_usage`, `user`, `metadata`. Errors are
OpenAI-shaped (`openai_wire`): a bad field is a 400 naming it in `param`, an unknown
deployment a 404 `model_not_found`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from promptdeck.engine.invoke import InvokeRequest
from promptdeck.surfaces.callers import bearer_caller
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.http import call_headers, dialect_route, parse_body
from promptdeck.surfaces.openai_requests import RUN_BODY, RUN_DOC, refuse, run_fields
from promptdeck.surfaces.openai_wire import answer, render_error

router = APIRouter(route_class=dialect_route(render_error), tags=["Traceport"], responses=ERRORS["openai"])

RUN_PATH = "/prompt/{slug}/run"


# `slug` is read from the path, not a parameter FastAPI validates: FastAPI would document a 422
# for it that this dialect never sends (its bad requests are OpenAI's 400). It is served on the
# hot route (app.py, surfaces/http.py `HotRoutes`), which puts the slug in `path_params` as
# FastAPI's route does; FastAPI only documents it here.
SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


@router.post(
    RUN_PATH,
    openapi_extra={"parameters": [SLUG], **RUN_DOC},
    responses={**INVOKE_ERRORS["openai"], 200: {"content": {"text/event-stream": {}}}},  # stream: true
    summary="Run a deployment (Traceport)",
)
async def run(request: Request) -> Response:
    slug: str = request.path_params["slug"]
    caller = await bearer_caller(request, "invoke")
    parsed = run_fields(await parse_body(request, RUN_BODY, refuse))
    include_usage = parsed.pop("include_usage")
    headers = call_headers(request, parsed.pop("session_id"))
    invoke = InvokeRequest(caller=caller, dialect="traceport", deployment=slug, **parsed, **headers)
    return await answer(request, invoke, include_usage=include_usage, deployment_param=None)
