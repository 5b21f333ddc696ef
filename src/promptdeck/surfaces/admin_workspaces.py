"""The admin API's workspaces: `/api/workspace` (the caller's own, for any read key) and
`/api/workspaces` (list, create, rename, archive, restore), which only an instance
administrator may use: the key `promptdeck init` printed, or the console owner it created.
Same gate and error shape as `admin.py`; every change is recorded in the instance's audit log
(`workspace_id` None, the workspace as the target: `GET /api/audit?scope=instance`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from promptdeck.audit_trail import audit
from promptdeck.domain.errors import Forbidden
from promptdeck.engine.auth import Caller
from promptdeck.store.workspaces import NAME_MAX, WorkspaceStore, open_workspace
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Workspaces"],
    responses=ERRORS["admin"],
)
NOT_INSTANCE_ADMIN = (
    "managing workspaces needs an instance administrator: the admin key `promptdeck init` "
    "printed, or the console owner it created"
)


class WorkspaceIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=NAME_MAX)


def instance_workspaces(request: Request, caller: Caller) -> WorkspaceStore:
    """The workspace store, once the caller is an instance administrator (403 otherwise)."""
    if not caller.instance_admin:
        raise Forbidden(NOT_INSTANCE_ADMIN)
    return services(request).workspaces


@router.get("/workspace", summary="The caller's own workspace")
async def own_workspace(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return (await services(request).workspaces.get(caller.workspace_id)).to_dict()


@router.get("/workspaces", summary="Every workspace, archived ones included (instance administrators)")
async def list_workspaces(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": [w.to_dict() for w in await instance_workspaces(request, caller).all()]}


@router.post(
    "/workspaces",
    status_code=201,
    summary="Create a workspace; the answer holds a new admin key for it, shown this once",
)
async def create_workspace(body: WorkspaceIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    opened = await open_workspace(
        instance_workspaces(request, caller), app.access, app.members, body.name, caller.member_email
    )
    created: dict[str, Any] = jsonable_encoder(opened.workspace.to_dict())
    await audit(
        request,
        caller,
        "workspace.created",
        "workspace",
        opened.workspace.id,
        after=created,
        workspace_id=None,
    )
    return created | {"admin_key": opened.secret, "key": opened.key.to_dict()}


@router.patch("/workspaces/{workspace_id}", summary="Rename a workspace")
async def rename_workspace(
    workspace_id: str, body: WorkspaceIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    store = instance_workspaces(request, caller)
    before = await store.get(workspace_id)
    after = await store.rename(workspace_id, body.name)
    await audit(
        request,
        caller,
        "workspace.renamed",
        "workspace",
        workspace_id,
        {"name": before.name},
        {"name": after.name},
        workspace_id=None,
    )
    return after.to_dict()


@router.post(
    "/workspaces/{workspace_id}/archive",
    summary="Archive: its keys are refused and its members cannot sign in to it; nothing is deleted",
)
async def archive_workspace(workspace_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    archived = await instance_workspaces(request, caller).archive(workspace_id, caller.workspace_id)
    await audit(
        request,
        caller,
        "workspace.archived",
        "workspace",
        workspace_id,
        after={"archived_at": jsonable_encoder(archived.archived_at)},
        workspace_id=None,
    )
    return archived.to_dict()


@router.post("/workspaces/{workspace_id}/restore", summary="Restore an archived workspace")
async def restore_workspace(workspace_id: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    store = instance_workspaces(request, caller)
    before = await store.get(workspace_id)
    restored = await store.restore(workspace_id)
    await audit(
        request,
        caller,
        "workspace.restored",
        "workspace",
        workspace_id,
        {"archived_at": jsonable_encoder(before.archived_at)},
        {"archived_at": None},
        workspace_id=None,
    )
    return restored.to_dict()
