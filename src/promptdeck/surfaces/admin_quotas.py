"""The admin API's rate limits (`/api/limits`) and budgets (`/api/budgets`, each with its spend
this period). Setting one names its subject in the body: setting the same subject again changes
it. Reading needs the `read` scope, changing `admin` (console members: the owner role); every
change is in the audit log with its before and after (docs/governance.md)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from promptdeck import quota_changes
from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Limits and budgets"],
    responses=ERRORS["admin"],
)
SubjectKind = Literal["workspace", "key", "deployment", "end_user"]
SUBJECT = (
    'a key id, a deployment name or an end user; "" (the default) for the workspace, or for each '
    "key, deployment or end user"
)


class LimitIn(BaseModel):
    subject_kind: SubjectKind
    subject: str = Field("", max_length=320, description=SUBJECT)
    requests_per_minute: int | None = Field(None, ge=1, description="calls admitted in any 60 s")
    tokens_per_minute: int | None = Field(None, ge=1, description="tokens (real usage) in any 60 s")


class BudgetIn(BaseModel):
    subject_kind: SubjectKind
    subject: str = Field("", max_length=320, description=SUBJECT)
    period: Literal["day", "month"] = Field(description="a UTC calendar day or month")
    amount_usd: float = Field(
        ge=0, description="USD per period, at most 6 decimal places; 0 admits free models only"
    )


@router.get("/limits", summary="This workspace's rate limits")
async def list_limits(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return {"data": await services(request).quotas.list_limits(caller.workspace_id)}


@router.put("/limits", summary="Set a subject's rate limit (made, or changed if it has one)")
async def set_limit(body: LimitIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await quota_changes.set_limit(
        request, caller, body.subject_kind, body.subject, body.requests_per_minute, body.tokens_per_minute
    )


@router.delete("/limits/{limit_id}", status_code=204, summary="Remove a rate limit")
async def delete_limit(limit_id: str, request: Request, caller: Caller = Admin) -> Response:
    await quota_changes.delete_limit(request, caller, limit_id)
    return Response(status_code=204)


@router.get(
    "/budgets",
    summary="The budgets, each with this period's spend; and the workspace's spend today and this month",
)
async def list_budgets(request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await services(request).budget_status.report(caller.workspace_id)


@router.put("/budgets", summary="Set a subject's budget for a period (made, or changed if it has one)")
async def set_budget(body: BudgetIn, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    return await quota_changes.set_budget(
        request, caller, body.subject_kind, body.subject, body.period, body.amount_usd
    )


@router.delete("/budgets/{budget_id}", status_code=204, summary="Remove a budget")
async def delete_budget(budget_id: str, request: Request, caller: Caller = Admin) -> Response:
    await quota_changes.delete_budget(request, caller, budget_id)
    return Response(status_code=204)
