"""Usage analytics and end users under `/api/`, read from the rollups the run writer keeps
(store/usage_rollups.py), never from the runs. Same gate, scopes and error shape as the rest
of the admin API: these are reads, so a `read` key is enough."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from promptdeck.domain.runs import utcnow
from promptdeck.domain.usage_dimensions import USER
from promptdeck.domain.usage_query import parse_usage_query
from promptdeck.engine.auth import Caller
from promptdeck.surfaces.admin import Admin, render_error
from promptdeck.surfaces.callers import admin_gate, services
from promptdeck.surfaces.error_shapes import ERRORS
from promptdeck.surfaces.http import dialect_route

router = APIRouter(
    prefix="/api",
    route_class=dialect_route(render_error, admin_gate),
    tags=["Usage"],
    responses=ERRORS["admin"],
)


@router.get(
    "/usage",
    summary="Runs, errors, tokens, cost, latency percentiles and feedback per hour or day, by group",
)
async def usage(
    request: Request,
    caller: Caller = Admin,
    from_: str | None = Query(None, alias="from", description="ISO 8601 time; floored to the bucket"),
    to: str | None = Query(None, description="ISO 8601 time (exclusive); rounded up to the bucket"),
    bucket: str = Query("hour", description="hour (default: the last 24) | day (UTC; default: the last 30)"),
    group_by: str | None = Query(
        None, description="deployment | variant | version | model | provider | user | metadata.<key>"
    ),
    deployment: str | None = Query(
        None, description="only this deployment (with no group_by, or by variant, version)"
    ),
    limit: str | None = Query(None, description="groups shown (1-100, default 10); the rest is 'other'"),
    percentiles: str | None = Query(
        None,
        description="points (default): latency percentiles per point | totals: the groups' only over "
        "the range (faster; `total` keeps them per point)",
    ),
) -> dict[str, Any]:
    query = parse_usage_query(
        start=from_,
        end=to,
        bucket=bucket,
        group_by=group_by,
        deployment=deployment,
        limit=limit,
        now=utcnow(),
        percentiles=percentiles,
    )
    return await services(request).usage.usage(caller.workspace_id, query)


@router.get("/users", summary="End users: first and last run, runs, errors, tokens, cost")
async def list_users(
    request: Request,
    caller: Caller = Admin,
    sort: str = Query("last_seen", description="last_seen (default) | runs | cost"),
    order: str = Query("desc", description="desc (default) | asc"),
    q: str | None = Query(None, description="only end users whose name starts with this (case-sensitive)"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = None,
) -> dict[str, Any]:
    return await services(request).end_users.page(caller.workspace_id, sort, order, q, limit, cursor)


@router.get("/users/{end_user:path}", summary="One end user's totals and their usage per day, last 30 days")
async def get_user(end_user: str, request: Request, caller: Caller = Admin) -> dict[str, Any]:
    app = services(request)
    user = await app.end_users.get(caller.workspace_id, end_user)
    days = parse_usage_query(
        start=None, end=None, bucket="day", group_by=None, deployment=None, limit=None, now=utcnow()
    )
    points = await app.usage.value_usage(caller.workspace_id, days, USER, end_user)
    return user | {"usage": {"bucket": days.bucket, "from": days.start, "to": days.end, "points": points}}
