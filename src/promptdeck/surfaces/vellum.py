"""The Vellum dialect (WIRE.md §2): `/v1/execute-prompt`, `/v1/execute-prompt-stream` (NDJSON),
`/v1/submit-completion-actuals` and `/v1/deployments/provider-payload`.

Choices where Vellum is silent (docs/dialects.md says the same for callers):

* `release_tag` `LATEST` (or none) is the deployment's current release, its default variant (a
  variant named `latest`, if the deployment has one); any other tag names a variant.
* CHAT_HISTORY inputs are appended, in order, after the version's own messages; they are not
  template variables.
* IMAGE and DOCUMENT inputs bind the version's `image` and `document` inputs; IMAGE and
  DOCUMENT chat content (USER messages) become image and document parts. AUDIO and VIDEO, and
  uploaded-file references, are refused with a 400 naming the input (`vellum_media`).
* `execution_id` is the run's id written as a UUID; look-ups take it with or without dashes.
* `expand_raw` names top-level keys of the provider's own JSON answer that execute-prompt returns
  in `raw` (unknown keys are left out; the embedded model has no raw answer, and the NDJSON
  stream carries none).
* A reasoning model's thoughts are a THINKING output; tool calls are FUNCTION_CALL outputs, sent
  whole (arguments as an object) once the answer is complete.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from promptdeck.domain.deployments import Deployment
from promptdeck.domain.errors import (
    Forbidden,
    NotFound,
    PromptdeckError,
    Unauthorized,
)
from promptdeck.engine.auth import Caller, bearer
from promptdeck.engine.invocation import Invocation
from promptdeck.engine.invoke import InvokeRequest
from promptdeck.services import Services
from promptdeck.surfaces.access_log import log_run
from promptdeck.surfaces.callers import services
from promptdeck.surfaces.error_shapes import ERRORS, INVOKE_ERRORS
from promptdeck.surfaces.http import (
    call_headers,
    dialect_route,
    dumps,
    parse_body,
    unless_disconnected,
)
from promptdeck.surfaces.run_response import RunResponse
from promptdeck.surfaces.vellum_answers import KEEPALIVE, as_uuid, execution_body, stream_encoder
from promptdeck.surfaces.vellum_requests import (
    ACTUALS_BODY,
    ACTUALS_DOC,
    EXECUTE_BODY,
    EXECUTE_DOC,
    PAYLOAD_BODY,
    PAYLOAD_DOC,
    Execution,
    actual_items,
    execution,
    payload_execution,
    refuse,
)

STATUS = {
    "validation_error": 400,
    "bad_request": 400,
    "conflict": 400,
    "unauthorized": 403,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "too_many_requests": 429,
    "budget_exceeded": 429,
    "quota_store_unavailable": 503,
}
NDJSON = "application/x-ndjson"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def render_error(error: PromptdeckError, request: Request | None = None) -> Response:
    status = STATUS.get(error.code, 500)
    return Response(dumps({"detail": error.message}), status, error.headers(), media_type="application/json")


router = APIRouter(route_class=dialect_route(render_error), tags=["Vellum"], responses=ERRORS["vellum"])


async def vellum_caller(request: Request) -> Caller:
    """The key from `X-API-KEY` (or the older `X_API_KEY`, or a bearer token); Vellum answers
    every key problem with 403."""
    headers = request.headers
    secret = headers.get("x-api-key") or headers.get("x_api_key") or bearer(headers.get("authorization"))
    try:
        return await services(request).keys.caller(secret, "invoke")
    except Unauthorized as exc:
        raise Forbidden(exc.message) from exc


# ── ids ─────────────────────────────────────────────────────────────────────


def id_hex(value: str) -> str | None:
    """An id in either form (UUID with dashes, or 32 hex digits) as stored; None if it is neither."""
    try:
        return uuid.UUID(value).hex
    except ValueError:
        return None


# ── deployments by id, external ids ─────────────────────────────────────────


async def deployment_name(request: Request, caller: Caller, parsed: Execution) -> str:
    if parsed.deployment_name is not None:
        return parsed.deployment_name
    assert parsed.deployment_id is not None
    name = await services(request).vellum.deployment_name(caller.workspace_id, parsed.deployment_id)
    if name is None:
        raise NotFound(f"no prompt deployment with id {as_uuid(parsed.deployment_id)!r}")
    return name


async def reserve_external_id(
    request: Request, caller: Caller, external_id: str | None
) -> Callable[[], None]:
    """Claim an external id for a new run, or refuse a duplicate; returns the release, to call
    once the run is with the writer (whose pending runs are checked too)."""
    return await services(request).vellum.reserve_external_id(caller.workspace_id, external_id)


# ── answers ─────────────────────────────────────────────────────────────────


# ── endpoints ───────────────────────────────────────────────────────────────

EXECUTE_PATHS = ("/v1/execute-prompt", "/v1/execute-prompt-stream")


async def _start(request: Request, stream: bool) -> tuple[Invocation, Execution]:
    caller = await vellum_caller(request)
    parsed = execution(await parse_body(request, EXECUTE_BODY, refuse))
    name = await deployment_name(request, caller, parsed)
    release = await reserve_external_id(request, caller, parsed.external_id)
    try:
        invocation = await services(request).engine.start(
            InvokeRequest(
                caller=caller,
                dialect="vellum",
                deployment=name,
                variant=parsed.release_tag,  # LATEST: the default variant (Deployment.resolve)
                inputs=parsed.inputs,
                stream=stream,
                metadata=parsed.metadata,
                external_id=parsed.external_id,
                messages=parsed.messages,
                raw_overrides=parsed.raw_overrides,
                keep_raw=bool(parsed.expand_raw),
                **call_headers(request, parsed.session_id),
            )
        )
    except BaseException:
        release()
        raise
    log_run(request, invocation.run)
    invocation.after_close(release)  # the writer's pending runs hold the claim from there
    return invocation, parsed


@router.post(
    EXECUTE_PATHS[0],
    openapi_extra=EXECUTE_DOC,
    responses=INVOKE_ERRORS["vellum"],
    summary="Execute a prompt deployment",
)
async def execute_prompt(request: Request) -> Response:
    invocation, parsed = await _start(request, stream=False)
    async with invocation:
        answer = await unless_disconnected(request, invocation.answer())
    body = execution_body(answer, parsed.expand_meta, parsed.release_tag, parsed.expand_raw)
    return Response(dumps(body), media_type="application/json")


@router.post(
    EXECUTE_PATHS[1],
    openapi_extra=EXECUTE_DOC,
    response_class=StreamingResponse,  # documents no JSON answer
    responses={**INVOKE_ERRORS["vellum"], 200: {"content": {NDJSON: {}}}},
    summary="Execute a prompt deployment, streamed as newline-delimited JSON",
)
async def execute_prompt_stream(request: Request) -> Response:
    invocation, parsed = await _start(request, stream=True)
    keepalive = services(request).settings.keepalive_seconds
    encode = stream_encoder(parsed.expand_meta, parsed.release_tag)
    return RunResponse(invocation, encode, keepalive, NDJSON, STREAM_HEADERS, ping=KEEPALIVE)


# ── actuals ─────────────────────────────────────────────────────────────────


@router.post(
    "/v1/submit-completion-actuals",
    openapi_extra=ACTUALS_DOC,
    response_class=Response,  # documents the empty answer
    summary="Feedback on earlier executions (200, empty body)",
)
async def submit_completion_actuals(request: Request) -> Response:
    caller = await vellum_caller(request)
    body = await parse_body(request, ACTUALS_BODY, refuse)
    deployment_id = body.deployment_id.hex if body.deployment_id else None
    deployment_name, items = body.deployment_name, actual_items(body)
    app = services(request)
    wanted_id = id_hex(deployment_id) if isinstance(deployment_id, str) else None
    for item in items:  # every run is found before anything is stored
        run = await _run_for_actual(app, caller, item)
        if (wanted_id and run["deployment_id"] != wanted_id) or (
            deployment_name and run["deployment"] != deployment_name
        ):
            raise NotFound(f"execution {item['ref']!r} is not one of this deployment's")
        item["run_id"] = run["id"]
    await app.feedback.add(caller.workspace_id, items)
    return Response(status_code=200)


async def _run_for_actual(app: Services, caller: Caller, item: dict[str, Any]) -> dict[str, Any]:
    ref: str = item["ref"]
    if item["by_external_id"]:
        pending = app.writer.pending_run_by_external_id(caller.workspace_id, ref)
        if pending is not None:
            return {
                "id": pending.id,
                "deployment": pending.deployment,
                "deployment_id": pending.deployment_id,
            }
        found = await app.feedback.run_with_external_id(caller.workspace_id, ref)
        if found is None:
            raise NotFound(f"no execution with external_id {ref!r}")
        return found
    try:
        return await app.find_run(caller.workspace_id, ref)
    except NotFound:
        raise NotFound(f"no execution with id {ref!r}") from None


# ── provider payload ────────────────────────────────────────────────────────


@router.post(
    "/v1/deployments/provider-payload",
    openapi_extra=PAYLOAD_DOC,
    summary="The request a deployment would send its provider",
)
async def provider_payload(request: Request) -> Response:
    caller = await vellum_caller(request)
    parsed = payload_execution(await parse_body(request, PAYLOAD_BODY, refuse))
    name = await deployment_name(request, caller, parsed)
    app = services(request)
    variant = parsed.release_tag
    invoke = InvokeRequest(
        caller=caller,
        dialect="vellum",
        deployment=name,
        variant=variant,
        inputs=parsed.inputs,
        messages=parsed.messages,
    )
    answer: dict[str, Any] = {"payload": await app.engine.payload(invoke)}
    if parsed.expand_meta:
        deployment: Deployment | None = await app.engine.deployments.get((caller.workspace_id, name))
        assert deployment is not None  # payload() found it
        _, version = deployment.resolve(variant)
        found: dict[str, Any] = {}
        if "model_name" in parsed.expand_meta:
            found["model_name"] = version.spec.model
        if "deployment_release_tag" in parsed.expand_meta:
            found["deployment_release_tag"] = parsed.release_tag
        if "prompt_version_id" in parsed.expand_meta:
            found["prompt_version_id"] = as_uuid(version.id)
        answer["meta"] = found
    return Response(dumps(answer), media_type="application/json")
