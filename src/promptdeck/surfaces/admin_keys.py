"""The admin API's API keys under `/api/keys`: list, create, revoke and rotate. Same gate and
error shape as `admin.py`; every use needs the `admin` scope (listing too: key names and their
deployments are not for read-only keys), and console members the owner role. Each change is in
the audit log, never the secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from promptdeck import key_changes
from promptdeck.admin_models import KeyIn, KeyRotateIn
from promptdeck.domain.errors import Forbidden
from promptdeck.domain.keys import allows
from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Keys"],
    responses=ERRORS["admin"],
)


@router.get("/keys", summary="This workspace's API keys (never their secrets)")
async def list_keys(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    if not allows(caller.scopes, "admin"):  # key names are not for read-only keys
        raise Forbidden("listing API keys needs the 'admin' scope")
    return {"data": [k.to_dict() for k in await services(request).access.list_keys(caller.workspace_id)]}


@router.post("/keys", status_code=201, summary="Create an API key; the secret is in this answer only")
async def create_key(body: KeyIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    key, secret = await key_changes.create_key(request, caller, body)
    return key.to_dict() | {"api_key": secret}


@router.post("/keys/{key_id}/revoke", summary="Revoke an API key: refused from now on, on every replica")
async def revoke_key(key_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return (await key_changes.revoke_key(request, caller, key_id)).to_dict()


@router.post(
    "/keys/{key_id}/rotate",
    status_code=201,
    summary="A new key like this one, its secret in this answer only; the old one works until its expiry",
)
async def rotate_key(
    key_id: str, request: Request, body: KeyRotateIn | None = None, caller: Caller = Admin
) -> dict[str, Any]:
    old, new, secret = await key_changes.rotate_key(request, caller, key_id, body or KeyRotateIn())
    return new.to_dict() | {"api_key": secret, "old_key": old.to_dict()}
