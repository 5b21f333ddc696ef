"""The admin API's release check preview: what a move would be told, without moving anything
(docs/releases.md). Same gate, scopes and error shape as `admin.py`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, VersionNumber, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Deployments"],
    responses=ERRORS["admin"],
)


class CheckIn(BaseModel):
    version: VersionNumber | Literal["latest"] = Field(description="the version the variant would serve")


@router.post(
    "/deployments/{name}/variants/{variant}/check",
    summary="The release check's report for pointing a variant at a version; moves nothing",
)
async def check_release(
    name: str, variant: str, body: CheckIn, request: Request, caller: Caller = Admin
) -> dict[str, Any]:
    """`inputs`: inputs recent callers would no longer satisfy; `gates`: evaluation gates the
    version fails; `safe`: neither, so a move would go through without force."""
    return await services(request).releases.preview(caller.workspace_id, name, variant, body.version)
