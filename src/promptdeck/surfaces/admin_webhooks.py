"""The admin API's webhooks under `/api/webhooks`: endpoints (create, list, get, update, delete,
rotate the secret, send a test ping) and each endpoint's delivery log. Same gate, scopes and
error shape as `admin.py`; console members need the owner role to change them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from promptdeck.audit_trail import audit, without_secret
from promptdeck.domain.change_events import EVENT_TYPES
from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS, AdminError, responses
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Webhooks"],
    responses=ERRORS["admin"],
)
EVENTS = f"event types: {', '.join(EVENT_TYPES)}"
REFUSED_URL = responses(AdminError, 400)  # a URL the outbound policy refuses, with the reason


class WebhookIn(BaseModel):
    url: str = Field(..., max_length=2000, description="https URL that receives signed POSTs")
    events: list[str] = Field(..., description=EVENTS)
    description: str = Field("", max_length=500)


class WebhookPatch(BaseModel):
    url: str | None = Field(None, max_length=2000)
    events: list[str] | None = Field(None, description=EVENTS)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None


@router.get("/webhooks", summary="This workspace's webhook endpoints (never their secrets)")
async def list_webhooks(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).webhooks.endpoints.of_workspace(caller.workspace_id)}


@router.post(
    "/webhooks",
    status_code=201,
    summary="Add an endpoint; its signing secret is in this answer only",
    responses=REFUSED_URL,
)
async def create_webhook(body: WebhookIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    created = await services(request).webhooks.create(
        caller.workspace_id, body.url, body.events, body.description
    )
    await audit(request, caller, "webhook.created", "webhook", created["id"], None, without_secret(created))
    return created


@router.get("/webhooks/{endpoint_id}")
async def get_webhook(endpoint_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).webhooks.endpoints.get(caller.workspace_id, endpoint_id)


@router.patch(
    "/webhooks/{endpoint_id}",
    summary="Change the URL, events or description; enable or disable",
    responses=REFUSED_URL,
)
async def update_webhook(
    endpoint_id: str, body: WebhookPatch, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    hooks = services(request).webhooks
    before = await hooks.endpoints.get(caller.workspace_id, endpoint_id)
    after = await hooks.update(caller.workspace_id, endpoint_id, changes)
    await audit(request, caller, "webhook.changed", "webhook", endpoint_id, before, after)
    return after


@router.delete("/webhooks/{endpoint_id}", status_code=204, summary="Remove an endpoint and its delivery log")
async def delete_webhook(endpoint_id: str, request: Request, caller: Caller = Admin) -> Response:
    endpoints = services(request).webhooks.endpoints
    before = await endpoints.get(caller.workspace_id, endpoint_id)
    await endpoints.delete(caller.workspace_id, endpoint_id)
    await audit(request, caller, "webhook.deleted", "webhook", endpoint_id, before, None)
    return Response(status_code=204)


@router.post("/webhooks/{endpoint_id}/rotate-secret", summary="A new signing secret, in this answer only")
async def rotate_webhook_secret(endpoint_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    rotated = await services(request).webhooks.rotate(caller.workspace_id, endpoint_id)
    await audit(request, caller, "webhook.secret_rotated", "webhook", endpoint_id)  # never the secret
    return rotated


@router.post("/webhooks/{endpoint_id}/ping", summary="Send a `ping` event now; answers with its delivery")
async def ping_webhook(endpoint_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).webhooks.ping(caller.workspace_id, endpoint_id)


@router.get("/webhooks/{endpoint_id}/deliveries", summary="The delivery log, newest first, with every try")
async def list_deliveries(
    endpoint_id: str,
    request: Request,
    caller: Caller = Admin,
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    hooks = services(request).webhooks
    await hooks.endpoints.get(caller.workspace_id, endpoint_id)
    return {"data": await hooks.deliveries.log(caller.workspace_id, endpoint_id, limit)}
